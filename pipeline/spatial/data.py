"""Snippets for sound-source localisation: visual grids, audio, and the frame each grid shows.

A grid row of a feature store is computed from one frame of the snippet: the middle one of the
``frames_per_snippet`` frames that the visual encoder samples (``encode_grid`` uses frame
``F // 2``; :func:`pipeline.decode.frame_indices` says which resampled frame that is). That
resampled frame, at time ``m / fps``, shows the latest source frame at or before it
(:func:`pipeline.decode.iter_frames`), so the grid of snippet k shows source frame
``floor(m_k / fps * video_fps)``. Ground truth is read for exactly that frame from ``boxes.json``
(``{"fps", "width", "height", "videos": {id: [{"label", "label_id", "sounding",
"sounding_intervals": [[s, e], ...], "boxes": [[frame, x0, y0, x1, y1], ...]}]}}``, x1 and y1
exclusive): the mask is the union of the boxes of the objects that sound at the frame's time.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.annotations import parse_annotations
from pipeline.decode import frame_indices
from pipeline.io import read_json
from pipeline.store import StoreError, StoreInfo, read_store

SPLITS = ("train", "validation", "test")
FRAME_EPS = 1e-6  # float slack when mapping times to frame indices


@dataclass(frozen=True)
class SpatialSnippets:
    """The snippets of one split, in (video, snippet) order.

    Attributes:
        grids: (N, H', W', Dg) visual patch grids.
        audio: (N, Da) audio embeddings.
        video_ids: (N,) video id of each snippet.
        snippet_index: (N,) row of the snippet in its store.
        frame_index: (N,) source-video frame the grid shows.
        frame_time_s: (N,) time of that frame, ``frame_index / video_fps``.
        video_fps: frame rate of the videos (the same for all).
        frame_size: ``(width, height)`` of the video frames.
        sources: video id -> the video file the store was extracted from.
        labels: (N, C) float32 multi-hot: the event categories sounding at each grid frame's
            time (the weak, video-level labels; no box).
        classes: the C category names, ``classes[c]`` for column c of ``labels``.
        grid_levels: the backbone levels packed in each grid row, ``(channels, factor)``
            finest first (:func:`models.m2vsl_parts.check_grid_levels`); ``None``: a plain
            one-level grid.
    """

    grids: np.ndarray
    audio: np.ndarray
    video_ids: np.ndarray
    snippet_index: np.ndarray
    frame_index: np.ndarray
    frame_time_s: np.ndarray
    video_fps: float
    frame_size: tuple[int, int]
    sources: dict[str, str]
    labels: np.ndarray
    classes: tuple[str, ...]
    grid_levels: tuple[tuple[int, int], ...] | None = None

    def __len__(self) -> int:
        return int(self.grids.shape[0])

    def subset(self, rows: np.ndarray) -> SpatialSnippets:
        """The snippets at ``rows`` (indices or a boolean mask)."""
        return SpatialSnippets(
            grids=self.grids[rows],
            audio=self.audio[rows],
            video_ids=self.video_ids[rows],
            snippet_index=self.snippet_index[rows],
            frame_index=self.frame_index[rows],
            frame_time_s=self.frame_time_s[rows],
            video_fps=self.video_fps,
            frame_size=self.frame_size,
            sources=self.sources,
            labels=self.labels[rows],
            classes=self.classes,
            grid_levels=self.grid_levels,
        )


def encoder_grid_levels(visual_encoder: Mapping[str, Any]) -> tuple[tuple[int, int], ...] | None:
    """The ``grid_levels`` a visual encoder's recorded config declares (the ``resnet``
    encoder's packed pyramid), or ``None`` for a plain grid."""
    levels = visual_encoder.get("grid_levels")
    return None if levels is None else tuple((int(c), int(f)) for c, f in levels)


