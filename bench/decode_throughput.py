"""Decode throughput of ``pipeline.decode`` against ffmpeg's own decoder, on one file.

Rows (best wall time of ``--repeats`` rounds, each round running every row once):
  ffmpeg null decode      ``ffmpeg -threads N -i FILE -f null -`` (video and audio decode only)
  ffmpeg decode+scale     the same plus ``-vf scale=W:H -pix_fmt rgb24`` (the work we do)
  iter_frames @ src fps   our frames at the source rate, resized to W x H rgb24
  iter_frames @ 8 fps     our frames at a low extraction rate
  read_audio @ 16 kHz     our mono float audio
  extract_video           the whole extraction with workflow_config.yaml's encoders: decode,
                          snippet grid, both encoders (``video-s/s`` is its throughput), once
                          in one thread and once with both streams decoding in threads of
                          their own beside the encoders (what a job does when it may use more
                          than one CPU); target: ratio >= 0.9
``ratio`` is throughput relative to ffmpeg null decode (ffmpeg seconds / row seconds); the
target for ``iter_frames @ src fps`` is >= 0.8. ``cpu-s`` is the CPU time of the same run
(all threads; ffmpeg's as a child process), ``cpu ratio`` the same ratio on CPU time, which a
busy shared machine disturbs less than wall time, and ``cores`` CPU seconds per wall second
(ffmpeg's command line runs its demuxer, decoders and muxer in threads of their own, so even
``-threads 1`` keeps more than one core busy).

Usage: ``python bench/decode_throughput.py [--video PATH] [--threads N] [--repeats R]``.
Without ``--video`` a 60 s 640x360 25 fps H.264 (1 Mbit/s) + AAC (48 kHz) video with a
scrolling, grainy texture is written into a temporary folder first (bench/videos.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # bench.videos writes the default video (tests/media.py)

from bench.machine import cpu_model  # noqa: E402
from bench.videos import write_web_video  # noqa: E402
from pipeline.config import extraction_settings, load_config  # noqa: E402
from pipeline.decode import ffmpeg_executable, iter_frames, probe, read_audio  # noqa: E402
from pipeline.encoders import build_audio_encoder, build_visual_encoder  # noqa: E402
from pipeline.extract import extract_video  # noqa: E402


def ffmpeg_version(executable: str) -> str:
    """First line of ``ffmpeg -version``."""
    result = subprocess.run([executable, "-version"], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[0]


def children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(task: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads, child processes included) of one run of ``task``."""
    wall, cpu, children = time.perf_counter(), time.process_time(), children_cpu_s()
    task()
    cpu_s = time.process_time() - cpu + children_cpu_s() - children
    return time.perf_counter() - wall, cpu_s


def run_ffmpeg(executable: str, video: Path, threads: int, extra: list[str]) -> None:
    """Run ffmpeg on ``video`` into the null muxer, raising on failure."""
    command = [executable, "-hide_banner", "-loglevel", "error", "-threads", str(threads)]
    subprocess.run([*command, "-i", str(video), *extra, "-f", "null", "-"], check=True)


def count_frames(video: Path, fps: float, size: tuple[int, int], threads: int) -> int:
    """Consume ``iter_frames`` and return how many frames it yielded."""
    return sum(1 for _ in iter_frames(video, fps, size, threads=threads))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, time every row and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="video to decode (default: synthetic 60 s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="decoding threads, ffmpeg's (-threads) and ours (an extraction job's: 1 by default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of every row; the best run of each is kept"
    )
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("W", "H"))
    parser.add_argument("--low-fps", type=float, default=8.0, help="low extraction rate")
    parser.add_argument("--sample-rate", type=int, default=16000, help="read_audio rate (Hz)")
    args = parser.parse_args(argv)

    executable = ffmpeg_executable()
    print(f"machine : {cpu_model()}, os.cpu_count()={os.cpu_count()}, {platform.platform()}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, ", end="")
    print(f"av {av.__version__} (libavcodec {av.library_versions['libavcodec']})")
    print(f"ffmpeg  : {executable}\n          {ffmpeg_version(executable)}")

    with tempfile.TemporaryDirectory() as folder:
        video = args.video
        if video is None:
            start = time.perf_counter()
            video = write_web_video(Path(folder))
            print(f"wrote   : {video.name} in {time.perf_counter() - start:.1f} s")
        info = probe(video)
        print(
            f"video   : {video} {info.width}x{info.height} {info.fps:g} fps {info.video_codec}"
            f" + {info.audio_codec}, {info.duration_s:.1f} s, {video.stat().st_size / 1e6:.1f} MB"
        )
        width, height = args.size
        scale = ["-vf", f"scale={width}:{height}", "-pix_fmt", "rgb24"]
        rows = [
            ("ffmpeg null decode", lambda: run_ffmpeg(executable, video, args.threads, [])),
            (
                f"ffmpeg decode+scale {width}x{height}",
                lambda: run_ffmpeg(executable, video, args.threads, scale),
            ),
            (
                f"iter_frames @ {info.fps:g} fps {width}x{height}",
                lambda: count_frames(video, info.fps, (width, height), args.threads),
            ),
            (
                f"iter_frames @ {args.low_fps:g} fps {width}x{height}",
                lambda: count_frames(video, args.low_fps, (width, height), args.threads),
            ),
        ]
        if info.has_audio:
            audio_row = (
                f"read_audio @ {args.sample_rate} Hz",
                lambda: read_audio(video, args.sample_rate),
            )
            rows.append(audio_row)
        # The whole extraction of the file with the default config's encoders (built once, as
        # in an extraction job), in seconds of video per second of wall time.
        settings = extraction_settings(load_config(REPO_ROOT / "workflow_config.yaml"))
        visual_encoder = build_visual_encoder(settings["visual"], device="cpu")
        audio_encoder = build_audio_encoder(settings["audio"], device="cpu")
        for concurrent, label in ((False, "one thread"), (True, "decoders in threads")):
            rows.append(
                (
                    f"extract_video, {label}",
                    lambda concurrent=concurrent: extract_video(
                        video,
                        settings,
                        visual_encoder=visual_encoder,
                        audio_encoder=audio_encoder,
                        threads=args.threads,
                        concurrent=concurrent,
                    ),
                )
            )
        print(f"threads : ffmpeg -threads {args.threads}; our video decoder {args.threads}")
        header = f"{'task':34s} {'seconds':>8s} {'video-s/s':>10s} {'ratio':>6s}"
        print(f"\n{header} {'cpu-s':>7s} {'cpu ratio':>9s} {'cores':>5s}")
        # Round after round of every row, the best of each kept: a machine whose speed drifts
        # from minute to minute slows all rows alike, not the last ones.
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in rows}
        for _ in range(args.repeats):
            for name, task in rows:
                runs[name].append(timed(task))
        reference = None
        for name, _ in rows:
            seconds, cpu_s = min(runs[name])
            reference = reference or (seconds, cpu_s)
            speed = info.duration_s / seconds
            print(
                f"{name:34s} {seconds:8.3f} {speed:10.1f} {reference[0] / seconds:6.2f}"
                f" {cpu_s:7.3f} {reference[1] / cpu_s:9.2f} {cpu_s / seconds:5.2f}"
            )


if __name__ == "__main__":
    main()
