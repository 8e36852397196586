"""Scale check of the workflow's DAG: a data set's videos through the real Snakefile.

For each size, builds a throw-away working folder holding ``videos/{vid}.mp4`` (one empty
placeholder per video id of an annotation file: UnAV-100's 10,790 real ids by default, or
``--synthetic N`` made-up ids in a generated UnAV-100-format file) and a ``workflow_config.yaml``
whose data set is ``source: videos`` over that folder with those annotations; then, on the
repository's Snakefile (``--directory`` the working folder), times

1. ``snakemake -n``: building the DAG of every job, nothing built yet (target: under 60 s);
2. creating every job output in DAG order (the order the dry run lists the jobs, with
   increasing modification times; ``snakemake --touch`` only touches outputs that exist, so the
   files are created here from the dry run's ``output:`` lines); setup, not a target;
3. ``snakemake -n`` again, every output up to date (target: under 60 s);
4. ``snakemake`` once more, with nothing to do: the cost of a no-op run (target: under 60 s).
   Should the second dry run find anything to do, its jobs are printed instead, and this run
   is left out so that no job ever runs on the placeholders;
5. ``snakemake --mode remote -n`` on the first extraction job's output, nothing built: what a
   cluster job (SLURM) spends parsing the Snakefile again and finding its one job before it
   starts (the checks of the user's files run in the main process only).

Each phase is printed in seconds and in microseconds per video, and with several sizes
(``--synthetic 10000 100000 1000000``) a last table shows how the cost per video grows. The
default shard size (``extraction.shard_size``) is 32, or more where 32 would make over
2,000 extraction jobs (500 for 1,000,000 videos); ``--shard-size`` sets one for every size.

``--profile DIR`` also runs both dry runs (nothing built, all done) under cProfile, writes
``DIR/{N}_dry_run.prof`` and ``DIR/{N}_all_done.prof`` and prints their top functions.

    OMP_NUM_THREADS=1 python bench/dag_scale.py [--annotations PATH | --synthetic N [N ...]]
        [--shard-size S] [--workdir DIR] [--profile DIR]
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import math
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ANNOTATIONS = REPO.parent / "shared" / "datasets" / "unav100" / "unav100_annotations.json"
TARGET_S = 60.0  # the dry runs' target, whatever the number of videos
MIN_SHARD_SIZE = 32  # extraction.shard_size's default
MAX_SHARDS = 2_000  # the default shard size keeps the extraction jobs at most this many
# A few classes for the synthetic annotations; label_id is the index.
SYNTHETIC_LABELS = ("dog barking", "car engine", "speech", "acoustic guitar", "applause")
# The synthetic split, by id index modulo 5: 3:1:1 as UnAV-100's (6,489 / 2,134 / 2,167 videos).
SYNTHETIC_SUBSETS = ("train", "train", "train", "validation", "test")
# Links to one file that ext4 allows (65,000); a fresh empty file serves the next ones.
LINKS_PER_FILE = 60_000
INPUT_AGE_S = 86_400  # videos, annotations and config are dated this long ago, before any output
PHASES = ("dry run", "all done", "no-op", "cluster job")  # the timed phases, in order


@dataclass(frozen=True)
class Sizes:
    """What one measurement ran on: the videos, the shard size and the DAG's job count."""

    num_videos: int  # placeholder videos (= annotated ids)
    shard_size: int  # extraction.shard_size
    num_jobs: int  # the dry run's job total


def default_shard_size(num_videos: int) -> int:
    """32 videos a shard, or as many as keep the extraction jobs at most :data:`MAX_SHARDS`."""
    return max(MIN_SHARD_SIZE, math.ceil(num_videos / MAX_SHARDS))


