"""Temporal detection evaluation: mAP at tIoU thresholds and top-kx recall.

Semantics follow the ActivityNet detection evaluation (``eval_detection.py`` of the
ActivityNet challenge, used unchanged in spirit by ActionFormer, arXiv 2202.07925, and
UnAV-100, arXiv 2303.12930):

- per class, the predictions of that class over all videos are sorted by score, descending;
  the sort is stable, so predictions with equal scores keep their input order (ActivityNet's
  ``argsort()[::-1]`` leaves tie order to NumPy's unstable quicksort);
- each prediction, in that order, is matched to the not-yet-matched ground-truth event of the
  same video and class with the highest tIoU, if that tIoU >= the threshold: a true positive;
  otherwise it is a false positive (so duplicates of a matched prediction are false positives).
  GT events with equal tIoU are tried in annotation order (ActivityNet's reversed argsort
  tries the later one first; only exact ties differ). Matching is independent per threshold;
- precision and recall are cumulative over the sorted predictions; AP is the all-point
  interpolated area (VOC 2011 ``interpolated_prec_rec``: the precision envelope is made
  monotonically decreasing and summed over the recall steps);
- mAP at a threshold is the mean AP over the classes that have ground truth in the evaluated
  set (a class with ground truth but no prediction scores 0; predictions of a class without
  ground truth are ignored); the average mAP is the mean over thresholds.

Top-kx recall (Ego4D moment queries, arXiv 2110.07058, as OpenTAD computes it): for class c
and video v with n ground-truth events of c, keep the k*n highest-scoring predictions of class
c in v (stable order on ties); a GT event counts as recalled at threshold t if any kept
prediction has tIoU >= t with it (no one-to-one matching). Recall of a class = recalled GT
events / GT events of the class; the reported recall is the mean over the classes with ground
truth, per threshold, for k = 1 and k = 5.

Matching is grouped by (class, video): ground truth of one group can only be matched by
predictions of the same group, and the score order within a group is the class order
restricted to it, so each group is matched once for all thresholds with a (K, G) matched mask.

With ``bootstrap_resamples`` > 0, the mAP of each threshold and their mean also get a 95 %
interval from a bootstrap over the evaluated videos (:mod:`pipeline.detection.bootstrap`); the
point estimates do not change.
"""

# Over 400 lines on purpose: the metric (matching, AP, recall) and the results-file reader and
# writer it is checked against stay together, as ActivityNet's own evaluation keeps them.

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.annotations import AnnotationSet
from pipeline.detection.bootstrap import DEFAULT_SEED, VideoBootstrap, bootstrap_map, videos_digest
from pipeline.io import write_json_atomic


def _preset(start: float, stop: float, step: float) -> np.ndarray:
    return np.round(np.arange(start, stop + step / 2, step), 2)


TIOU_PRESETS: dict[str, np.ndarray] = {
    "unav100": _preset(0.1, 0.9, 0.1),
    "thumos14": _preset(0.3, 0.7, 0.1),
    "activitynet": _preset(0.5, 0.95, 0.05),
    "epic_kitchens": _preset(0.1, 0.5, 0.1),
    "perception_test": _preset(0.1, 0.5, 0.1),
}
RECALL_TOP_K = (1, 5)  # top-kx recall multipliers


@dataclass(frozen=True)
class Prediction:
    """One detected event."""

    video_id: str  # video the event was detected in
    start_s: float  # start in seconds
    end_s: float  # end in seconds, >= start_s
    label_id: int  # class index into AnnotationSet.labels
    score: float  # confidence; higher ranks first


@dataclass(frozen=True, eq=False)
class Predictions:
    """Detections as columns (fast to evaluate); row i is one detected event.

    Args:
        video_ids: (N,) video id of each detection.
        segments: (N, 2) start and end in seconds.
        label_ids: (N,) class indices.
        scores: (N,) confidences.
    """

    video_ids: np.ndarray
    segments: np.ndarray
    label_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.video_ids)
        object.__setattr__(self, "video_ids", np.asarray(self.video_ids, dtype=object))
        object.__setattr__(self, "segments", np.asarray(self.segments, float).reshape(n, 2))
        object.__setattr__(self, "label_ids", np.asarray(self.label_ids, np.int64).reshape(n))
        object.__setattr__(self, "scores", np.asarray(self.scores, float).reshape(n))

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def from_records(cls, records: Sequence[Prediction]) -> Predictions:
        """Columns from a list of :class:`Prediction`, order kept."""
        return cls(
            video_ids=[r.video_id for r in records],
            segments=[(r.start_s, r.end_s) for r in records],
            label_ids=[r.label_id for r in records],
            scores=[r.score for r in records],
        )

    def by_video(self) -> dict[str, list[dict[str, Any]]]:
        """``{video_id: [{"segment", "label_id", "score"}]}`` in row order, for write_results."""
        out: dict[str, list[dict[str, Any]]] = {}
        for vid, (start, end), label_id, score in zip(
            self.video_ids,
            self.segments.tolist(),
            self.label_ids.tolist(),
            self.scores.tolist(),
            strict=True,
        ):
            out.setdefault(vid, []).append(
                {"segment": [start, end], "label_id": label_id, "score": score}
            )
        return out


