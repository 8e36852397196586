"""Generating a whole synthetic data set, resumably: videos, ground truth, manifest."""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipeline.io import write_json_atomic
from pipeline.synth.ground_truth import write_ground_truth
from pipeline.synth.plan import VideoPlan
from pipeline.synth.planner import plan_dataset
from pipeline.synth.render import read_plan_hash, render_video

log = logging.getLogger(__name__)

VIDEOS_DIR = "videos"
MANIFEST = "manifest.json"


def is_rendered(plan: VideoPlan, path: Path) -> bool:
    """Whether ``path`` is a finished render of exactly this plan (by its stored hash)."""
    import av  # here, not at the top: building the DAG imports this package without PyAV

    if not path.is_file():
        return False
    try:
        stored_hash = read_plan_hash(path)
    except av.error.FFmpegError as error:
        log.warning("%s is unreadable (%s); rendering it again", path, error)
        return False
    return stored_hash == plan.plan_hash()


def _render_one(plan: VideoPlan, path: Path) -> str:
    render_video(plan, path)
    return plan.video_id


def generate(out_dir: Path, size: str, seed: int, num_classes: int, workers: int = 1) -> None:
    """Render a synthetic data set into ``out_dir`` and write its ground truth.

    Writes ``videos/{video_id}.mp4``, ``annotations.json``, ``boxes.json``,
    ``segments.csv``, ``classes.json`` and, last, ``videos/manifest.json``. Resumable:
    a video is rendered only when its file is missing or holds another plan hash, so a
    killed run picks up where it stopped. Leftover temporary files (``videos/.*.part``)
    of a killed run are removed.

    Args:
        out_dir: output folder of the data set.
        size: a key of ``SIZES``.
        seed: the data-set seed.
        num_classes: number of event classes, 2..20.
        workers: number of processes rendering videos in parallel.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    plans = plan_dataset(size, seed, num_classes)
    videos_dir = Path(out_dir) / VIDEOS_DIR
    videos_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = videos_dir / MANIFEST
    manifest_path.unlink(missing_ok=True)  # only a complete run leaves a manifest
    for leftover in videos_dir.glob(".*.part"):
        leftover.unlink()
    pending = [p for p in plans if not is_rendered(p, videos_dir / f"{p.video_id}.mp4")]
    log.info("rendering %d of %d videos with %d worker(s)", len(pending), len(plans), workers)
    started = time.perf_counter()
    if workers == 1 or len(pending) <= 1:
        for plan in pending:
            _render_one(plan, videos_dir / f"{plan.video_id}.mp4")
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_render_one, plan, videos_dir / f"{plan.video_id}.mp4")
                for plan in pending
            ]
            for future in futures:
                future.result()  # re-raises a worker's error
    log.info("rendered %d videos in %.1f s", len(pending), time.perf_counter() - started)
    write_ground_truth(plans, Path(out_dir))
    manifest = {
        "size": size,
        "seed": seed,
        "num_classes": num_classes,
        "videos": {
            plan.video_id: {"plan_hash": plan.plan_hash(), "duration": round(plan.duration_s, 3)}
            for plan in plans
        },
    }
    write_json_atomic(manifest_path, manifest, indent=1)