def split_video_ids(annotations: dict[str, Any], split: str, source: str) -> list[str]:
    """Sorted ids of the videos of ``split`` in UnAV-100-format annotations."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    database = annotations.get("database")
    if not isinstance(database, dict):
        raise ValueError(f"{source} has no 'database' mapping; is it an annotations file?")
    return sorted(vid for vid, entry in database.items() if entry.get("subset") == split)


def grid_frames(info: StoreInfo, timestamps: np.ndarray) -> np.ndarray:
    """(T,) index of the source-video frame that each grid row of a store was computed from.

    Args:
        info: the store's attributes; its extraction ``fps``, source ``video_fps`` and visual
            encoder's ``frames_per_snippet`` (1 when unrecorded) are used.
        timestamps: (T, 2) ``[start_s, end_s]`` of each snippet.
    """
    fps, video_fps = info.require("fps"), info.require("video_fps")
    frames_per_snippet = int(info.encoders.get("visual", {}).get("frames_per_snippet", 1))
    resampled = frame_indices(timestamps, frames_per_snippet, fps)  # (T, F)
    middle = resampled[:, frames_per_snippet // 2]  # (T,) the frame encode_grid reads
    return np.floor(middle / fps * video_fps + FRAME_EPS).astype(np.int64)


def load_split(index_path: str | Path, annotations_path: str | Path, split: str) -> SpatialSnippets:
    """Load the grids, audio and grid frames of every extracted video of ``split``.

    Raises:
        StoreError: a store lacks ``visual_grid`` (extract with ``visual_grid: true``), or the
            videos differ in grid shape, frame size or frame rate.
        ValueError: no extracted video belongs to the split.
    """
    index_path = Path(index_path)
    index = read_json(index_path, "feature index")
    annotations = read_json(annotations_path, "annotations file")
    wanted = [
        vid
        for vid in split_video_ids(annotations, split, str(annotations_path))
        if vid in index["videos"]
    ]
    if not wanted:
        raise ValueError(
            f"no video of split {split!r} in {annotations_path} was extracted into {index_path}"
        )
    columns: dict[str, list[np.ndarray]] = {name: [] for name in ("grid", "audio", "frame")}
    ids, rows, sources = [], [], {}
    first = None  # frame rate, frame size, grid shape and grid levels of the first video
    for vid in wanted:
        store_path = index_path.parent / index["videos"][vid]["store"]
        features = read_store(store_path, with_grid=True)
        this = (
            features.info.require("video_fps"),
            features.info.require("frame_size"),
            features.visual_grid.shape[1:],
            encoder_grid_levels(features.info.encoders.get("visual", {})),
        )
        first = first or this
        if this != first:
            raise StoreError(
                f"{store_path}: frame rate {this[0]}, frame size {this[1]}, grid {this[2]} or "
                f"grid levels {this[3]} differ from the split's first video {first}; extract "
                "all videos alike"
            )
        columns["grid"].append(features.visual_grid)
        columns["audio"].append(features.audio)
        columns["frame"].append(grid_frames(features.info, features.timestamps))
        ids.extend([vid] * features.num_snippets)
        rows.append(np.arange(features.num_snippets))
        sources[vid] = features.info.video_path or ""
    frame_index = np.concatenate(columns["frame"])
    video_ids = np.asarray(ids)
    video_fps, frame_size, _, grid_levels = first
    frame_time_s = frame_index / video_fps
    classes = parse_annotations(annotations, source=str(annotations_path)).labels
    return SpatialSnippets(
        grids=np.concatenate(columns["grid"]).astype(np.float32),
        audio=np.concatenate(columns["audio"]).astype(np.float32),
        video_ids=video_ids,
        snippet_index=np.concatenate(rows),
        frame_index=frame_index,
        frame_time_s=frame_time_s,
        video_fps=float(video_fps),
        frame_size=frame_size,
        sources=sources,
        labels=frame_labels(video_ids, frame_time_s, annotations, len(classes)),
        classes=classes,
        grid_levels=grid_levels,
    )


def frame_labels(
    video_ids: np.ndarray, times_s: np.ndarray, annotations: dict[str, Any], num_classes: int
) -> np.ndarray:
    """(N, C) float32 multi-hot: the categories of the labelled events of each row's video that
    contain its time (segments half-open). Temporal labels only; no box is read."""
    database = annotations["database"]
    labels = np.zeros((len(video_ids), num_classes), dtype=np.float32)
    for row, (vid, time_s) in enumerate(zip(video_ids, times_s, strict=True)):
        for event in database[vid]["annotations"]:
            start, end = event["segment"]
            if start <= time_s < end:
                labels[row, int(event["label_id"])] = 1.0
    return labels


def event_snippets(snippets: SpatialSnippets) -> np.ndarray:
    """(N,) bool: the grid frame's time lies in a labelled audio-visual event of its video
    (the weak supervision of the UnAV-style annotations)."""
    return snippets.labels.any(axis=1)


def load_boxes(path: str | Path) -> dict[str, Any]:
    """Read ``boxes.json`` and check its top-level keys."""
    boxes = read_json(path, "boxes file")
    missing = [key for key in ("fps", "width", "height", "videos") if key not in boxes]
    if missing:
        raise ValueError(f"{path} lacks keys {missing}; is it a synthetic data set's boxes.json?")
    return boxes


def sounding_at(obj: dict[str, Any], time_s: float) -> bool:
    """Whether an object of ``boxes.json`` sounds at ``time_s`` (intervals half-open)."""
    return any(start <= time_s < end for start, end in obj["sounding_intervals"])


def box_at(obj: dict[str, Any], frame: int) -> list[int] | None:
    """The object's ``[x0, y0, x1, y1]`` on ``frame``, or None where it is not visible."""
    for box_frame, x0, y0, x1, y1 in obj["boxes"]:
        if box_frame == frame:
            return [x0, y0, x1, y1]
    return None


