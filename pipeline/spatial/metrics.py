"""Visual sound-localisation metrics, each family under the definition and name of the evaluator
that published it, plus this pipeline's own, named so that they cannot be mistaken for those.

- **EZ-VSL** (Mo & Morgado, ECCV 2022, arXiv 2203.09324; stoneMo/EZ-VSL ``test.py`` and
  ``utils.py`` ``Evaluator``, which follow LVS: Chen et al., CVPR 2021, arXiv 2104.02691,
  hche11/Localizing-Visual-Sounds-the-Hard-Way ``test.py``): min-max normalise each heatmap,
  keep the pixels at or above the upper median ``sorted[int(H * W * 0.5)]`` (LVS: strictly
  above it), cIoU ``= sum(P * G) / (sum(G) + sum(P * (G == 0)))`` against a possibly soft
  ground truth G (Flickr-SoundNet: 0, 0.5, 1). "CIoU" is the fraction of images with
  cIoU >= 0.5, "AUC" the trapezoid-rule area (``sklearn.metrics.auc``) under the fraction
  with cIoU >= t over ``t = 0.05 * i``, i = 0..20. The median rule predicts half the map, so
  cIoU >= 0.5 needs a ground truth covering at least a quarter of it (G inside P: 2|G| / HW).
- **SLAVC** (Mo & Morgado, NeurIPS 2022, arXiv 2211.01966; stoneMo/SLAVC ``test.py``,
  ``utils.py`` ``EvaluatorFull``): confidence = mean of the top quarter of the map after the
  fixed-range normalisation ``(S - lo) / (hi - lo)``; the binary map is EZ-VSL's median rule
  (the ``--relative_prediction`` mode of SLAVC's README command). Samples without a visible
  sounding source are negatives. "AP" and "max-F1" count detections over confidence thresholds;
  "Precision" is the fraction of visible samples with cIoU >= 0.5.
- **AVSBench** (Zhou et al., ECCV 2022, arXiv 2207.05042; OpenNLPLab/AVSBench
  ``avs_scripts/avs_s4/utils/utility.py``): "mIoU" binarises the logits at
  ``sigmoid(S) > 0.5``, with the empty-ground-truth rule; "F-score" (beta^2 = 0.3) is the max
  over 255 thresholds of the per-threshold mean over frames with a non-empty ground truth.
- **Ours**: cIoU@|GT|, the cIoU of the |G| highest pixels (ties at the cut included), which does
  not depend on how a method scales its scores; pointing accuracy (Zhang et al., ECCV 2016,
  arXiv 1608.00507: the map's maximum lies on the ground truth); peak on silent.

Resolution: the field upsamples every map to 224 x 224 and draws its ground truth there; here
heatmaps and ground truth are compared at the ground-truth masks' size (the video frame size).
The median split, the top quarter and the thresholds are fractions of the map, but the values
are not identical to those a resampling to 224 x 224 would give.

Our localisers score cells by a cosine in [-1, 1], so SLAVC's range is ``(-1, 1)``, and
AVSBench's ``sigmoid(S) > 0.5`` is ``S > 0``: the cosine is taken as the logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

CIOU_THRESHOLD = 0.5  # "CIoU", SLAVC's TP and Precision: cIoU >= 0.5
AUC_THRESHOLDS = np.array([0.05 * i for i in range(21)])  # EZ-VSL's floats: 0.05 * 3 > 0.15
COSINE_RANGE = (-1.0, 1.0)  # score range of our localisers (SLAVC's fixed-range normalisation)
AVSBENCH_BETA2 = 0.3  # beta^2 of AVSBench's F-score
AVSBENCH_NUM_THRESHOLDS = 255  # thresholds of AVSBench's F-score curve
AVSBENCH_IOU_EPS = 1e-7  # AVSBench mask_iou
AVSBENCH_PR_EPS = 1e-20  # AVSBench _eval_pr


def normalise_min_max(heatmap: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant heatmap becomes all zeros (EZ-VSL's ``normalize_img`` leaves
    it unchanged: the median split of either keeps every pixel)."""
    low, high = float(heatmap.min()), float(heatmap.max())
    if high - low <= 1e-12:
        return np.zeros_like(heatmap, dtype=np.float64)
    return (heatmap - low) / (high - low)