@dataclass
class DetectionMetrics:
    """Result of :func:`evaluate_detection`; arrays are indexed by threshold (K) and class (C)."""

    tiou_thresholds: np.ndarray  # (K,)
    map_per_tiou: np.ndarray  # (K,) mAP at each threshold
    average_map: float  # mean of map_per_tiou
    class_names: tuple[str, ...]  # (C,) classes with ground truth, in label_id order
    ap_per_class: np.ndarray  # (C, K)
    recall_1x: np.ndarray  # (K,) top-1x recall
    recall_5x: np.ndarray  # (K,) top-5x recall
    num_ground_truth: int  # GT events evaluated
    num_predictions: int  # predictions evaluated
    bootstrap: VideoBootstrap | None = None  # per-resample mAP over the videos, when asked for

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view, thresholds as ``"0.5"`` keys; with a bootstrap, also ``mAP_ci95``,
        ``average_mAP_ci95`` and ``bootstrap`` (:meth:`VideoBootstrap.to_dict`)."""
        keys = [f"{t:g}" for t in self.tiou_thresholds]
        intervals = {}
        if self.bootstrap is not None:
            intervals = self.bootstrap.to_dict(keys, self.map_per_tiou, self.average_map)
        return {
            "tiou_thresholds": self.tiou_thresholds.tolist(),
            "mAP": dict(zip(keys, self.map_per_tiou.tolist(), strict=True)),
            "average_mAP": self.average_map,
            "ap_per_class": {
                name: dict(zip(keys, row, strict=True))
                for name, row in zip(self.class_names, self.ap_per_class.tolist(), strict=True)
            },
            "recall_1x": dict(zip(keys, self.recall_1x.tolist(), strict=True)),
            "recall_5x": dict(zip(keys, self.recall_5x.tolist(), strict=True)),
            "average_recall_1x": float(self.recall_1x.mean()),
            "average_recall_5x": float(self.recall_5x.mean()),
            "num_ground_truth": self.num_ground_truth,
            "num_predictions": self.num_predictions,
            **intervals,
        }


def tiou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Temporal IoU of every segment of ``a`` (N, 2) with every segment of ``b`` (M, 2): (N, M).

    Same arithmetic as ActivityNet's ``segment_iou`` (union clipped at 1e-8).
    """
    a = np.asarray(a, float).reshape(-1, 2)
    b = np.asarray(b, float).reshape(-1, 2)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter = inter.clip(0)  # (N, M)
    union = (b[None, :, 1] - b[None, :, 0]) + (a[:, None, 1] - a[:, None, 0]) - inter
    return inter / union.clip(1e-8)


