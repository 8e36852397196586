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
    add_data_arguments,
    check_data_arguments,
    evaluation_frames,
    load_boxes,
    load_split,
)
from pipeline.spatial.metrics import avsbench_f_curve, frame_scores, negative_scores, summarise
from pipeline.spatial.plots import plot_heatmaps, read_images, read_video_frames
from pipeline.spatial.sets import load_set
from pipeline.store import StoreError

log = logging.getLogger(__name__)

PROTOCOL = {
    "frames": "positives: the frames of the split's snippets with a visible sounding source "
    "(ground truth: its mask); negatives: the others (no visible sounding source)",
    "resolution": "heatmaps and ground truth at the masks' size (the frame size); the field's "
    "evaluators use 224 x 224",
    "ezvsl": "EZ-VSL: min-max normalised heatmap >= its upper median sorted[int(H * W * 0.5)]; "
    "cIoU = sum(P * G) / (sum(G) + sum(P * (G == 0))); ciou: fraction of positives with "
    "cIoU >= 0.5; auc: trapezoid area under fraction(cIoU >= t), t = 0.05 i, i = 0..20",
    "slavc": "SLAVC, relative prediction (EZ-VSL's binary map): confidence = mean of the top "
    "quarter of (S - lo) / (hi - lo), cosines: lo = -1, hi = 1; ap (no recall-0 anchor) and "
    "max_f1 over positives and negatives: a confident negative is a FP, a confident positive a "
    "TP when cIoU >= 0.5 and a FP otherwise, an unconfident positive a FN; precision: fraction "
    "of positives with cIoU >= 0.5",
    "avsbench": "AVSBench: miou of sigmoid(S) > 0.5, i.e. cosine S > 0, over positives and "
    "negatives (empty ground truth: fraction of pixels predicted background); fscore: max over "
    "255 thresholds on sigmoid(S) of the F (beta^2 = 0.3) averaged over all positives at once",
    "ours": "ciou_gt_area: fraction of positives whose |GT| highest pixels have cIoU >= 0.5 "
    "(GT >= 0.5); pointing_accuracy: heatmap maximum on the ground truth; "
    "peak_on_silent_rate: on frames with a silent object, maximum on it and off the ground truth",
    "with_silent_distractor": "the positives with a silent object in view, no negatives",
    "grid_oracle": "each grid cell scores 2 * (its ground-truth coverage) - 1: the grid's ceiling",
}


@dataclass(frozen=True)
class SpatialEvaluation:
    """Heatmaps and per-frame scores of one localiser on one split.

    Attributes:
        frames: the evaluated frames (rows into the split's snippets, masks, boxes, negatives).
        heatmaps: (M, height, width) float32 heatmaps of the frames with a sounding source.
        negative_heatmaps: (K, height, width) float32 heatmaps of the negatives.
        per_frame: per frame with a sounding source, the scores of :func:`frame_scores`.
        inference_seconds: wall time of computing all heatmaps (model and upsampling).
        metrics: data-set metrics, counts and throughput (JSON-ready).
    """

    frames: EvaluationFrames
    heatmaps: np.ndarray
    negative_heatmaps: np.ndarray
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
    """The best a grid-resolution heatmap can do: each cell scores ``2 c - 1`` for the fraction
    c of its pixels inside the ground truth (a cosine-like score in [-1, 1]: positive on cells
    mostly inside), upsampled like a model's cell scores; (M, height, width)."""
    rows, cols = grid_shape
    coverage = block_mean(masks[..., None].astype(np.float32), rows, cols)[..., 0]  # (M, r, c)
    upsampled = F.interpolate(
        torch.from_numpy(2.0 * coverage - 1.0)[:, None],
        size=masks.shape[1:],
        mode="bilinear",
        align_corners=False,
    )
    return upsampled[:, 0].numpy()  # (M, height, width)


def score_heatmaps(heatmaps: np.ndarray, frames: EvaluationFrames) -> list[dict[str, float]]:
    """Per-frame scores (:func:`frame_scores`) of heatmaps (M, height, width) of the frames
    with a sounding source."""
    return [
        frame_scores(heatmap, mask, silent)
        for heatmap, mask, silent in zip(heatmaps, frames.masks, frames.silent_boxes, strict=True)
    ]


def _summary(
    per_frame: list[dict[str, float]],
    heatmaps: np.ndarray,
    frames: EvaluationFrames,
    negatives: list[dict[str, float]],
) -> dict[str, dict[str, Any]]:
    """``{"overall": ..., "with_silent_distractor": ...}``: :func:`summarise` of all frames, and
    of the frames with a silent distractor (no negatives; None when there is none)."""
    curves = [avsbench_f_curve(h, m) for h, m in zip(heatmaps, frames.masks, strict=True)]
    silent = frames.has_silent
    return {
        "overall": summarise(per_frame, curves, negatives),
        "with_silent_distractor": summarise(
            [f for f, s in zip(per_frame, silent, strict=True) if s],
            [c for c, s in zip(curves, silent, strict=True) if s],
        )
        if silent.any()
        else None,
    }


