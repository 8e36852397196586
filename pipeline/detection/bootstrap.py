"""95 % intervals of detection mAP by a bootstrap over test videos, and paired differences.

Method: a bootstrap with the video as the unit, since a video's events are matched together: draw
the V test videos with replacement B times and recompute mAP at each tIoU threshold and their
mean on each resample. The point estimate stays the evaluator's
(:func:`pipeline.detection.metrics.evaluate_detection`) on the test set itself; the interval is
the standard (normal) interval with the bootstrap's standard error, point +- 1.96 x the standard
deviation of the resampled values (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993),
clipped to [0, 1]. Not the 2.5/97.5 percentiles: resampled mAP is biased upwards (a class with
events in one video, when drawn at all, has that video drawn 1.58 times on average, against once
for the false positives of the other videos; and the precision envelope is a maximum over noisier
points), by 2 to 5 standard deviations on synthetic problems of 50 to 1,000 videos, so the
percentile interval often misses the point estimate. The bootstrap's spread is right: on 30
synthetic test sets of 50 (200) videos the mean bootstrap standard deviation was 0.0226 (0.0110),
against 0.0249 (0.0124) between the sets.

Resamples: ``np.random.default_rng(seed).integers(0, V, size=(B, V))`` indexes the videos sorted
by id, so two runs evaluated on the same test videos with the same seed see the same resamples,
and the differences of their per-resample values give the standard deviation of the difference of
their point estimates, paired (:func:`paired_interval`), without re-reading any events.

Fast path: matching is per (class, video), so a video drawn m times brings m copies of its
predictions with the same true/false positive flags; a resample only re-weights videos. For a
class with predictions i in score order, video weights w (draw counts) and n = the weighted number
of its ground-truth events:

    tp(i) = sum of w over true positives j <= i,   cnt(i) = sum of w over all predictions j <= i,
    AP = sum over true positives i of  w(i) / n * max over true positives j >= i of tp(j) / cnt(j),

the all-point interpolated AP of :func:`~pipeline.detection.metrics.interpolated_average_precision`
(its precision envelope peaks at true positives, and a run of copies of one true positive adds
recall in one step at the run's end precision). mAP on a resample is the mean over the classes with
ground truth in it. This equals the evaluator on the explicitly resampled set, where the copies of
a prediction are adjacent in score order (always so unless two videos tie on a score exactly).
Only the union of true-positive positions needs ``cnt``: one sparse (positions x videos) product.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy import sparse

DEFAULT_RESAMPLES = 1000  # bootstrap resamples of the test videos
DEFAULT_SEED = 0  # seed of the resample indices
CONFIDENCE = 0.95  # two-sided interval
Z_SCORE = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.96
RESAMPLE_CHUNK = 64  # resamples computed together
STORED_DIGITS = 6  # per-resample values kept in metrics.json (fractions: 1e-4 points)


def videos_digest(video_ids: Iterable[str]) -> str:
    """A short hash of the sorted video ids: two runs are paired only when theirs match."""
    text = "\n".join(sorted(video_ids))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resample_counts(num_videos: int, resamples: int, seed: int) -> np.ndarray:
    """(B, V) times each video (sorted by id) is drawn in each resample: ``draws`` of
    ``np.random.default_rng(seed).integers(0, V, size=(B, V))`` counted per row."""
    draws = np.random.default_rng(seed).integers(0, num_videos, size=(resamples, num_videos))
    flat = (draws + num_videos * np.arange(resamples)[:, None]).ravel()  # (B * V,)
    counts = np.bincount(flat, minlength=resamples * num_videos)
    return counts.reshape(resamples, num_videos)  # (B, V)


def normal_interval(
    point: float | np.ndarray, resampled: np.ndarray, *, clip: bool = True
) -> np.ndarray:
    """(2, ...) ``point`` -+ :data:`Z_SCORE` x the standard deviation of ``resampled`` (B, ...)
    over its first axis, clipped to [0, 1] unless ``clip`` is False (differences). NaN resamples
    (no ground truth drawn at all) are left out."""
    spread = Z_SCORE * np.nanstd(np.asarray(resampled, float), axis=0, ddof=1)
    interval = np.stack([point - spread, point + spread])
    return interval.clip(0, 1) if clip else interval


def _grouped_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum over axis 0 restarting at each row in ``starts`` (the first is 0)."""
    total = np.cumsum(values, axis=0)
    before = np.vstack([np.zeros((1, *values.shape[1:])), total[starts[1:] - 1]])
    lengths = np.diff(np.append(starts, len(values)))
    return total - np.repeat(before, lengths, axis=0)