def write_synthetic_annotations(path: Path, num_videos: int) -> None:
    """A valid UnAV-100-format file of ``num_videos`` ids ``synth0000000``, ...: durations of
    10 to 60 s (UnAV-100's range), splits 3:1:1, one event per video over the middle half of its
    duration, labels cycling through :data:`SYNTHETIC_LABELS`."""
    width = len(str(max(num_videos - 1, 0)))
    database = {}
    for index in range(num_videos):
        duration_s = 10.0 + index % 51
        label_id = index % len(SYNTHETIC_LABELS)
        database[f"synth{index:0{width}d}"] = {
            "duration": duration_s,
            "subset": SYNTHETIC_SUBSETS[index % len(SYNTHETIC_SUBSETS)],
            "annotations": [
                {
                    "segment": [duration_s / 4, duration_s * 3 / 4],
                    "label": SYNTHETIC_LABELS[label_id],
                    "label_id": label_id,
                }
            ],
        }
    text = json.dumps({"version": "synthetic", "database": database}, separators=(",", ":"))
    path.write_text(text, encoding="utf-8")


def create_placeholders(videos: Path, video_ids: list[str], mtime: float) -> None:
    """An empty ``videos/{id}.mp4`` per id, modified at ``mtime``: hard links to a few empty
    files (one system call a video, about 5 times faster than creating and dating each file)."""
    videos.mkdir(parents=True, exist_ok=True)
    sources = videos.parent / "placeholders"
    sources.mkdir(exist_ok=True)
    source = ""
    for index, video_id in enumerate(video_ids):
        if index % LINKS_PER_FILE == 0:
            source = str(sources / f"empty{index // LINKS_PER_FILE}")
            Path(source).touch()
            os.utime(source, (mtime, mtime))  # a link shares its file's modification time
        try:
            os.link(source, videos / f"{video_id}.mp4")
        except OSError as error:
            if error.errno != errno.EMLINK:
                raise
            raise RuntimeError(
                f"{videos}'s file system allows fewer than {LINKS_PER_FILE} links to a file; "
                "lower LINKS_PER_FILE"
            ) from error


def prepare(
    workdir: Path, name: str, annotations: Path, video_ids: list[str], shard_size: int
) -> None:
    """Placeholder videos of ``video_ids`` and the config of a data set ``name`` over them and
    ``annotations``."""
    day_ago = time.time() - INPUT_AGE_S  # inputs older than every output created later
    create_placeholders(workdir / "videos", video_ids, day_ago)
    config = {
        "dataset": {
            "name": name,
            "source": "videos",
            "videos_dir": str(workdir / "videos"),
            "annotations": str(annotations),
        },
        "extraction": {"shard_size": shard_size},
    }
    (workdir / "workflow_config.yaml").write_text(yaml.safe_dump(config))
    os.utime(workdir / "workflow_config.yaml", (day_ago, day_ago))


def snakemake(workdir: Path, *args: str, profile: Path | None = None) -> tuple[float, str]:
    """Run Snakemake on the repository's Snakefile in ``workdir``; (seconds, output)."""
    command = [
        str(Path(sys.executable).with_name("snakemake")),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "workflow_config.yaml"),
        "--cores",
        "1",
        *args,
    ]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return seconds, done.stdout + done.stderr


def dry_run_jobs(dry_run_output: str) -> list[tuple[list[str], list[str]]]:
    """``(inputs, outputs)`` of every job block (``rule x:`` ... ) of a dry run's listing."""
    jobs: list[tuple[list[str], list[str]]] = []
    for line in dry_run_output.splitlines():
        stripped = line.strip()
        if line.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            jobs.append(([], []))
        elif jobs and stripped.startswith(("input:", "output:")):
            key, _, files = stripped.partition(":")
            jobs[-1][key == "output"].extend(part.strip() for part in files.split(","))
    return jobs


def job_total(dry_run_output: str) -> int:
    """The ``total`` of a dry run's job table."""
    for line in dry_run_output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "total" and words[1].isdigit():
            return int(words[1])
    raise RuntimeError("the dry run printed no job total:\n" + dry_run_output[-2000:])