def ciou(predicted: np.ndarray, gt: np.ndarray) -> float:
    """cIoU of a binary prediction against a ground truth in [0, 1] (soft values allowed):
    ``sum(P * G) / (sum(G) + sum(P * (G == 0)))`` (LVS, EZ-VSL, SLAVC ``utils.py``). An empty
    ground truth scores 0 against a non-empty prediction.

    Raises:
        ValueError: both are empty (0 / 0).
    """
    predicted = predicted.astype(np.float64)
    gt = gt.astype(np.float64)
    denominator = gt.sum() + (predicted * (gt == 0)).sum()
    if denominator == 0:
        raise ValueError("cIoU is 0/0 for an empty ground truth and an empty prediction")
    return float((predicted * gt).sum() / denominator)


# ------------------------------------------------------------------------- EZ-VSL and LVS


def median_mask(heatmap: np.ndarray, *, strict: bool = False) -> np.ndarray:
    """The EZ-VSL binary map: the min-max normalised heatmap at or above its upper median
    ``sorted[int(H * W * 0.5)]``; ``strict=True`` keeps only the pixels above it (LVS). Bool,
    the heatmap's shape."""
    normalised = normalise_min_max(heatmap)
    threshold = np.sort(normalised.ravel())[int(normalised.size * 0.5)]
    return normalised > threshold if strict else normalised >= threshold


def fraction_localised(cious: Sequence[float], threshold: float = CIOU_THRESHOLD) -> float:
    """Fraction of images with cIoU >= ``threshold``: the field's "CIoU" column (EZ-VSL's
    ``finalize_AP50``; SLAVC's "Precision" over its visible samples)."""
    return float(np.mean(np.asarray(cious) >= threshold))


def ciou_auc(cious: Sequence[float]) -> float:
    """EZ-VSL's "AUC": trapezoid-rule area under ``t -> fraction(cIoU >= t)`` over
    :data:`AUC_THRESHOLDS` (as ``sklearn.metrics.auc``, not the sum times 0.05)."""
    values = np.asarray(cious)
    success = [np.mean(values >= t) for t in AUC_THRESHOLDS]
    return float(np.trapezoid(success, AUC_THRESHOLDS))


# ------------------------------------------------------------------------------------ SLAVC