def frame_objects(
    objects: list[dict[str, Any]], frame: int, fps: float
) -> tuple[list[list[int]], list[list[int]]]:
    """Boxes of the sounding and of the silent objects visible on ``frame``."""
    sounding, silent = [], []
    for obj in objects:
        box = box_at(obj, frame)
        if box is not None:
            (sounding if sounding_at(obj, frame / fps) else silent).append(box)
    return sounding, silent


def boxes_mask(boxes: list[list[int]], width: int, height: int) -> np.ndarray:
    """(height, width) bool union of pixel boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive)."""
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask


@dataclass(frozen=True)
class EvaluationFrames:
    """The evaluated frames of a split: the ground truth every metric reads.

    Synthetic data sets build it from ``boxes.json`` (:func:`evaluation_frames`); the importers
    of the field's benchmarks build it from their releases' boxes or masks.

    Attributes:
        rows: (M,) rows into the split's snippets whose frame shows a sounding source.
        masks: (M, height, width) float32 ground truth in [0, 1] at the frame size: 1 on the
            sounding source (the union of the sounding objects' boxes, or a release's mask);
            fractional values where a release gives a soft map (Flickr-SoundNet's annotator
            agreement: 0.5 where one of two annotators marked the pixel).
        sounding_boxes: per evaluated frame, the sounding sources' pixel boxes
            ``[x0, y0, x1, y1]`` (x1, y1 exclusive); empty where the release gives masks only.
        silent_boxes: per evaluated frame, the boxes of visible objects that do not sound.
        negative_rows: (K,) rows of frames whose sound has no visible source (silent or
            off-screen): the negatives of SLAVC's AP and max-F1.
    """

    rows: np.ndarray
    masks: np.ndarray
    sounding_boxes: list[list[list[int]]]
    silent_boxes: list[list[list[int]]]
    negative_rows: np.ndarray

    @property
    def has_silent(self) -> np.ndarray:
        """(M,) bool: a silent distractor object is visible on the frame."""
        return np.array([bool(b) for b in self.silent_boxes], dtype=bool)


def evaluation_frames(snippets: SpatialSnippets, boxes: dict[str, Any]) -> EvaluationFrames:
    """The ground truth of a synthetic split: frames whose grid frame shows a sounding object
    are evaluated (GT: the union of the sounding objects' boxes); the others (nothing sounds,
    or what sounds is out of view) are the negatives.

    Raises:
        ValueError: a video is missing from ``boxes.json`` or the geometry disagrees.
    """
    width, height, fps = int(boxes["width"]), int(boxes["height"]), float(boxes["fps"])
    if (width, height) != snippets.frame_size or abs(fps - snippets.video_fps) > 1e-6:
        raise ValueError(
            f"boxes.json describes {width}x{height} frames at {fps} fps but the stores hold "
            f"{snippets.frame_size[0]}x{snippets.frame_size[1]} at {snippets.video_fps} fps; "
            "pass the boxes of the data set that was extracted"
        )
    rows, masks, sounding_boxes, silent_boxes, negatives = [], [], [], [], []
    for row, (vid, frame) in enumerate(zip(snippets.video_ids, snippets.frame_index, strict=True)):
        if vid not in boxes["videos"]:
            raise ValueError(f"video {vid} has no entry in boxes.json; use the matching boxes")
        sounding, silent = frame_objects(boxes["videos"][vid], int(frame), fps)
        if sounding:
            rows.append(row)
            masks.append(boxes_mask(sounding, width, height).astype(np.float32))
            sounding_boxes.append(sounding)
            silent_boxes.append(silent)
        else:
            negatives.append(row)
    empty = np.zeros((0, height, width), dtype=np.float32)
    return EvaluationFrames(
        rows=np.asarray(rows, dtype=np.int64),
        masks=np.stack(masks) if masks else empty,
        sounding_boxes=sounding_boxes,
        silent_boxes=silent_boxes,
        negative_rows=np.asarray(negatives, dtype=np.int64),
    )


def add_data_arguments(parser: argparse.ArgumentParser, boxes_help: str) -> None:
    """The spatial stages' data flags: the feature stores with a synthetic data set's boxes and
    annotations, or a benchmark's spatial set (:mod:`pipeline.spatial.sets`)."""
    parser.add_argument("--index", help="index.json of stores with visual_grid")
    parser.add_argument("--boxes", help=boxes_help)
    parser.add_argument("--annotations", help="UnAV-format annotations")
    parser.add_argument(
        "--set",
        dest="set_dir",
        help="instead of --index/--boxes/--annotations: a benchmark's spatial set folder "
        "(pipeline.spatial.sets)",
    )


def check_data_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a command line that gives both data sources, or neither, or part of one."""
    stores = (args.index, args.boxes, args.annotations)
    if (args.set_dir is None) != all(stores) or (args.set_dir and any(stores)):
        parser.error("give either --set or all of --index, --boxes and --annotations")