def evaluate_localiser(
    model: SoundLocaliser,
    snippets: SpatialSnippets,
    frames: EvaluationFrames,
    batch_size: int = 64,
) -> SpatialEvaluation:
    """Score ``model`` on the evaluated ``frames`` of ``snippets`` (rows with a visible sounding
    source, and the negatives), at the ground-truth masks' size.

    Raises:
        ValueError: no frame has a sounding source, or the masks are not frame-sized.
    """
    if len(frames.rows) == 0:
        raise ValueError("no snippet of the split shows a sounding object on its grid frame")
    width, height = snippets.frame_size
    if frames.masks.shape[1:] != (height, width):
        raise ValueError(
            f"the ground-truth masks are {frames.masks.shape[2]}x{frames.masks.shape[1]} but the "
            f"frames {width}x{height}; build the masks at the frame size"
        )
    num_positive = len(frames.rows)
    rows = np.concatenate([frames.rows, frames.negative_rows])
    all_heatmaps, seconds = predict_heatmaps(model, snippets, rows, batch_size)
    heatmaps, negative_heatmaps = all_heatmaps[:num_positive], all_heatmaps[num_positive:]
    per_frame = score_heatmaps(heatmaps, frames)
    summary = _summary(per_frame, heatmaps, frames, [negative_scores(h) for h in negative_heatmaps])
    oracle = grid_oracle_heatmaps(frames.masks, model.cell_shape)
    empty_oracle = negative_scores(np.full((height, width), -1.0))  # coverage 0 everywhere
    oracle_summary = _summary(
        score_heatmaps(oracle, frames), oracle, frames, [empty_oracle] * len(frames.negative_rows)
    )
    metrics: dict[str, Any] = {
        "num_snippets": len(snippets),
        "num_frames": num_positive,
        "num_negatives": len(frames.negative_rows),
        "num_frames_with_silent_distractor": int(frames.has_silent.sum()),
        **summary,
        "grid_oracle": oracle_summary["overall"],
        "num_parameters": count_parameters(model),
        "inference_seconds": round(seconds, 4),
        "throughput_frames_per_s": round(len(rows) / max(seconds, 1e-9), 1),
        "torch_threads": torch.get_num_threads(),
        "protocol": PROTOCOL,
    }
    return SpatialEvaluation(frames, heatmaps, negative_heatmaps, per_frame, seconds, metrics)


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
    split: str,
    out_path: str | Path,
    index_path: str | Path | None = None,
    boxes_path: str | Path | None = None,
    annotations_path: str | Path | None = None,
    set_dir: str | Path | None = None,
    heatmaps_path: str | Path | None = None,
    num_plot_frames: int = 4,
    with_video_frames: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``split``; write the metrics JSON (and the heatmap figure).

    The data: the feature stores (``index_path``, ``boxes_path``, ``annotations_path``) or a
    benchmark's spatial set (``set_dir``: its ``{split}.npz``, every sample evaluated against
    the release's map; the figure draws the images themselves)."""
    model, payload = load_localiser(model_path)
    if set_dir is not None:
        snippets, frames = load_set(Path(set_dir) / f"{split}.npz")
        if frames is None:
            raise ValueError(f"split {split} of the spatial set {set_dir} has no ground truth")
    else:
        boxes = load_boxes(boxes_path)
        snippets = load_split(index_path, annotations_path, split)
        frames = evaluation_frames(snippets, boxes)
    evaluation = evaluate_localiser(model, snippets, frames)
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
            sounding, silent = frames.sounding_boxes[i], frames.silent_boxes[i]
            panels.append(
                {
                    "title": f"{vid} frame {frame} cIoU (EZ-VSL) "
                    f"{evaluation.per_frame[i]['ezvsl_ciou']:.2f}",
                    "heatmap": evaluation.heatmaps[i],
                    "sounding": sounding,
                    "silent": silent,
                    "video": snippets.sources[vid] if with_video_frames else None,
                    "frame": frame,
                }
            )
        if with_video_frames and set_dir is not None:  # stills: the sources are the images
            images = read_images([p["video"] for p in panels], snippets.frame_size)
        elif with_video_frames:
            images = read_video_frames(
                [(p["video"], p["frame"]) for p in panels], snippets.video_fps, snippets.frame_size
            )
        if with_video_frames:
            for panel, image in zip(panels, images, strict=True):
                panel["image"] = image
        plot_heatmaps(heatmaps_path, panels, title=f"{method} on {split}")
    return result


@user_errors(StoreError, DecodeError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model.pt of pipeline.spatial.train")
    add_data_arguments(parser, boxes_help="boxes.json of the data set")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--heatmaps", help="PNG of a few frames' heatmaps with their boxes")
    parser.add_argument("--num-plot-frames", type=int, default=4)
    parser.add_argument(
        "--no-video-frames",
        action="store_true",
        help="draw heatmaps without decoding the video frames (or reading the images) under them",
    )
    args = parser.parse_args(argv)
    check_data_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_evaluation(
        model_path=args.model,
        index_path=args.index,
        boxes_path=args.boxes,
        annotations_path=args.annotations,
        set_dir=args.set_dir,
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
