"""Score an events file against the annotations of one split: ``metrics.json`` and PNG plots.

The metric arithmetic (mAP at tIoU thresholds, per-class AP, top-1x/5x recall) is
:func:`pipeline.detection.metrics.evaluate_detection`;
this stage reads the files, adds the counts, the 95 % intervals of a bootstrap over the videos
(:mod:`pipeline.detection.bootstrap`; its per-resample values last in the file), the
inference throughput recorded beside the events file (``{events}.throughput.json``, written by
:mod:`pipeline.detection.infer`) and draws the figures (:mod:`pipeline.detection.plots`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.annotations import AnnotationSet, load_annotations
from pipeline.cli import user_errors
from pipeline.detection.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from pipeline.detection.metrics import TIOU_PRESETS, Predictions, evaluate_detection, read_results
from pipeline.detection.plots import plot_per_class_ap, plot_timeline
from pipeline.ids import safe_name

NUM_TIMELINES = 3  # test videos drawn as timelines
MAX_TIMELINE_PREDICTIONS = 20


def _timeline_predictions(
    predictions: Predictions, video_id: str, labels: Sequence[str], num_events: int
) -> list[dict[str, Any]]:
    """The top ``3 * num_events`` (at most :data:`MAX_TIMELINE_PREDICTIONS`) predictions."""
    rows = np.flatnonzero(predictions.video_ids == video_id)
    rows = rows[np.argsort(-predictions.scores[rows], kind="stable")]
    rows = rows[: min(3 * max(num_events, 1), MAX_TIMELINE_PREDICTIONS)]
    return [
        {
            "segment": predictions.segments[row].tolist(),
            "label": labels[int(predictions.label_ids[row])],
            "score": float(predictions.scores[row]),
        }
        for row in rows
    ]


def draw_plots(
    truth: AnnotationSet,
    predictions: Predictions,
    metrics: dict[str, Any],
    plots_dir: Path,
    *,
    num_timelines: int = NUM_TIMELINES,
) -> list[Path]:
    """Per-class AP (mean over thresholds) and timelines of the first videos with events."""
    ap_by_class = {
        name: float(np.mean(list(by_tiou.values())))
        for name, by_tiou in metrics["ap_per_class"].items()
    }
    paths = [
        plot_per_class_ap(
            ap_by_class,
            plots_dir / "per_class_ap.png",
            title=f"AP per class, mean over tIoU {metrics['tiou_thresholds']}",
        )
    ]
    videos = [video for _, video in sorted(truth.videos.items()) if video.events]
    for video in videos[:num_timelines]:
        paths.append(
            plot_timeline(
                video.video_id,
                video.duration_s,
                [(event.start_s, event.end_s, event.label) for event in video.events],
                _timeline_predictions(predictions, video.video_id, truth.labels, len(video.events)),
                plots_dir / f"timeline_{safe_name(video.video_id)}.png",
            )
        )
    return paths


def evaluate_events(
    annotations_path: str | Path,
    split: str,
    events_path: str | Path,
    tiou_thresholds: Sequence[float],
    *,
    out_path: str | Path,
    plots_dir: str | Path | None = None,
    num_timelines: int = NUM_TIMELINES,
    bootstrap_resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Evaluate ``events_path`` on ``split``; write ``out_path`` (metrics JSON) and the plots.

    Returns the metrics written: :meth:`DetectionMetrics.to_dict` plus ``split``,
    ``events_file``, ``num_videos``, ``num_events``, ``num_predictions``,
    ``num_videos_with_predictions``, ``inference`` (throughput, when recorded) and ``plots``
    (paths relative to the metrics file's folder). ``bootstrap_resamples`` resamples of the
    videos with ``bootstrap_seed`` give the intervals (0: none).
    """
    annotations_path, events_path, out_path = (
        Path(annotations_path),
        Path(events_path),
        Path(out_path),
    )
    truth = load_annotations(annotations_path).subset(split)
    if not events_path.exists():
        raise FileNotFoundError(
            f"events file {events_path} does not exist; run pipeline.detection.infer"
        )
    predictions = read_results(events_path, truth.labels)
    metrics = evaluate_detection(
        truth,
        predictions,
        tiou_thresholds,
        bootstrap_resamples=bootstrap_resamples,
        bootstrap_seed=bootstrap_seed,
    ).to_dict()
    bootstrap = metrics.pop("bootstrap", None)  # B numbers a threshold: after the summary
    metrics.update(
        {
            "split": split,
            "events_file": str(events_path),
            "num_videos": len(truth.videos),
            "num_events": truth.num_events,
            "num_predictions": len(predictions),
            "num_videos_with_predictions": len(set(predictions.video_ids.tolist())),
        }
    )
    throughput_path = events_path.with_suffix(".throughput.json")
    if throughput_path.exists():
        metrics["inference"] = json.loads(throughput_path.read_text())
    metrics["plots"] = []
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if plots_dir is not None:
        paths = draw_plots(
            truth, predictions, metrics, Path(plots_dir), num_timelines=num_timelines
        )
        metrics["plots"] = [os.path.relpath(path, out_path.parent) for path in paths]
    if bootstrap is not None:
        metrics["bootstrap"] = bootstrap
    out_path.write_text(json.dumps(metrics, indent=1))
    return metrics


@user_errors()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", required=True, help="UnAV-100-format annotation file")
    parser.add_argument("--split", default="test", help="annotation subset to evaluate")
    parser.add_argument(
        "--events", required=True, help="ActivityNet results JSON (pipeline.detection.infer)"
    )
    parser.add_argument(
        "--tiou",
        type=float,
        nargs="+",
        default=TIOU_PRESETS["unav100"].tolist(),
        help="tIoU thresholds (default: UnAV-100's 0.1 ... 0.9)",
    )
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", help="folder for the PNG plots (none when omitted)")
    parser.add_argument("--timelines", type=int, default=NUM_TIMELINES, help="videos drawn")
    parser.add_argument(
        "--bootstrap-resamples",
        type=int,
        default=DEFAULT_RESAMPLES,
        help="resamples of the videos for the 95 %% intervals (0: none)",
    )
    parser.add_argument(
        "--bootstrap-seed", type=int, default=DEFAULT_SEED, help="seed of the resamples"
    )
    args = parser.parse_args(argv)
    metrics = evaluate_events(
        args.annotations,
        args.split,
        args.events,
        args.tiou,
        out_path=args.out,
        plots_dir=args.plots,
        num_timelines=args.timelines,
        bootstrap_resamples=args.bootstrap_resamples,
        bootstrap_seed=args.bootstrap_seed,
    )
    table = ", ".join(f"{t}: {100 * v:.2f}" for t, v in metrics["mAP"].items())
    average = f"{100 * metrics['average_mAP']:.2f}"
    if "average_mAP_ci95" in metrics:
        low, high = (100 * bound for bound in metrics["average_mAP_ci95"])
        average += f" [{low:.1f}, {high:.1f}]"
    print(f"{args.split} mAP (%) at tIoU {table}; average {average}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