def segment_tiou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Temporal IoU of one segment ``target`` (2,) with ``candidates`` (N, 2): (N,)."""
    return tiou_matrix(np.asarray(target, float).reshape(1, 2), candidates)[0]


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """All-point interpolated AP of cumulative curves (K, N) -> (K,) (VOC 2011)."""
    precision = np.atleast_2d(precision)
    recall = np.atleast_2d(recall)
    k = precision.shape[0]
    mprec = np.hstack([np.zeros((k, 1)), precision, np.zeros((k, 1))])  # (K, N + 2)
    mrec = np.hstack([np.zeros((k, 1)), recall, np.ones((k, 1))])  # (K, N + 2)
    envelope = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    # Steps where recall does not change contribute 0, as in the "recall changes" sum.
    return (np.diff(mrec, axis=1) * envelope[:, 1:]).sum(axis=1)


def _match_groups(
    gt_keys: np.ndarray,
    gt_segments: np.ndarray,
    pred_keys: np.ndarray,
    pred_segments: np.ndarray,
    thresholds: np.ndarray,
    top_k: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching per (class, video) group.

    Predictions must be sorted by key, then by score descending. Returns ``tp`` (K, N) bool in
    that order and ``recalled`` (len(top_k), K, G_total) bool in GT input order.
    """
    num_k = len(thresholds)
    tp = np.zeros((num_k, len(pred_keys)), bool)
    recalled = np.zeros((len(top_k), num_k, len(gt_keys)), bool)
    gt_order = np.argsort(gt_keys, kind="stable")
    keys, gt_starts, gt_counts = np.unique(gt_keys[gt_order], return_index=True, return_counts=True)
    pred_lo = np.searchsorted(pred_keys, keys, "left")
    pred_hi = np.searchsorted(pred_keys, keys, "right")
    lowest = thresholds.min()
    col = thresholds[:, None]  # (K, 1)
    for g0, g_count, p_lo, p_hi in zip(
        gt_starts.tolist(), gt_counts.tolist(), pred_lo.tolist(), pred_hi.tolist(), strict=True
    ):
        if p_hi == p_lo:
            continue
        gt_index = gt_order[g0 : g0 + g_count]
        tiou = tiou_matrix(pred_segments[p_lo:p_hi], gt_segments[gt_index])  # (P, G)
        for slot, k in enumerate(top_k):
            best = tiou[: k * g_count].max(axis=0)  # (G,)
            recalled[slot][:, gt_index] = best[None, :] >= col
        candidates = tiou >= lowest  # (P, G)
        if candidates.sum(axis=1).max() <= 1:
            # No prediction can choose between two GT events: each GT event goes to the first
            # prediction reaching the threshold, independently of the others.
            reach = tiou[:, None, :] >= col[None]  # (P, K, G)
            first = reach.argmax(axis=0)  # (K, G)
            k_idx, g_idx = np.nonzero(reach.any(axis=0))
            tp[k_idx, p_lo + first[k_idx, g_idx]] = True
            continue
        rank = np.argsort(-tiou, axis=1, kind="stable")  # (P, G) GT by tIoU, descending
        ranked = np.take_along_axis(tiou, rank, axis=1) >= col[:, :, None]  # (K, P, G)
        matched = np.zeros((num_k, g_count), bool)
        for p in np.flatnonzero(candidates.any(axis=1)).tolist():
            free = ranked[:, p, :] & ~matched[:, rank[p]]  # (K, G)
            hit = np.flatnonzero(free.any(axis=1))
            matched[hit, rank[p, free[hit].argmax(axis=1)]] = True
            tp[hit, p_lo + p] = True
            if matched.all():
                break
    return tp, recalled


def _check_thresholds(tiou_thresholds: Sequence[float]) -> np.ndarray:
    thresholds = np.asarray(tiou_thresholds, float).reshape(-1)  # (K,)
    if len(thresholds) == 0 or not ((thresholds > 0) & (thresholds <= 1)).all():
        raise ValueError(f"tiou_thresholds must be a non-empty list in (0, 1], got {thresholds}")
    return thresholds


def _check_predictions(predictions: Predictions) -> None:
    finite = np.isfinite(predictions.segments).all(axis=1) & np.isfinite(predictions.scores)
    if not finite.all():
        bad = np.flatnonzero(~finite)[0]
        raise ValueError(
            f"prediction {bad} of video {predictions.video_ids[bad]!r} has a NaN or infinite "
            "segment or score; fix the detector's output"
        )
    backwards = predictions.segments[:, 1] < predictions.segments[:, 0]
    if backwards.any():
        bad = np.flatnonzero(backwards)[0]
        raise ValueError(
            f"prediction {bad} of video {predictions.video_ids[bad]!r} ends before it starts "
            f"({predictions.segments[bad].tolist()})"
        )


def average_precision(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Predictions,
    tiou_thresholds: Sequence[float],
) -> np.ndarray:
    """AP of one class: ``ground_truth`` maps video id -> (G, 2) segments; the predictions'
    label ids are ignored (all are taken as this class). Returns (K,).
    """
    _check_predictions(predictions)
    thresholds = _check_thresholds(tiou_thresholds)
    video_index = {vid: i for i, vid in enumerate(ground_truth)}
    per_video = [np.asarray(seg, float).reshape(-1, 2) for seg in ground_truth.values()]
    gt_segments = np.concatenate([*per_video, np.zeros((0, 2))])  # (G, 2)
    gt_keys = np.repeat(np.arange(len(per_video)), [len(seg) for seg in per_video])  # (G,)
    if len(gt_keys) == 0:
        raise ValueError("no ground-truth segments: AP is undefined")
    keys = np.array([video_index.get(v, -1) for v in predictions.video_ids], np.int64)
    order = np.argsort(-predictions.scores, kind="stable")
    grouped = order[np.argsort(keys[order], kind="stable")]
    tp_grouped, _ = _match_groups(
        gt_keys, gt_segments, keys[grouped], predictions.segments[grouped], thresholds, RECALL_TOP_K
    )
    tp = np.zeros_like(tp_grouped)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    tp[:, position[grouped]] = tp_grouped
    return _ap_from_tp(tp, len(gt_keys))