def bootstrap_map(
    tp: np.ndarray,
    pred_labels: np.ndarray,
    pred_videos: np.ndarray,
    gt_labels: np.ndarray,
    gt_videos: np.ndarray,
    num_videos: int,
    *,
    resamples: int,
    seed: int,
) -> np.ndarray:
    """mAP at each threshold on each resample of the videos (module docstring): (B, K).

    Args:
        tp: (K, N) true-positive flags of the predictions, sorted by class, then score
            descending (the evaluator's order).
        pred_labels: (N,) class of each prediction, in that order (ascending).
        pred_videos: (N,) video of each prediction as its rank among the sorted video ids; -1
            for a video outside the ground truth (its false positives count once in every
            resample, as they would if the resampled set were evaluated with them).
        gt_labels: (G,) class of each ground-truth event.
        gt_videos: (G,) video of each ground-truth event, as a rank among the sorted ids.
        num_videos: V, the evaluated videos (with or without events).
        resamples: B.
        seed: seed of :func:`resample_counts`.
    """
    if resamples < 1:
        raise ValueError(f"bootstrap resamples must be at least 1, got {resamples}")
    num_k = tp.shape[0]
    counts = resample_counts(num_videos, resamples, seed)  # (B, V)
    # (V + 1, B) weight of each video per resample; the last row: videos outside the ground truth
    weights = np.vstack([counts.T, np.ones((1, resamples))]).astype(float)
    videos = np.where(pred_videos < 0, num_videos, pred_videos)  # (N,)
    class_ids = np.unique(gt_labels)  # (C,)
    per_video = np.zeros((num_videos, len(class_ids)))  # (V, C) GT events per video and class
    np.add.at(per_video, (gt_videos, np.searchsorted(class_ids, gt_labels)), 1)
    num_gt = counts @ per_video  # (B, C)
    has_gt = num_gt > 0
    ap = np.zeros((num_k, resamples, len(class_ids)))  # (K, B, C)
    positions = np.flatnonzero(tp.any(axis=0))  # (M,) union of true positives, class-major
    if len(positions):
        # Cumulative weight of all predictions at each position: predictions are binned by the
        # first position at or after them in the same class (later ones never matter).
        bins = np.searchsorted(positions, np.arange(len(pred_labels)))  # (N,)
        inside = bins < len(positions)
        inside[inside] = pred_labels[positions[bins[inside]]] == pred_labels[inside]
        binned = sparse.csr_matrix(
            (np.ones(inside.sum()), (bins[inside], videos[inside])),
            shape=(len(positions), num_videos + 1),
        )
        position_labels = pred_labels[positions]  # (M,)
        starts = np.flatnonzero(np.r_[True, position_labels[1:] != position_labels[:-1]])
        matched = []  # per threshold: true-positive rows, class starts and columns
        for k in range(num_k):
            rows = np.flatnonzero(tp[k, positions])  # (T,) this threshold's true positives
            labels = position_labels[rows]
            group = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])  # class starts
            if len(rows):
                matched.append((k, rows, group, np.searchsorted(class_ids, labels[group])))
        for chunk in range(0, resamples, RESAMPLE_CHUNK):  # columns that stay in cache
            columns = slice(chunk, chunk + RESAMPLE_CHUNK)
            predicted = _grouped_cumsum(binned @ weights[:, columns], starts)  # (M, b)
            for k, rows, group, class_columns in matched:
                hit = weights[videos[positions[rows]], columns]  # (T, b)
                found = _grouped_cumsum(hit, group)  # (T, b)
                precision = np.divide(
                    found, predicted[rows], out=np.zeros_like(found), where=predicted[rows] > 0
                )
                envelope = np.empty_like(precision)
                for lo, hi in zip(group.tolist(), [*group[1:].tolist(), len(rows)], strict=True):
                    envelope[lo:hi] = np.maximum.accumulate(precision[lo:hi][::-1], axis=0)[::-1]
                area = np.add.reduceat(hit * envelope, group, axis=0)  # (classes hit, b)
                ap[k, columns][:, class_columns] = area.T
    ap = np.divide(ap, num_gt[None], out=np.zeros_like(ap), where=has_gt[None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ap.sum(axis=2) / has_gt.sum(axis=1)[None]).T  # (B, K), NaN without any GT


@dataclass(frozen=True)
class VideoBootstrap:
    """Per-resample mAP of one evaluation (:func:`bootstrap_map`) and its settings."""

    resamples: int  # B
    seed: int  # seed of the resample indices
    num_videos: int  # V, videos resampled
    videos_digest: str  # videos_digest of their ids
    map_per_tiou: np.ndarray  # (B, K) mAP at each threshold on each resample

    @property
    def average_map(self) -> np.ndarray:
        """(B,) mean over thresholds on each resample."""
        return self.map_per_tiou.mean(axis=1)

    def to_dict(
        self, keys: list[str], map_per_tiou: np.ndarray, average_map: float
    ) -> dict[str, Any]:
        """``mAP_ci95`` per threshold key and ``average_mAP_ci95`` around the point estimates
        ``map_per_tiou`` (K,) and ``average_map``, and the ``bootstrap`` record (its settings and
        the per-resample values, rounded to :data:`STORED_DIGITS`)."""
        per_tiou = normal_interval(map_per_tiou, self.map_per_tiou)  # (2, K)
        return {
            "mAP_ci95": dict(zip(keys, per_tiou.T.tolist(), strict=True)),
            "average_mAP_ci95": normal_interval(average_map, self.average_map).tolist(),
            "bootstrap": {
                "method": "video bootstrap, point +- 1.96 standard deviations",
                "confidence": CONFIDENCE,
                "resamples": self.resamples,
                "seed": self.seed,
                "num_videos": self.num_videos,
                "videos_digest": self.videos_digest,
                "average_mAP": np.round(self.average_map, STORED_DIGITS).tolist(),
                "mAP": {
                    key: np.round(column, STORED_DIGITS).tolist()
                    for key, column in zip(keys, self.map_per_tiou.T, strict=True)
                },
            },
        }


def resampled_values(metrics: Mapping[str, Any], key: str) -> np.ndarray | None:
    """Per-resample values of ``metrics.json``'s ``"average"`` or a threshold key ("0.5");
    None when the run has no bootstrap (or not at that threshold)."""
    record = metrics.get("bootstrap")
    if not record:
        return None
    values = record["average_mAP"] if key == "average" else record["mAP"].get(key)
    return None if values is None else np.asarray(values, float)


def unpaired_reason(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """Why two ``metrics.json`` cannot be compared by a paired bootstrap (None when they can)."""
    first, second = a.get("bootstrap"), b.get("bootstrap")
    if not first or not second:
        return "no bootstrap in metrics.json"
    for field in ("videos_digest", "seed", "resamples"):
        if first[field] != second[field]:
            return f"bootstrapped with different {field.replace('_', ' ')}"
    return None


def paired_interval(
    point_a: float, point_b: float, resampled_a: np.ndarray, resampled_b: np.ndarray
) -> tuple[float, float]:
    """95 % interval of ``point_a - point_b`` from the spread of the paired differences of
    their values on the same resamples (B,) each."""
    difference = np.asarray(resampled_a, float) - np.asarray(resampled_b, float)
    low, high = normal_interval(point_a - point_b, difference, clip=False)
    return float(low), float(high)


def interval_text(interval: Sequence[float] | None, scale: float = 100.0, digits: int = 1) -> str:
    """`` [38.1, 45.9]`` (in percent by default), or "" without an interval."""
    if interval is None:
        return ""
    low, high = (scale * bound for bound in interval)
    return f" [{low:.{digits}f}, {high:.{digits}f}]"
