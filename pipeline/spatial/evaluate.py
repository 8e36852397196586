"""Evaluate a trained sound-source localiser on one split: metrics JSON and a heatmap figure.

Frames evaluated: the grid frames (:mod:`pipeline.spatial.data`) of the split's snippets that
show at least one sounding object; the ground truth is the union of the sounding objects'
boxes. Metrics are those of :mod:`pipeline.spatial.metrics`, over all evaluated frames and over
the frames on which a silent distractor object is visible as well.

Usage: ``python -m pipeline.spatial.evaluate --model results/demo/spatial/m2vsl/seed0/model.pt
--index .../index.json --boxes results/demo/boxes.json --annotations
results/demo/annotations.json --split test --out .../metrics.json --heatmaps .../heatmaps.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models import count_parameters
from models.m2vsl import SoundLocaliser
from pipeline.cli import user_errors
from pipeline.decode import DecodeError
from pipeline.encoders.classic_visual import block_mean
from pipeline.spatial.checkpoint import load_localiser
from pipeline.spatial.data import (
    EvaluationFrames,
    SpatialSnippets,
    evaluation_frames,
    frame_objects,
    load_boxes,
    load_split,
)
from pipeline.spatial.metrics import f_score_curve, frame_scores, summarise
from pipeline.spatial.plots import plot_heatmaps, read_video_frames
from pipeline.store import StoreError

log = logging.getLogger(__name__)

PROTOCOL = {
    "frames": "grid frame of each snippet with >= 1 sounding object; GT = union of their boxes",
    "ciou": "adaptive threshold: the |GT| highest pixels (ties included)",
    "ciou_half_max": "min-max normalised heatmap >= 0.5 (Chen et al., CVPR 2021)",
    "ciou_ap50": "fraction of frames with cIoU >= 0.5",
    "ciou_auc": "area under fraction(cIoU >= t), t = 0, 0.05, ..., 1",
    "miou_fscore": "min-max normalised heatmap >= 0.5; F_beta with beta^2 = 0.3 (AVSBench)",
    "fscore_max": "AVSBench: max over 255 thresholds of the frame-averaged F-score",
    "pointing_accuracy": "heatmap maximum inside a sounding object's box",
    "peak_on_silent_rate": "heatmap maximum on a silent object and on no sounding one",
    "grid_oracle": "each grid cell scores its ground-truth coverage: the grid's ceiling",
}


@dataclass(frozen=True)
class SpatialEvaluation:
    """Heatmaps and per-frame scores of one localiser on one split.

    Attributes:
        frames: the evaluated frames (rows into the split's snippets, masks, silent boxes).
        heatmaps: (M, height, width) float32 heatmaps of the evaluated frames.
        per_frame: per evaluated frame, the scores of :func:`frame_scores`.
        inference_seconds: wall time of computing the heatmaps (model and upsampling).
        metrics: data-set metrics, counts and throughput (JSON-ready).
    """

    frames: EvaluationFrames
    heatmaps: np.ndarray
    per_frame: list[dict[str, float]]
    inference_seconds: float
    metrics: dict[str, Any]


@torch.no_grad()
def predict_heatmaps(
    model: SoundLocaliser, snippets: SpatialSnippets, rows: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, float]:
    """Heatmaps (M, height, width) of the snippets at ``rows`` and the seconds they took."""
    model.eval()
    width, height = snippets.frame_size
    heatmaps = np.zeros((len(rows), height, width), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        grid = torch.from_numpy(snippets.grids[batch])
        audio = torch.from_numpy(snippets.audio[batch])
        heatmaps[start : start + len(batch)] = model.heatmap(grid, audio, snippets.frame_size)
    return heatmaps, time.perf_counter() - started


def grid_oracle_heatmaps(masks: np.ndarray, grid_shape: tuple[int, int]) -> np.ndarray:
    """The best a grid-resolution heatmap can do: each cell scores the fraction of its pixels
    inside the ground truth, upsampled like a model's cell scores; (M, height, width)."""
    rows, cols = grid_shape
    coverage = block_mean(masks[..., None].astype(np.float32), rows, cols)[..., 0]  # (M, r, c)
    upsampled = F.interpolate(
        torch.from_numpy(coverage)[:, None],
        size=masks.shape[1:],
        mode="bilinear",
        align_corners=False,
    )
    return upsampled[:, 0].numpy()  # (M, height, width)


def score_heatmaps(
    heatmaps: np.ndarray,
    frames: EvaluationFrames,
    snippets: SpatialSnippets,
    boxes: dict[str, Any],
) -> list[dict[str, float]]:
    """Per-frame scores of heatmaps (M, height, width) of the evaluated frames."""
    return [
        frame_scores(heatmaps[i], frames.masks[i] > 0.5, sounding, silent)
        for i, (sounding, silent) in enumerate(
            zip(frames.sounding_boxes, frames.silent_boxes, strict=True)
        )
    ]


def evaluate_localiser(
    model: SoundLocaliser, snippets: SpatialSnippets, boxes: dict[str, Any], batch_size: int = 64
) -> SpatialEvaluation:
    """Score ``model`` on every snippet of ``snippets`` whose grid frame has a sounding object."""
    frames = evaluation_frames(snippets, boxes)
    if len(frames.rows) == 0:
        raise ValueError("no snippet of the split shows a sounding object on its grid frame")
    heatmaps, seconds = predict_heatmaps(model, snippets, frames.rows, batch_size)
    per_frame = score_heatmaps(heatmaps, frames, snippets, boxes)
    curves = [f_score_curve(h, m > 0.5) for h, m in zip(heatmaps, frames.masks, strict=True)]
    oracle = grid_oracle_heatmaps(frames.masks, model.grid_shape)
    oracle_curves = [f_score_curve(h, m > 0.5) for h, m in zip(oracle, frames.masks, strict=True)]
    has_silent = frames.has_silent
    metrics: dict[str, Any] = {
        "num_snippets": len(snippets),
        "num_frames": len(frames.rows),
        "num_frames_with_silent_distractor": int(has_silent.sum()),
        "overall": summarise(per_frame, curves),
        "with_silent_distractor": summarise(
            [f for f, s in zip(per_frame, has_silent, strict=True) if s],
            [c for c, s in zip(curves, has_silent, strict=True) if s],
        )
        if has_silent.any()
        else None,
        "grid_oracle": summarise(score_heatmaps(oracle, frames, snippets, boxes), oracle_curves),
        "num_parameters": count_parameters(model),
        "inference_seconds": round(seconds, 4),
        "throughput_frames_per_s": round(len(frames.rows) / max(seconds, 1e-9), 1),
        "torch_threads": torch.get_num_threads(),
        "protocol": PROTOCOL,
    }
    return SpatialEvaluation(frames, heatmaps, per_frame, seconds, metrics)


def plot_rows(frames: EvaluationFrames, video_ids: np.ndarray, count: int) -> list[int]:
    """Indices of up to ``count`` evaluated frames to plot: frames with a silent distractor
    first, at most one per video, in data order."""
    chosen: list[int] = []
    seen: set[str] = set()
    for want_silent in (True, False):
        for i, row in enumerate(frames.rows):
            vid = str(video_ids[row])
            if (
                len(chosen) < count
                and vid not in seen
                and bool(frames.silent_boxes[i]) == (want_silent)
            ):
                chosen.append(i)
                seen.add(vid)
    return chosen


def run_evaluation(
    *,
    model_path: str | Path,
    index_path: str | Path,
    boxes_path: str | Path,
    annotations_path: str | Path,
    split: str,
    out_path: str | Path,
    heatmaps_path: str | Path | None = None,
    num_plot_frames: int = 4,
    with_video_frames: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``split``; write the metrics JSON (and the heatmap figure)."""
    model, payload = load_localiser(model_path)
    boxes = load_boxes(boxes_path)
    snippets = load_split(index_path, annotations_path, split)
    evaluation = evaluate_localiser(model, snippets, boxes)
    method = payload["train_config"]["method"]
    result = {"method": method, "split": split, "model": str(model_path), **evaluation.metrics}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    if heatmaps_path is not None:
        chosen = plot_rows(evaluation.frames, snippets.video_ids, num_plot_frames)
        panels = []
        for i in chosen:
            row = evaluation.frames.rows[i]
            vid, frame = str(snippets.video_ids[row]), int(snippets.frame_index[row])
            sounding, silent = frame_objects(boxes["videos"][vid], frame, float(boxes["fps"]))
            panels.append(
                {
                    "title": f"{vid} frame {frame} cIoU {evaluation.per_frame[i]['ciou']:.2f}",
                    "heatmap": evaluation.heatmaps[i],
                    "sounding": sounding,
                    "silent": silent,
                    "video": snippets.sources[vid] if with_video_frames else None,
                    "frame": frame,
                }
            )
        if with_video_frames:
            images = read_video_frames(
                [(p["video"], p["frame"]) for p in panels], snippets.video_fps, snippets.frame_size
            )
            for panel, image in zip(panels, images, strict=True):
                panel["image"] = image
        plot_heatmaps(heatmaps_path, panels, title=f"{method} on {split}")
    return result


@user_errors(StoreError, DecodeError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model.pt of pipeline.spatial.train")
    parser.add_argument("--index", required=True, help="index.json of stores with visual_grid")
    parser.add_argument("--boxes", required=True, help="boxes.json of the data set")
    parser.add_argument("--annotations", required=True, help="UnAV-format annotations")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--heatmaps", help="PNG of a few frames' heatmaps with their boxes")
    parser.add_argument("--num-plot-frames", type=int, default=4)
    parser.add_argument(
        "--no-video-frames",
        action="store_true",
        help="draw heatmaps without decoding the video frames under them",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_evaluation(
        model_path=args.model,
        index_path=args.index,
        boxes_path=args.boxes,
        annotations_path=args.annotations,
        split=args.split,
        out_path=args.out,
        heatmaps_path=args.heatmaps,
        num_plot_frames=args.num_plot_frames,
        with_video_frames=not args.no_video_frames,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "protocol"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
