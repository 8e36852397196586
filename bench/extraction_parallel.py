"""Extraction throughput on a full machine: one extraction process per core, as
``snakemake --cores N`` runs N extraction jobs, with the decoding threads on and off.

Each round starts ``--jobs`` processes (default: the CPUs this process may use); each builds the
default config's encoders, waits until all are ready, then extracts the same file ``--videos``
times with ``extract_video(..., threads=1, concurrent=...)``. The wall time from the common
start to the last process's end is the round's figure; rounds alternate the two modes, since
this kind of machine's speed drifts from minute to minute. ``video-s/s`` is the seconds of
video all processes together extracted per second.

Usage: ``python bench/extraction_parallel.py [--video PATH] [--jobs N] [--videos K]
[--rounds R]``; without ``--video`` the 60 s 640x360 H.264 + AAC file of
``bench/decode_throughput.py`` is written into a temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # bench.videos writes the default video (tests/media.py)

from bench.machine import cpu_model  # noqa: E402
from pipeline.background import usable_cpus  # noqa: E402


def worker(video: Path, concurrent: bool, videos: int) -> None:
    """Build the encoders, say so, wait for the go, extract ``video`` ``videos`` times."""
    from pipeline.config import extraction_settings, load_config
    from pipeline.encoders import build_audio_encoder, build_visual_encoder
    from pipeline.extract import extract_video

    settings = extraction_settings(load_config(REPO_ROOT / "workflow_config.yaml"))
    visual_encoder = build_visual_encoder(settings["visual"], device="cpu")
    audio_encoder = build_audio_encoder(settings["audio"], device="cpu")
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(videos):
        extract_video(
            video,
            settings,
            visual_encoder=visual_encoder,
            audio_encoder=audio_encoder,
            threads=1,
            concurrent=concurrent,
        )


def one_round(video: Path, concurrent: bool, jobs: int, videos: int) -> float:
    """Seconds from the common start until every process has extracted its videos."""
    command = [sys.executable, __file__, "--worker", str(video), "--videos", str(videos)]
    command += ["--concurrent"] if concurrent else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(jobs)
    ]
    for process in processes:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a worker failed before extracting: {process.communicate()}")
    start = time.perf_counter()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        process.communicate()
        if process.returncode:
            raise RuntimeError(f"a worker failed with exit status {process.returncode}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="video to extract (default: synthetic 60 s)")
    parser.add_argument("--jobs", type=int, default=usable_cpus(), help="processes at once")
    parser.add_argument("--videos", type=int, default=5, help="extractions per process")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.concurrent, args.videos)
        return

    from bench.videos import write_web_video
    from pipeline.decode import probe

    print(f"machine : {cpu_model()}, {usable_cpus()} usable CPUs")
    with tempfile.TemporaryDirectory() as folder:
        video = args.video
        if video is None:
            video = write_web_video(Path(folder))
        duration_s = probe(video).duration_s
        print(f"video   : {video}, {duration_s:.1f} s; {args.jobs} processes x {args.videos}")
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for concurrent in (False, True):
                seconds[concurrent].append(one_round(video, concurrent, args.jobs, args.videos))
        total_s = duration_s * args.jobs * args.videos
        for concurrent, label in ((False, "one thread"), (True, "decoders in threads")):
            runs = " / ".join(f"{s:.2f}" for s in seconds[concurrent])
            print(f"{label:20s} {runs} s; best {total_s / min(seconds[concurrent]):.1f} video-s/s")


if __name__ == "__main__":
    main()