def slavc_confidence(heatmap: np.ndarray, score_range: tuple[float, float] = COSINE_RANGE) -> float:
    """SLAVC's confidence: mean of the top quarter of ``(S - lo) / (hi - lo)``. Its slice
    ``[-n//4:]`` reads ``(-n) // 4``: the top ``ceil(n / 4)`` pixels."""
    low, high = score_range
    if high <= low:
        raise ValueError(f"score range {score_range} must have low < high")
    scores = np.sort((heatmap.astype(np.float64) - low) / (high - low), axis=None)
    top = -(-scores.size // 4)  # ceil(n / 4)
    return float(scores[-top:].mean())


def slavc_precision_recall(
    cious: np.ndarray,
    confidences: np.ndarray,
    visible: np.ndarray,
    confidence_threshold: float,
    ciou_threshold: float = CIOU_THRESHOLD,
) -> tuple[float, float]:
    """SLAVC's counts at one confidence threshold (``calc_precision_recall``): a confident
    negative is a FP; a visible sample is a TP when confident and cIoU >= ``ciou_threshold``,
    a FP when confident and below, a FN when not confident. Precision and recall are 1 when
    their denominator is 0.

    Args:
        cious: (N,) cIoU per sample (unused for negatives).
        confidences: (N,) :func:`slavc_confidence` per sample.
        visible: (N,) bool, the sample shows a sounding source (False: a negative).
    """
    confident = confidences >= confidence_threshold
    localised = visible & (cious >= ciou_threshold)
    true_positive = int(np.sum(confident & localised))
    false_positive = int(np.sum(confident & ~localised))
    false_negative = int(np.sum(visible & ~confident))
    detected = true_positive + false_positive
    relevant = true_positive + false_negative
    precision = true_positive / detected if detected else 1.0
    recall = true_positive / relevant if relevant else 1.0
    return precision, recall


def slavc_ap_thresholds(confidences: np.ndarray) -> np.ndarray:
    """SLAVC's AP thresholds: the sorted confidences without the largest, from the second
    largest down, every ``max(1, N // 200)``-th."""
    skip = max(1, len(confidences) // 200)
    return np.sort(confidences)[:-1][::-skip]


def slavc_ap(
    cious: np.ndarray,
    confidences: np.ndarray,
    visible: np.ndarray,
    ciou_threshold: float = CIOU_THRESHOLD,
) -> float:
    """SLAVC's AP (``calc_ap``): ``sum_k max(p_k, p_k+1, ...) * (r_k+1 - r_k)`` over
    :func:`slavc_ap_thresholds`, with no recall-0 anchor (the recall below the first threshold
    is not counted). Arguments as :func:`slavc_precision_recall`."""
    points = [
        slavc_precision_recall(cious, confidences, visible, t, ciou_threshold)
        for t in slavc_ap_thresholds(confidences)
    ]
    if len(points) < 2:
        return 0.0
    precision, recall = np.array(points).T  # (K,), (K,); recall grows as thresholds fall
    interpolated = np.maximum.accumulate(precision[::-1])[::-1]  # max over k' >= k
    return float(np.sum(interpolated[:-1] * np.diff(recall)))


def slavc_max_f1(
    cious: np.ndarray,
    confidences: np.ndarray,
    visible: np.ndarray,
    ciou_threshold: float = CIOU_THRESHOLD,
) -> float:
    """SLAVC's "max-F1": the largest ``2PR / (P + R)`` over the thresholds
    ``sorted(confidences)[::max(1, N // 10)]`` (``finalize_stats`` lists them; the paper
    reports the max). Arguments as :func:`slavc_precision_recall`."""
    scores = []
    for threshold in np.sort(confidences)[:: max(1, len(confidences) // 10)]:
        p, r = slavc_precision_recall(cious, confidences, visible, threshold, ciou_threshold)
        scores.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return float(max(scores))


# --------------------------------------------------------------------------------- AVSBench


def avsbench_iou(scores: np.ndarray, gt: np.ndarray, eps: float = AVSBENCH_IOU_EPS) -> float:
    """AVSBench's per-frame IoU (``mask_iou``) of ``sigmoid(scores) > 0.5``, i.e. ``scores > 0``,
    against ``gt``: ``sum(P * G) / (sum(max(P, G)) + eps)``; for an empty ``gt`` the fraction of
    pixels predicted background, ``sum((1 - G) * (1 - P)) / (H * W + eps)``."""
    predicted = (scores > 0).astype(np.float64)
    target = gt.astype(np.float64)
    if target.sum() == 0:
        return float(((1 - target) * (1 - predicted)).sum() / (target.size + eps))
    return float((predicted * target).sum() / (np.maximum(predicted, target).sum() + eps))


def avsbench_f_curve(
    scores: np.ndarray, gt: np.ndarray, beta2: float = AVSBENCH_BETA2
) -> np.ndarray | None:
    """AVSBench's F-score of one frame at its 255 thresholds ``linspace(0, 1 - 1e-10)`` on
    ``sigmoid(scores)`` (``_eval_pr``, ``Eval_Fmeasure``; pixels >= the threshold are
    predicted), 0 where precision and recall are both 0; None for an empty ``gt`` (skipped).
    A cosine's sigmoid lies in [0.27, 0.73], so only the thresholds in there tell maps apart."""
    target = gt.astype(np.float64).ravel()
    if target.sum() == 0:
        return None
    probability = expit(scores.astype(np.float64).ravel())
    order = np.argsort(probability)
    sorted_probability, sorted_target = probability[order], target[order]
    thresholds = np.linspace(0.0, 1.0 - 1e-10, AVSBENCH_NUM_THRESHOLDS)
    first = np.searchsorted(sorted_probability, thresholds, side="left")  # (K,) first kept
    kept_target = np.append(np.cumsum(sorted_target[::-1])[::-1], 0.0)  # [i]: sum from i on
    true_positive = kept_target[first]
    precision = true_positive / (probability.size - first + AVSBENCH_PR_EPS)
    recall = true_positive / (target.sum() + AVSBENCH_PR_EPS)
    with np.errstate(invalid="ignore"):
        f_score = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    return np.nan_to_num(f_score, nan=0.0)


def avsbench_fscore(curves: Sequence[np.ndarray | None]) -> float:
    """AVSBench's F-score: the max over thresholds of the per-threshold mean of the frames'
    curves (frames with an empty ground truth skipped; 0 when none is left). Taken over the
    whole test set at once, as ACL-SSL's evaluator (swimmiing/ACL-SSL
    ``AVSBench/eval_utils.py``) fixes it: AVSBench's ``test.py`` averages per-batch maxima, so
    its figure depends on the batch size."""
    present = [curve for curve in curves if curve is not None]
    if not present:
        return 0.0
    return float(np.mean(np.stack(present), axis=0).max())


# ------------------------------------------------------------------------------------- ours


def gt_area_mask(heatmap: np.ndarray, gt_area: int) -> np.ndarray:
    """The ``gt_area`` highest pixels of ``heatmap`` (ties at the cut included); bool, same
    shape. Our cIoU@|GT| binarisation, not the field's."""
    if gt_area <= 0:
        raise ValueError("cIoU@|GT| needs a non-empty ground-truth mask")
    flat = np.sort(heatmap.ravel())
    return heatmap >= flat[flat.size - min(gt_area, flat.size)]


def peak_in_boxes(heatmap: np.ndarray, boxes: Sequence[Sequence[int]]) -> bool:
    """Whether the heatmap's (first) maximum lies inside one of the pixel boxes."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in boxes)


# ---------------------------------------------------------------------------- per data set


def frame_scores(
    heatmap: np.ndarray,
    gt: np.ndarray,
    silent_boxes: Sequence[Sequence[int]],
    score_range: tuple[float, float] = COSINE_RANGE,
) -> dict[str, float]:
    """Every per-frame score of a heatmap (height, width) on a frame with a visible sounding
    source, against its ground truth ``gt`` (height, width) in [0, 1].

    Ours read the ground truth as binary at ``gt >= 0.5`` (the pixels at least half the
    annotators marked); an empty one scores cIoU@|GT| 0, as the field's cIoU scores an empty
    ground truth (a release's degenerate box). ``peak_on_silent`` is NaN on frames without a
    silent object.
    """
    binary_gt = gt >= 0.5
    gt_area = int(binary_gt.sum())
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    on_gt = bool(gt[peak] > 0)
    return {
        "ezvsl_ciou": ciou(median_mask(heatmap), gt),
        "slavc_confidence": slavc_confidence(heatmap, score_range),
        "avsbench_iou": avsbench_iou(heatmap, gt),
        "ciou_gt_area": ciou(gt_area_mask(heatmap, gt_area), binary_gt) if gt_area else 0.0,
        "peak_on_gt": float(on_gt),
        "peak_on_silent": float(peak_in_boxes(heatmap, silent_boxes) and not on_gt)
        if silent_boxes
        else np.nan,
    }


def negative_scores(
    heatmap: np.ndarray, score_range: tuple[float, float] = COSINE_RANGE
) -> dict[str, float]:
    """The scores of a heatmap on a frame without a visible sounding source (a negative): its
    SLAVC confidence and its AVSBench IoU under the empty-ground-truth rule."""
    return {
        "slavc_confidence": slavc_confidence(heatmap, score_range),
        "avsbench_iou": avsbench_iou(heatmap, np.zeros(heatmap.shape)),
    }


def summarise(
    positives: Sequence[dict[str, float]],
    f_curves: Sequence[np.ndarray | None],
    negatives: Sequence[dict[str, float]] = (),
) -> dict[str, object]:
    """Data-set metrics by family from :func:`frame_scores` of the frames with a visible
    sounding source, their :func:`avsbench_f_curve`, and :func:`negative_scores`.

    Populations: EZ-VSL, SLAVC's Precision and ours over the positives; SLAVC's AP and max-F1
    over positives and negatives; AVSBench's mIoU over every frame (negatives by the
    empty-ground-truth rule), its F-score over the positives. ``peak_on_silent_rate`` is over
    the frames with a silent object (None when there is none).
    """
    if not positives:
        raise ValueError("no frame to summarise: no evaluated frame has a sounding object")

    def column(frames: Sequence[dict[str, float]], key: str) -> np.ndarray:
        return np.array([frame[key] for frame in frames], dtype=np.float64)

    cious = column(positives, "ezvsl_ciou")
    confidences = np.concatenate(
        [column(positives, "slavc_confidence"), column(negatives, "slavc_confidence")]
    )
    visible = np.arange(len(confidences)) < len(positives)  # (N,) positives first
    sample_cious = np.concatenate([cious, np.zeros(len(negatives))])  # negatives' never read
    ious = np.concatenate([column(positives, "avsbench_iou"), column(negatives, "avsbench_iou")])
    silent = column(positives, "peak_on_silent")
    silent = silent[~np.isnan(silent)]
    ours_cious = column(positives, "ciou_gt_area")
    return {
        "num_frames": len(positives),
        "num_negatives": len(negatives),
        "ezvsl": {
            "ciou": fraction_localised(cious),
            "auc": ciou_auc(cious),
            "mean_ciou": float(cious.mean()),
        },
        "slavc": {
            "ap": slavc_ap(sample_cious, confidences, visible),
            "max_f1": slavc_max_f1(sample_cious, confidences, visible),
            "precision": fraction_localised(cious),
        },
        "avsbench": {"miou": float(ious.mean()), "fscore": avsbench_fscore(f_curves)},
        "ours": {
            "ciou_gt_area": fraction_localised(ours_cious),
            "mean_ciou_gt_area": float(ours_cious.mean()),
            "pointing_accuracy": float(column(positives, "peak_on_gt").mean()),
            "peak_on_silent_rate": float(silent.mean()) if silent.size else None,
        },
    }
