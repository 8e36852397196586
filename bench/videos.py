"""The synthetic video the extraction benchmarks use when not given one."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests/media.py writes it

from tests.media import make_video  # noqa: E402


def write_web_video(folder: Path) -> Path:
    """Write ``bench_640x360_25fps.mp4`` into ``folder``: 60 s of a scrolling, grainy texture,
    640x360 at 25 fps, H.264 at 1 Mbit/s (typical of 360p web video) + AAC at 48 kHz."""
    path = Path(folder) / "bench_640x360_25fps.mp4"
    make_video(
        path,
        duration_s=60.0,
        fps=25,
        size=(640, 360),
        sample_rate=48000,
        textured=True,
        video_bit_rate=1_000_000,
    )
    return path