def touch_outputs(workdir: Path, dry_run_output: str) -> int:
    """Create every job's outputs in a topological order of the jobs, mtimes increasing.

    The listing's own order is not guaranteed to be the execution order (Snakemake says so),
    hence the sort: a job comes after every job whose output it reads.
    """
    jobs = dry_run_jobs(dry_run_output)
    producer = {path: index for index, (_, outputs) in enumerate(jobs) for path in outputs}
    waiting = {
        index: {producer[path] for path in inputs if path in producer}
        for index, (inputs, _) in enumerate(jobs)
    }
    order: list[int] = []
    while waiting:
        done = set(order)
        ready = sorted(index for index, needs in waiting.items() if needs <= done)
        if not ready:
            raise RuntimeError("the dry run's jobs form a cycle; cannot order them")
        order += ready
        for index in ready:
            del waiting[index]
    paths = [path for index in order for path in jobs[index][1] if path]
    start = time.time() - len(paths) - 1
    for offset, relative in enumerate(paths):
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (start + offset, start + offset))  # later jobs get later mtimes
    return len(paths)


def phase(seconds: float, sizes: Sizes, target_s: float | None = None) -> str:
    """``seconds``, the cost per video and, given a target, whether it is met."""
    text = f"{seconds:6.1f} s ({seconds / sizes.num_videos * 1e6:5.0f} µs/video)"
    if target_s is None:
        return text
    return text + (" ok" if seconds < target_s else f" over the {target_s:.0f} s target")