def _ap_from_tp(tp: np.ndarray, num_positives: int) -> np.ndarray:
    """AP (K,) from true-positive flags (K, N) in score order."""
    if tp.shape[1] == 0:
        return np.zeros(tp.shape[0])
    tp_cum = np.cumsum(tp, axis=1, dtype=float)
    fp_cum = np.cumsum(~tp, axis=1, dtype=float)
    return interpolated_average_precision(tp_cum / (tp_cum + fp_cum), tp_cum / num_positives)


def evaluate_detection(
    ground_truth: AnnotationSet,
    predictions: Predictions | Sequence[Prediction],
    tiou_thresholds: Sequence[float] = TIOU_PRESETS["unav100"],
    *,
    allow_unknown_videos: bool = False,
    bootstrap_resamples: int = 0,
    bootstrap_seed: int = DEFAULT_SEED,
) -> DetectionMetrics:
    """mAP at each tIoU threshold, average mAP and top-1x/5x recall (module docstring).

    Every video of ``ground_truth`` is evaluated (pass ``annotations.subset("test")``).
    Predictions on videos absent from it raise ValueError, unless ``allow_unknown_videos``,
    which counts them as false positives as ActivityNet does. ``bootstrap_resamples`` > 0
    resamples the videos that many times with ``bootstrap_seed`` (:func:`bootstrap_map`).
    """
    if not isinstance(predictions, Predictions):
        predictions = Predictions.from_records(list(predictions))
    _check_predictions(predictions)
    thresholds = _check_thresholds(tiou_thresholds)
    if bootstrap_resamples < 0:
        raise ValueError(f"bootstrap_resamples must be >= 0 (0: none), got {bootstrap_resamples}")
    num_labels = len(ground_truth.labels)
    bad_label = (predictions.label_ids < 0) | (predictions.label_ids >= num_labels)
    if bad_label.any():
        i = np.flatnonzero(bad_label)[0]
        raise ValueError(
            f"prediction {i} of video {predictions.video_ids[i]!r} has label_id "
            f"{predictions.label_ids[i]}, outside 0..{num_labels - 1}"
        )
    video_index = {vid: i + 1 for i, vid in enumerate(ground_truth.videos)}  # 0: unknown
    stride = len(video_index) + 1
    gt_rows = [
        (video_index[v.video_id], e.label_id, e.start_s, e.end_s)
        for v in ground_truth.videos.values()
        for e in v.events
    ]
    if not gt_rows:
        raise ValueError("the ground truth has no events: nothing to evaluate")
    gt_table = np.array(gt_rows, float)  # (G, 4): video, class, start, end
    gt_classes = gt_table[:, 1].astype(np.int64)
    gt_keys = gt_classes * stride + gt_table[:, 0].astype(np.int64)
    pred_videos = np.array([video_index.get(v, 0) for v in predictions.video_ids], np.int64)
    if not allow_unknown_videos and (pred_videos == 0).any():
        unknown = sorted(set(predictions.video_ids[pred_videos == 0].tolist()))
        raise ValueError(
            f"{len(unknown)} predicted videos are not in the ground truth (e.g. "
            f"{unknown[:5]}); evaluate against the subset the predictions were made "
            "for, or pass allow_unknown_videos=True to count them as false positives"
        )
    # Class-major, score-descending order (stable: ties keep input order).
    by_score = np.argsort(-predictions.scores, kind="stable")
    by_class = by_score[np.argsort(predictions.label_ids[by_score], kind="stable")]
    pred_keys = predictions.label_ids * stride + pred_videos
    by_group = by_class[np.argsort(pred_keys[by_class], kind="stable")]
    tp_grouped, recalled = _match_groups(
        gt_keys,
        gt_table[:, 2:],
        pred_keys[by_group],
        predictions.segments[by_group],
        thresholds,
        RECALL_TOP_K,
    )
    position = np.empty(len(predictions), np.int64)
    position[by_class] = np.arange(len(predictions))
    tp = np.zeros_like(tp_grouped)  # (K, N) in class-major score order
    tp[:, position[by_group]] = tp_grouped
    sorted_labels = predictions.label_ids[by_class]
    class_ids = np.unique(gt_classes)
    lo = np.searchsorted(sorted_labels, class_ids, "left")
    hi = np.searchsorted(sorted_labels, class_ids, "right")
    ap = np.zeros((len(class_ids), len(thresholds)))  # (C, K)
    recall = np.zeros((len(RECALL_TOP_K), len(class_ids), len(thresholds)))
    for c, (class_id, start, stop) in enumerate(zip(class_ids, lo, hi, strict=True)):
        in_class = gt_classes == class_id
        ap[c] = _ap_from_tp(tp[:, start:stop], int(in_class.sum()))
        recall[:, c] = recalled[:, :, in_class].mean(axis=2)
    map_per_tiou = ap.mean(axis=0)
    bootstrap = None
    if bootstrap_resamples > 0:
        names = list(ground_truth.videos)
        rank = np.full(len(names) + 1, -1)  # video_index -> rank among sorted ids; 0: unknown
        rank[1:][np.argsort(names, kind="stable")] = np.arange(len(names))
        bootstrap = VideoBootstrap(
            resamples=bootstrap_resamples,
            seed=bootstrap_seed,
            num_videos=len(names),
            videos_digest=videos_digest(names),
            map_per_tiou=bootstrap_map(
                tp,
                sorted_labels,
                rank[pred_videos[by_class]],
                gt_classes,
                rank[gt_table[:, 0].astype(np.int64)],
                len(names),
                resamples=bootstrap_resamples,
                seed=bootstrap_seed,
            ),
        )
    return DetectionMetrics(
        tiou_thresholds=thresholds,
        map_per_tiou=map_per_tiou,
        average_map=float(map_per_tiou.mean()),
        class_names=tuple(ground_truth.labels[c] for c in class_ids.tolist()),
        ap_per_class=ap,
        recall_1x=recall[0].mean(axis=0),
        recall_5x=recall[1].mean(axis=0),
        num_ground_truth=len(gt_rows),
        num_predictions=len(predictions),
        bootstrap=bootstrap,
    )


