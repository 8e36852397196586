"""PNG figures of an evaluation: per-class AP bars and per-video event timelines.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so nothing changes the
process-wide backend and nothing needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GT_COLOUR = "#2b6cb0"
PREDICTION_COLOUR = "#dd6b20"


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def plot_per_class_ap(
    ap_by_class: Mapping[str, float], path: str | Path, *, title: str = "AP per class"
) -> Path:
    """Horizontal bars of each class's AP (in %), best first; returns the PNG path.

    Args:
        ap_by_class: class name -> AP in [0, 1] (e.g. averaged over the tIoU thresholds).
        path: PNG file to write.
        title: figure title.
    """
    ranked = sorted(ap_by_class.items(), key=lambda item: -item[1])
    height = 1.2 + 0.22 * max(len(ranked), 1)
    figure = Figure(figsize=(7.0, height), layout="constrained")
    axes = figure.add_subplot()
    names = [name for name, _ in ranked]
    values = [100.0 * value for _, value in ranked]
    axes.barh(range(len(ranked)), values, color=GT_COLOUR)
    axes.set_yticks(range(len(ranked)), names, fontsize=7 if len(ranked) > 30 else 9)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("AP (%)")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def plot_timeline(
    video_id: str,
    duration_s: float,
    ground_truth: Sequence[tuple[float, float, str]],
    predictions: Sequence[Mapping[str, Any]],
    path: str | Path,
) -> Path:
    """One row per class: ground-truth events (upper bar) against predictions (lower bars,
    opacity = score); returns the PNG path.

    Args:
        video_id: shown in the title.
        duration_s: length of the time axis.
        ground_truth: ``(start_s, end_s, label)`` of the video's annotated events.
        predictions: ``{"segment": [s, e], "label", "score"}`` to draw (e.g. the top ones).
        path: PNG file to write.
    """
    classes = sorted({label for _, _, label in ground_truth})
    classes += sorted({p["label"] for p in predictions} - set(classes))
    row_of = {label: row for row, label in enumerate(classes)}
    figure = Figure(figsize=(9.0, 1.2 + 0.6 * max(len(classes), 1)), layout="constrained")
    axes = figure.add_subplot()
    for start, end, label in ground_truth:
        axes.broken_barh([(start, end - start)], (row_of[label] + 0.05, 0.4), color=GT_COLOUR)
    top_score = max((float(p["score"]) for p in predictions), default=1.0) or 1.0
    for prediction in predictions:
        start, end = prediction["segment"]
        alpha = 0.15 + 0.85 * float(prediction["score"]) / top_score
        axes.broken_barh(
            [(start, end - start)],
            (row_of[prediction["label"]] + 0.5, 0.4),
            color=PREDICTION_COLOUR,
            alpha=min(alpha, 1.0),
        )
    axes.set_yticks([row + 0.5 for row in range(len(classes))], classes)
    axes.set_ylim(len(classes), 0)
    axes.set_xlim(0, duration_s)
    axes.set_xlabel("time (s)")
    axes.set_title(f"{video_id}: ground truth (blue, top) vs predictions (orange, bottom)")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)
