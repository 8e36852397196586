"""What the results viewer shows, gathered from the stages' outputs into plain JSON values.

Every reader takes the files the workflow writes and returns lists and dicts of numbers and
strings, compact enough to embed in one HTML page: segments in seconds rounded to
:data:`TIME_DECIMALS`, scores to :data:`SCORE_DECIMALS`, classes as indices into the
annotation file's label list.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.annotations import AnnotationSet
from pipeline.detection.metrics import read_results
from pipeline.io import read_json

TIME_DECIMALS = 2  # 10 ms: finer than a video frame at 60 fps is not needed on a timeline
SCORE_DECIMALS = 3
# Detections kept per video and run, the best first: the post-processing keeps up to 500
# (models.postprocessing), which for UnAV-100's 2,167 test videos and five runs would make a
# page of several hundred MB; the low-scoring tail is hidden by any useful threshold anyway.
MAX_DETECTIONS_PER_VIDEO = 100


def ground_truth(truth: AnnotationSet) -> list[dict[str, Any]]:
    """The split's videos, sorted by id: ``{"id", "duration", "events": [[start, end, class],
    ...]}`` with ``class`` an index into ``truth.labels``."""
    return [
        {
            "id": video.video_id,
            "duration": round(video.duration_s, TIME_DECIMALS),
            "events": [
                [
                    round(event.start_s, TIME_DECIMALS),
                    round(event.end_s, TIME_DECIMALS),
                    event.label_id,
                ]
                for event in sorted(video.events, key=lambda event: event.start_s)
            ],
        }
        for _, video in sorted(truth.videos.items())
    ]


def run_detections(
    events_path: str | Path,
    labels: tuple[str, ...],
    video_ids: Collection[str],
    *,
    max_per_video: int = MAX_DETECTIONS_PER_VIDEO,
) -> dict[str, list[list[float]]]:
    """Video id -> the run's ``[start, end, class, score]`` detections on it, the best
    ``max_per_video`` by score (highest first); videos outside ``video_ids`` are left out."""
    predictions = read_results(events_path, labels)
    detections: dict[str, list[list[float]]] = {}
    order = np.argsort(-predictions.scores, kind="stable")  # (N,) best first
    for row in order:
        video_id = str(predictions.video_ids[row])
        if video_id not in video_ids:
            continue
        kept = detections.setdefault(video_id, [])
        if len(kept) < max_per_video:
            start, end = predictions.segments[row].tolist()
            kept.append(
                [
                    round(start, TIME_DECIMALS),
                    round(end, TIME_DECIMALS),
                    int(predictions.label_ids[row]),
                    round(float(predictions.scores[row]), SCORE_DECIMALS),
                ]
            )
    return detections


def run_events(run: str | Path, split: str) -> Path:
    """A detection run folder's events of ``split``: its own, or its first seed's when it is a
    run over seeds (``seeds`` in its metrics.json, :mod:`pipeline.detection.seeds`)."""
    run = Path(run)
    own = run / "events" / f"{split}.json"
    if own.exists() or not (run / "metrics.json").exists():
        return own
    metrics = read_json(run / "metrics.json", "detection metrics", "run pipeline.detection.seeds")
    seeds = metrics.get("seeds")
    return run / f"seed{seeds[0]}" / "events" / f"{split}.json" if seeds else own


def run_metrics(metrics_path: str | Path, labels: tuple[str, ...]) -> dict[str, Any]:
    """The run's mAP at each tIoU threshold, its average and each class's AP averaged over the
    thresholds (``ap_per_class[k]`` for ``labels[k]``; None for a class the file lacks)."""
    metrics = read_json(metrics_path, "detection metrics", "run pipeline.detection.evaluate")
    keys = list(metrics["mAP"])
    ap_per_class = metrics["ap_per_class"]
    return {
        "tiou": [float(key) for key in keys],
        "mAP": [metrics["mAP"][key] for key in keys],
        "average_mAP": metrics["average_mAP"],
        "ap_per_class": [
            float(np.mean(list(ap_per_class[label].values()))) if label in ap_per_class else None
            for label in labels
        ],
    }


def segment_labels(
    segments_csv: str | Path, video_ids: Collection[str]
) -> tuple[dict[int, str], dict[str, list[int]]]:
    """From segments.csv: label id -> class name (every id in the file, the background
    included), and video id -> the label id of each of its 1-second segments, in time order,
    for the videos in ``video_ids``."""
    names: dict[int, str] = {}
    labels: dict[str, list[int]] = {}
    with Path(segments_csv).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label_id = int(row["label_id"])
            names[label_id] = row["label"]
            if row["video_id"] in video_ids:
                labels.setdefault(row["video_id"], []).append(label_id)
    return names, labels


def segment_runs(
    metrics_paths: Mapping[str, str | Path], video_ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    """Segment run name -> ``{"accuracy": test accuracy, "predicted": {video id: [label id of
    each segment]}}`` from each run's metrics.json (pipeline.segments.train)."""
    runs = {}
    for name, path in metrics_paths.items():
        metrics = read_json(path, "segment metrics", "run pipeline.segments.train")
        if "test_predictions" not in metrics:
            raise ValueError(
                f"segment metrics {path} has no test_predictions (written by an older "
                "pipeline.segments.train); rerun the segments_train rule"
            )
        runs[name] = {
            "accuracy": metrics["test_accuracy"],
            "predicted": {
                video_id: predicted
                for video_id, predicted in metrics["test_predictions"].items()
                if video_id in video_ids
            },
        }
    return runs


__all__ = [
    "MAX_DETECTIONS_PER_VIDEO",
    "ground_truth",
    "run_detections",
    "run_events",
    "run_metrics",
    "segment_labels",
    "segment_runs",
]
