"""Peak memory of one video's extraction against the video's duration.

For each duration (default 1 min, 10 min and 2 h) a synthetic video is written with ffmpeg's
lavfi sources (``testsrc`` at 64x64 and 8 fps, H.264; a 440 Hz ``sine``, AAC mono 16 kHz:
small, so that the 2 h file takes about a minute to write), then a fresh Python process runs
the extraction job's own function on it (:func:`pipeline.extract.extract_shard`: decode, both
encoders, the feature store written) with ``workflow_config.yaml``'s extraction settings
(classic encoders, the 8x8 visual grid), and reports its peak resident set size
(``ru_maxrss``), its resident size once the encoders are built (before the video is opened),
its wall time and its CPU time (user + system, all threads: steadier than wall time on a busy
machine). The last line gives the peak at the longest duration over the peak at the
shortest; the target is at most 1.2: memory must not grow with the duration.

Usage: ``python bench/extraction_memory.py [--minutes 1 10 120] [--media-dir DIR]``; with
``--media-dir`` the synthetic videos are kept there and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TARGET_RATIO = 1.2  # peak RSS at the longest duration over the shortest


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_video(path: Path, duration_s: float, size: int, fps: int, sample_rate: int) -> float:
    """Write the synthetic video with ffmpeg's lavfi sources; return the seconds it took."""
    from pipeline.decode import ffmpeg_executable

    started = time.perf_counter()
    command = [
        ffmpeg_executable(),
        *("-hide_banner", "-loglevel", "error", "-y"),
        *("-f", "lavfi", "-i", f"testsrc=size={size}x{size}:rate={fps}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}"),
        *("-t", f"{duration_s:g}", "-c:v", "libx264", "-preset", "ultrafast", "-g", str(10 * fps)),
        *("-c:a", "aac", "-ac", "1", "-b:a", "48k", str(path)),
    ]
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def child(video: Path, out_dir: Path) -> None:
    """Run one video's extraction job in this (fresh) process and print its figures as JSON."""
    from pipeline.config import extraction_settings, load_config
    from pipeline.extract import extract_shard
    from pipeline.store import open_store

    settings = extraction_settings(load_config(REPO_ROOT / "workflow_config.yaml"))
    # The encoders are built inside extract_shard; build a pair here once too, so that the
    # resident size below includes the libraries they load (librosa, torch).
    from pipeline.encoders import build_audio_encoder, build_visual_encoder

    build_visual_encoder(settings["visual"], device="cpu")
    build_audio_encoder(settings["audio"], device="cpu")
    ready_mb = current_rss_mb()
    started, cpu_started = time.perf_counter(), cpu_s()
    extract_shard(
        [video], settings=settings, out_dir=out_dir, manifest_path=out_dir / "manifest.json"
    )
    wall_s, used_cpu_s = time.perf_counter() - started, cpu_s() - cpu_started
    store = open_store(out_dir / f"{video.stem}.zarr")
    figures = {
        "ready_mb": ready_mb,
        "peak_mb": peak_rss_mb(),
        "wall_s": wall_s,
        "cpu_s": used_cpu_s,
        "snippets": store.info.num_snippets,
        "grid": "visual_grid" in store,
    }
    print(json.dumps(figures))


def measure(video: Path, out_dir: Path) -> dict[str, float]:
    """Figures of one extraction run in a fresh subprocess."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(video), str(out_dir)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"extraction of {video} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, write the videos, measure each in a fresh process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=(1, 10, 120), help="durations")
    parser.add_argument("--media-dir", type=Path, help="keep (and reuse) the videos here")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--fps", type=int, default=8, help="source frame rate")
    parser.add_argument("--sample-rate", type=int, default=16000, help="source audio rate (Hz)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return

    print(f"machine : {platform.processor() or platform.machine()}, {platform.platform()}")
    print(f"python  : {platform.python_version()}")
    print(
        f"videos  : testsrc {args.size}x{args.size} @ {args.fps} fps H.264 + sine AAC mono "
        f"{args.sample_rate} Hz; extraction settings of workflow_config.yaml\n"
    )
    header = (
        f"{'duration':>9s} {'snippets':>8s} {'ready MiB':>9s} {'peak MiB':>9s} {'wall s':>7s} "
        f"{'cpu s':>7s}"
    )
    with tempfile.TemporaryDirectory() as folder:
        media_dir = args.media_dir or Path(folder)
        media_dir.mkdir(parents=True, exist_ok=True)
        print(header)
        peaks = []
        for minutes in args.minutes:
            video = media_dir / (
                f"memory_{minutes:g}min_{args.size}px_{args.fps}fps_{args.sample_rate}hz.mp4"
            )
            if not video.exists():
                partial = video.with_name(f".{video.name}")  # renamed once complete
                write_video(partial, minutes * 60, args.size, args.fps, args.sample_rate)
                partial.rename(video)
            with tempfile.TemporaryDirectory(dir=folder) as out_dir:
                figures = measure(video, Path(out_dir))
            peaks.append(figures["peak_mb"])
            print(
                f"{minutes:7g} m {figures['snippets']:8d} {figures['ready_mb']:9.0f} "
                f"{figures['peak_mb']:9.0f} {figures['wall_s']:7.1f} {figures['cpu_s']:7.1f}",
                flush=True,
            )
    ratio = peaks[-1] / peaks[0]
    print(
        f"\npeak RSS {args.minutes[-1]:g} min / {args.minutes[0]:g} min: {ratio:.2f}x "
        f"(target <= {TARGET_RATIO}x)"
    )


if __name__ == "__main__":
    main()