def load() -> str:
    """The machine's load averages over 1, 5 and 15 minutes (other jobs skew the timings)."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def print_profile(profile: Path) -> None:
    """The top functions of a cProfile output: by cumulative time, then the repository's own
    (Snakefile, rules, pipeline; not its virtual environment), then by own time."""
    stats = pstats.Stats(str(profile))
    stats.sort_stats("cumulative").print_stats(30)
    stats.print_stats(re.escape(f"{REPO}{os.sep}") + r"(?!\.)", 20)
    stats.sort_stats("tottime").print_stats(15)


def measure(
    workdir: Path,
    annotations: Path | None,
    num_synthetic: int,
    shard_size: int | None,
    profile_dir: Path | None,
) -> tuple[Sizes, dict[str, float]]:
    """Set up one working folder and time its phases; (sizes, phase -> seconds).

    Args:
        workdir: the working folder, created.
        annotations: the annotation file whose ids to use; None for synthetic ones.
        num_synthetic: the number of synthetic ids, written to ``workdir/annotations.json``.
        shard_size: ``extraction.shard_size``; None for :func:`default_shard_size`.
        profile_dir: where to write both dry runs' cProfile outputs; None for no profile.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if annotations is None:
        started = time.perf_counter()
        annotations = workdir / "annotations.json"
        write_synthetic_annotations(annotations, num_synthetic)
        day_ago = time.time() - INPUT_AGE_S  # older than the outputs (the index job reads it)
        os.utime(annotations, (day_ago, day_ago))
        print(f"write {num_synthetic} synthetic annotations: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    video_ids = sorted(json.loads(annotations.read_text(encoding="utf-8"))["database"])
    shard_size = shard_size or default_shard_size(len(video_ids))
    prepare(
        workdir, "synthetic" if num_synthetic else "unav100", annotations, video_ids, shard_size
    )
    print(f"create {len(video_ids)} placeholder videos: {time.perf_counter() - started:.1f} s")
    print(f"load average before: {load()}")
    seconds: dict[str, float] = {}
    seconds["dry run"], dry_out = snakemake(workdir, "-n")
    sizes = Sizes(len(video_ids), shard_size, job_total(dry_out))
    print(f"videos: {sizes.num_videos}, shard size {shard_size}, jobs: {sizes.num_jobs}")
    print(f"dry run, nothing built (snakemake -n): {phase(seconds['dry run'], sizes, TARGET_S)}")
    first_shard = next(
        path for _, outputs in dry_run_jobs(dry_out) for path in outputs if "/shards/" in path
    )
    seconds["cluster job"], _ = snakemake(workdir, "-n", "--mode", "remote", first_shard)
    print(f"a cluster job's start ({first_shard}):  {phase(seconds['cluster job'], sizes)}")
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        dry_profile = profile_dir / f"{sizes.num_videos}_dry_run.prof"
        snakemake(workdir, "-n", "--quiet", "all", profile=dry_profile)
    started = time.perf_counter()
    num_outputs = touch_outputs(workdir, dry_out)
    print(f"create {num_outputs} outputs in DAG order: {time.perf_counter() - started:.1f} s")
    seconds["all done"], check_out = snakemake(workdir, "-n")
    print(f"dry run, every output up to date:      {phase(seconds['all done'], sizes, TARGET_S)}")
    if "Nothing to be done" in check_out:  # safe to run for real: Snakemake found no job
        seconds["no-op"], _ = snakemake(workdir)
        print(f"no-op run (nothing to be done):        {phase(seconds['no-op'], sizes, TARGET_S)}")
    else:
        print("Snakemake still finds jobs to run:\n" + check_out[-2000:])
    print(f"load average after: {load()}")
    if profile_dir is not None:
        done_profile = profile_dir / f"{sizes.num_videos}_all_done.prof"
        snakemake(workdir, "-n", "--quiet", "all", profile=done_profile)
        for name, profile in (("nothing built", dry_profile), ("all done", done_profile)):
            print(f"\nprofile of the dry run, {name}, {sizes.num_videos} videos ({profile}):")
            print_profile(profile)
    return sizes, seconds


def print_growth(results: list[tuple[Sizes, dict[str, float]]]) -> None:
    """One row per size, then the cost of each video added from one size to the next (the
    fixed costs, such as importing torch, cancel out): flat if the cost grows linearly."""
    print("\n   videos  shard   jobs  " + "  ".join(f"{name:>24}" for name in PHASES))
    for sizes, seconds in results:
        cells = "  ".join(
            f"{phase(seconds[name], sizes) if name in seconds else '-':>24}" for name in PHASES
        )
        print(f"{sizes.num_videos:9d}  {sizes.shard_size:5d}  {sizes.num_jobs:5d}  {cells}")
    print("each video added:")
    for (small, small_s), (large, large_s) in itertools.pairwise(results):
        added = large.num_videos - small.num_videos
        cells = "  ".join(
            f"{(large_s[name] - small_s[name]) / added * 1e6:15.0f} µs/video"
            if name in small_s and name in large_s and added
            else f"{'-':>24}"
            for name in PHASES
        )
        print(f"{small.num_videos:>9} to {large.num_videos:<10}  {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    parser.add_argument(
        "--synthetic",
        type=int,
        nargs="+",
        metavar="N",
        help="instead of --annotations: N synthetic ids; several N, one measurement each",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        help=f"extraction.shard_size (default: {MIN_SHARD_SIZE}, or ceil(videos / {MAX_SHARDS}))",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the working folders here (default: temporary ones)"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile both dry runs")
    args = parser.parse_args(argv)
    if args.synthetic is None and not args.annotations.is_file():
        parser.error(f"annotation file {args.annotations} does not exist")
    if args.synthetic is not None and min(args.synthetic) < len(SYNTHETIC_SUBSETS):
        parser.error(f"--synthetic needs at least {len(SYNTHETIC_SUBSETS)} videos (every split)")
    if args.shard_size is not None and args.shard_size < 1:
        parser.error("--shard-size must be at least 1")
    results: list[tuple[Sizes, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="dag_scale_") as temporary:
        for num_synthetic in args.synthetic or [0]:
            name = f"synthetic_{num_synthetic}" if num_synthetic else args.annotations.stem
            workdir = (args.workdir or Path(temporary)) / name
            print(f"\n== {name} in {workdir}")
            annotations = None if num_synthetic else args.annotations
            results.append(
                measure(workdir, annotations, num_synthetic, args.shard_size, args.profile)
            )
            if args.workdir is None:  # free the inodes before the next size
                started = time.perf_counter()
                shutil.rmtree(workdir)
                print(f"remove the working folder: {time.perf_counter() - started:.1f} s")
    if len(results) > 1:
        print_growth(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
