"""Time ``evaluate_detection`` on a synthetic UnAV-100-sized problem, on one core.

1,000 videos of 10-60 s, 100 classes, 1-5 (mean 3) ground-truth events per video, 100
predictions per video (seeded): 10 jittered copies of each GT event with its class (so the
greedy matcher has real work) and random segments of random classes for the rest; tIoU
thresholds 0.1:0.1:0.9. Times the evaluator without and with the bootstrap over the videos
(:mod:`pipeline.detection.bootstrap`, 1,000 resamples by default) and reports the best of 3 runs
of each. Target: under 2 s with the bootstrap on.

    python bench/eval_speed.py [--videos 1000] [--repeats 3] [--resamples 1000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy loads its BLAS

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.machine

from bench.machine import cpu_model
from pipeline.annotations import AnnotationSet, Event, VideoAnnotation
from pipeline.detection.bootstrap import DEFAULT_RESAMPLES
from pipeline.detection.metrics import TIOU_PRESETS, Predictions, evaluate_detection

TARGET_S = 2.0


def make_problem(
    num_videos: int, num_classes: int, preds_per_video: int, seed: int
) -> tuple[AnnotationSet, Predictions]:
    """Seeded ground truth and predictions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    labels = tuple(f"class_{i:03d}" for i in range(num_classes))
    videos: dict[str, VideoAnnotation] = {}
    video_ids, segments, label_ids = [], [], []
    for v in range(num_videos):
        vid = f"video_{v:05d}"
        duration = float(rng.uniform(10, 60))
        events = []
        for _ in range(int(rng.integers(1, 6))):
            start = float(rng.uniform(0, duration - 2))
            end = float(min(duration, start + rng.uniform(1, 20)))
            label_id = int(rng.integers(num_classes))
            events.append(Event(start, end, labels[label_id], label_id))
        videos[vid] = VideoAnnotation(vid, duration, "test", tuple(events))
        gt = np.array([(e.start_s, e.end_s) for e in events])  # (G, 2)
        jittered = np.repeat(gt, 10, axis=0) + rng.normal(0, 1.5, (10 * len(gt), 2))
        starts = rng.uniform(0, duration - 1, preds_per_video - len(jittered))
        random = np.stack([starts, starts + rng.uniform(0.5, 20, len(starts))], axis=1)
        seg = np.sort(np.concatenate([jittered, random]).clip(0, duration), axis=1)  # (P, 2)
        segments.append(seg)
        label_ids.append(
            np.concatenate(
                [
                    np.repeat([e.label_id for e in events], 10),
                    rng.integers(num_classes, size=len(starts)),
                ]
            )
        )
        video_ids += [vid] * preds_per_video
    predictions = Predictions(
        video_ids=video_ids,
        segments=np.concatenate(segments),
        label_ids=np.concatenate(label_ids),
        scores=rng.random(len(video_ids)),
    )
    return AnnotationSet("bench", videos, labels), predictions


def main() -> None:
    """Build the problem, time the evaluator, print the figure and the machine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000, help="number of videos")
    parser.add_argument("--classes", type=int, default=100, help="number of classes")
    parser.add_argument("--preds", type=int, default=100, help="predictions per video")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic problem")
    parser.add_argument(
        "--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples"
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    ground_truth, predictions = make_problem(args.videos, args.classes, args.preds, args.seed)
    thresholds = TIOU_PRESETS["unav100"]
    times: dict[int, list[float]] = {0: [], args.resamples: []}
    for _ in range(args.repeats):
        for resamples, runs in times.items():
            start = time.perf_counter()
            metrics = evaluate_detection(
                ground_truth, predictions, thresholds, bootstrap_resamples=resamples
            )
            runs.append(time.perf_counter() - start)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"machine: {cpu_model()} ({platform.machine()}, {os.cpu_count()} cores, {cores} used), "
        f"{platform.system()}, Python {platform.python_version()}, NumPy {np.__version__}"
    )
    print(
        f"problem: {args.videos} videos, {args.classes} classes, "
        f"{metrics.num_ground_truth} GT events, {metrics.num_predictions} predictions, "
        f"{len(thresholds)} thresholds"
    )
    interval = metrics.to_dict().get("average_mAP_ci95")
    interval = "" if interval is None else f" [{interval[0]:.4f}, {interval[1]:.4f}]"
    print(
        f"average mAP {metrics.average_map:.4f}{interval}, "
        f"recall@1x(0.5) {metrics.recall_1x[4]:.4f}"
    )
    for resamples, runs in times.items():
        label = f"with {resamples} bootstrap resamples" if resamples else "without bootstrap"
        target = f"; target < {TARGET_S} s: {'met' if min(runs) < TARGET_S else 'NOT met'}"
        print(
            f"evaluate_detection {label}, best of {args.repeats}: {min(runs):.3f} s "
            f"(runs: {', '.join(f'{t:.3f}' for t in runs)}){target if resamples else ''}"
        )


if __name__ == "__main__":
    main()