def write_results(
    path: str | Path,
    predictions_by_video: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Sequence[str],
    *,
    version: str = "avloc",
) -> None:
    """Write detections in ActivityNet's results format.

    ``predictions_by_video`` maps video id -> [{"segment": [s, e], "label_id": int (or
    "label": str), "score": float}]; the file holds label names. Written atomically.
    """
    path = Path(path)
    results: dict[str, list[dict[str, Any]]] = {}
    for vid, items in predictions_by_video.items():
        rows = []
        for index, item in enumerate(items):
            label_id = item.get("label_id", -1)
            label = item.get("label", labels[label_id] if 0 <= label_id < len(labels) else None)
            start, end = (float(v) for v in item["segment"])
            score = float(item["score"])
            if not np.isfinite([start, end, score]).all() or label not in labels:
                raise ValueError(
                    f"{path}: video {vid!r}, prediction {index}: needs a finite segment and "
                    f"score and a label (or label_id) among the {len(labels)} labels, got {item!r}"
                )
            rows.append({"segment": [start, end], "label": label, "score": score})
        results[vid] = rows
    payload = {"version": version, "results": results, "external_data": {}}
    write_json_atomic(path, payload)


def read_results(path: str | Path, labels: Sequence[str]) -> Predictions:
    """Read an ActivityNet results file into :class:`Predictions` (file order kept)."""
    path = Path(path)
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{path}: not an ActivityNet results file (no 'results' object)")
    label_index = {label: i for i, label in enumerate(labels)}
    video_ids, segments, label_ids, scores = [], [], [], []
    for vid, items in data["results"].items():
        for index, item in enumerate(items):
            try:
                start, end = (float(v) for v in item["segment"])
                label_ids.append(label_index[item["label"]])
                scores.append(float(item["score"]))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{path}: video {vid!r}, prediction {index}: needs 'segment' "
                    f"[s, e], a known 'label' and 'score' ({error!r})"
                ) from error
            video_ids.append(vid)
            segments.append((start, end))
    predictions = Predictions(video_ids, np.reshape(segments, (-1, 2)), label_ids, scores)
    _check_predictions(predictions)
    return predictions
