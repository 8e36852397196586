"""Spatial sound-localisation metrics on hand-made maps, against values computed by hand."""

import numpy as np
import pytest

from pipeline.spatial import evaluate
from pipeline.spatial.metrics import (
    avsbench_f_curve,
    avsbench_fscore,
    avsbench_iou,
    ciou,
    ciou_auc,
    fraction_localised,
    frame_scores,
    gt_area_mask,
    median_mask,
    negative_scores,
    slavc_ap,
    slavc_ap_thresholds,
    slavc_confidence,
    slavc_max_f1,
    slavc_precision_recall,
    summarise,
)

# ------------------------------------------------------------------------- EZ-VSL and LVS


def test_median_threshold_keeps_ties_with_ge_and_drops_them_with_gt() -> None:
    heatmap = np.array([[0.1, 0.4, 0.4, 0.9], [0.4, 0.2, 0.8, 0.0]])
    # Sorted: 0, 0.1, 0.2, 0.4, 0.4, 0.4, 0.8, 0.9; the upper median sorted[int(8 * 0.5)] =
    # sorted[4] = 0.4 (min-max normalised: 0.4 / 0.9). EZ-VSL (>=) keeps the three tied 0.4s,
    # 0.8 and 0.9: 5 pixels; LVS (>) keeps 0.8 and 0.9 only.
    assert median_mask(heatmap).tolist() == [[False, True, True, True], [True, False, True, False]]
    assert median_mask(heatmap, strict=True).sum() == 2
    assert median_mask(heatmap, strict=True)[0, 3] and median_mask(heatmap, strict=True)[1, 2]
    # Without ties: 0..15, sorted[8] = 8; >= keeps 8..15 (8 pixels), > keeps 9..15 (7).
    ramp = np.arange(16.0).reshape(4, 4)
    assert median_mask(ramp).sum() == 8 and median_mask(ramp, strict=True).sum() == 7
    assert not median_mask(ramp)[1, 3] and median_mask(ramp)[2, 0]
    # A constant map: >= keeps every pixel, > none.
    flat = np.ones((2, 4))
    assert median_mask(flat).all() and not median_mask(flat, strict=True).any()


def test_ciou_with_a_soft_ground_truth_by_hand() -> None:
    gt = np.array([[1.0, 1.0, 0.5, 0.0], [0.5, 0.0, 0.0, 0.0]])  # Flickr: 0, 0.5, 1
    predicted = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=bool)
    # sum(P * G) = 1 + 0.5 = 1.5; sum(G) = 3; sum(P * (G == 0)) = 1 (pixel (0, 3)):
    # cIoU = 1.5 / (3 + 1) = 0.375.
    assert ciou(predicted, gt) == pytest.approx(0.375)
    # Binary GT: the plain cIoU. Here 2 of the 3 positive GT pixels, none outside: 2 / 3.
    assert ciou(np.array([[1, 1, 0, 0]], bool), np.array([[1, 1, 1, 0]])) == pytest.approx(2 / 3)
    # An empty GT scores 0 against a prediction (0 / (0 + |P|)); 0 / 0 is refused.
    assert ciou(predicted, np.zeros((2, 4))) == 0.0
    with pytest.raises(ValueError, match="0/0"):
        ciou(np.zeros((2, 4), bool), np.zeros((2, 4)))


def test_auc_is_the_trapezoid_over_ezvsls_thresholds() -> None:
    cious = [0.0, 0.5, 1.0]
    assert fraction_localised(cious) == pytest.approx(2 / 3)  # the "CIoU" column
    # success(t): 1 at t = 0, 2/3 for 0 < t <= 0.5, 1/3 for 0.5 < t <= 1 on t = 0.05 i.
    # Trapezoids: 0.05 * (1 + 2/3) / 2 + 9 * 0.05 * 2/3 + 0.05 * (2/3 + 1/3) / 2
    #             + 9 * 0.05 * 1/3 = 0.041667 + 0.3 + 0.025 + 0.15 = 0.516667
    # (the sum times 0.05 would be 0.05 * (1 + 10 * 2/3 + 10 * 1/3) = 0.55).
    assert ciou_auc(cious) == pytest.approx(0.516667, abs=1e-6)
    assert ciou_auc([1.0, 1.0]) == pytest.approx(1.0)
    # EZ-VSL's thresholds are the floats 0.05 * i: 0.05 * 3 = 0.15000000000000002 > 0.15, so a
    # cIoU of exactly 0.15 fails at i = 3. Area: 0.1 (t <= 0.1) + 0.05 * (1 + 0) / 2 = 0.125
    # (with an exact 0.15 it would be 0.15 + 0.025 = 0.175).
    assert ciou_auc([0.15]) == pytest.approx(0.125)


# ------------------------------------------------------------------------------------ SLAVC


def test_slavc_confidence_is_the_top_quarter_after_the_fixed_range() -> None:
    cosines = np.array([[-1.0, -0.5, 0.0, 0.2], [0.4, 0.6, 0.8, 1.0]])
    # n = 8: the top 2, 0.8 and 1.0, -> (s + 1) / 2 = 0.9 and 1.0: mean 0.95.
    assert slavc_confidence(cosines) == pytest.approx(0.95)
    # Range (0, 2): (0.8 / 2 + 1 / 2) / 2 = 0.45. Not a per-image min-max: a map shifted by a
    # constant changes its confidence.
    assert slavc_confidence(cosines, score_range=(0.0, 2.0)) == pytest.approx(0.45)
    assert slavc_confidence(cosines - 0.5) == pytest.approx(0.7)
    # n = 6: SLAVC's [-n//4:] is [-2:] ((-6) // 4 = -2), the top ceil(6 / 4) = 2 pixels:
    # 0.5 and 1 -> 0.75 and 1 -> 0.875 (the top n // 4 = 1 pixel would give 1.0).
    assert slavc_confidence(np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 1.0]])) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="low < high"):
        slavc_confidence(cosines, score_range=(1.0, 1.0))


# Six samples, SLAVC's counting: A, C, D, F show a sounding source, B and E are negatives.
#            A     B     C     D     E     F
CIOUS = np.array([0.8, 0.0, 0.3, 0.6, 0.0, 0.9])
CONFIDENCES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
VISIBLE = np.array([True, False, True, True, False, True])


def test_slavc_ap_max_f1_and_precision_by_hand() -> None:
    # Thresholds: sorted confidences without the largest, descending, skip = max(1, 6 // 200):
    # 0.8, 0.7, 0.6, 0.5, 0.4. Confident samples, counts, precision p and recall r:
    #   0.8: A (TP), B (FP, a negative); FN C, D, F     p = 1/2, r = 1/4
    #   0.7: + C (FP, cIoU 0.3 < 0.5)                   p = 1/3, r = 1/3
    #   0.6: + D (TP)                                   p = 1/2, r = 2/3
    #   0.5: + E (FP, a negative)                       p = 2/5, r = 2/3
    #   0.4: + F (TP)                                   p = 1/2, r = 1
    assert slavc_ap_thresholds(CONFIDENCES).tolist() == [0.8, 0.7, 0.6, 0.5, 0.4]
    assert slavc_precision_recall(CIOUS, CONFIDENCES, VISIBLE, 0.7) == pytest.approx((1 / 3, 1 / 3))
    # Interpolated precision max(p_k, p_k+1, ...) = 1/2 at every k; no recall-0 anchor:
    # AP = 1/2 (1/3 - 1/4) + 1/2 (2/3 - 1/3) + 1/2 (2/3 - 2/3) + 1/2 (1 - 2/3) = 1/2 * 3/4
    # = 0.375 (with a recall-0 anchor it would be 0.5; without interpolation 0.286).
    assert slavc_ap(CIOUS, CONFIDENCES, VISIBLE) == pytest.approx(0.375)
    # max-F1 over sorted(conf)[::max(1, 6 // 10)], all six, ascending:
    #   0.4: p 1/2, r 1 -> 2/3; 0.5: p 2/5, r 2/3 -> 1/2; 0.6: p 1/2, r 2/3 -> 4/7;
    #   0.7: 1/3; 0.8: 1/3; 0.9: A only, p 1, r 1/4 -> 2/5. Max: 2/3.
    assert slavc_max_f1(CIOUS, CONFIDENCES, VISIBLE) == pytest.approx(2 / 3)
    # Precision: visible samples with cIoU >= 0.5: A, D, F of A, C, D, F = 3/4.
    assert fraction_localised(CIOUS[VISIBLE]) == pytest.approx(0.75)
    # Nothing confident: precision 1 (no detection), recall 0.
    assert slavc_precision_recall(CIOUS, CONFIDENCES, VISIBLE, 2.0) == (1.0, 0.0)


def test_slavc_ap_thresholds_skip_with_many_samples() -> None:
    # 400 samples: skip = 400 // 200 = 2; sorted[:-1] = 0..398, every second from the top.
    thresholds = slavc_ap_thresholds(np.arange(400.0)[::-1])
    assert len(thresholds) == 200 and thresholds[:3].tolist() == [398.0, 396.0, 394.0]
    assert thresholds[-1] == 0.0
    assert slavc_ap(np.ones(1), np.ones(1), np.ones(1, bool)) == 0.0  # no threshold pair


# --------------------------------------------------------------------------------- AVSBench


def test_avsbench_miou_with_an_empty_ground_truth() -> None:
    scores = np.array([[0.5, 0.2, -0.1, 0.0], [-0.3, 0.4, -0.2, -0.5]])
    # sigmoid(s) > 0.5 is s > 0: predicted (0, 0), (0, 1), (1, 1); the 0.0 pixel is not.
    gt = np.array([[1, 0, 0, 0], [1, 1, 0, 0]])
    # Intersection (0, 0), (1, 1) = 2; union of the 4 pixels: 2 / (4 + 1e-7).
    assert avsbench_iou(scores, gt) == pytest.approx(2 / (4 + 1e-7), rel=1e-12)
    # Empty GT: the fraction of pixels predicted background, 5 / (8 + 1e-7).
    assert avsbench_iou(scores, np.zeros((2, 4))) == pytest.approx(5 / (8 + 1e-7), rel=1e-12)
    # Empty GT and empty prediction: 8 / (8 + 1e-7), just below 1.
    empty = avsbench_iou(-np.ones((2, 4)), np.zeros((2, 4)))
    assert empty == pytest.approx(8 / (8 + 1e-7), rel=1e-12) and empty < 1.0
    assert negative_scores(scores)["avsbench_iou"] == pytest.approx(5 / (8 + 1e-7))


def _logit(probability: list[float]) -> np.ndarray:
    p = np.array([probability])
    return np.log(p / (1 - p))


def test_avsbench_fscore_is_the_max_of_the_mean_curve() -> None:
    # Frame 1: sigmoid 0.9, 0.6, 0.3, 0.1 on GT 1, 0, 1, 0. Pixels >= t, F = 1.3 P R / (0.3 P + R):
    #   t <= 0.1 all (P 1/2, R 1): 0.65 / 1.15; 0.1 < t <= 0.3 (P 2/3, R 1): 13/18;
    #   0.3 < t <= 0.6 (P 1/2, R 1/2): 0.5; 0.6 < t <= 0.9 (P 1, R 1/2): 0.8125; t > 0.9: 0.
    first = avsbench_f_curve(_logit([0.9, 0.6, 0.3, 0.1]), np.array([[1, 0, 1, 0]]))
    # Frame 2: sigmoid 0.2, 0.5, 0.05, 0.1 on GT 0, 1, 0, 0: t <= 0.05 (P 1/4): 0.325 / 1.075;
    #   (0.05, 0.1] (P 1/3): 0.3939; (0.1, 0.2] (P 1/2): 0.65 / 1.15; (0.2, 0.5] (P 1): 1; 0 above.
    second = avsbench_f_curve(_logit([0.2, 0.5, 0.05, 0.1]), np.array([[0, 1, 0, 0]]))
    assert first is not None and second is not None and first.shape == (255,)
    assert first[0] == pytest.approx(0.65 / 1.15) and first.max() == pytest.approx(0.8125)
    assert first[-1] == 0.0 and second.max() == pytest.approx(1.0)
    # Mean over frames per threshold, then the max: on (0.2, 0.3] (13/18 + 1) / 2 = 31/36. The
    # mean of the frames' maxima, (0.8125 + 1) / 2 = 0.90625, is not AVSBench's F-score.
    assert avsbench_fscore([first, second]) == pytest.approx(31 / 36)
    # A frame with an empty GT has no curve and is skipped; none left scores 0.
    assert avsbench_f_curve(_logit([0.9, 0.6, 0.3, 0.1]), np.zeros((1, 4))) is None
    assert avsbench_fscore([first, second, None]) == pytest.approx(31 / 36)
    assert avsbench_fscore([None]) == 0.0


# ------------------------------------------------------------------------------------- ours


def test_ciou_at_gt_area_keeps_as_many_pixels_as_the_ground_truth() -> None:
    heatmap = np.arange(16, dtype=float).reshape(4, 4)
    assert gt_area_mask(heatmap, 3).sum() == 3 and gt_area_mask(heatmap, 3)[3, 3]
    # Ties at the cut are all kept: a constant map selects every pixel, cIoU = |G| / N.
    gt = np.zeros((4, 4), dtype=bool)
    gt[0, :2] = True
    assert ciou(gt_area_mask(np.ones((4, 4)), 2), gt) == pytest.approx(2 / 16)
    # Half overlap: 16 GT pixels, the top 16 of the map shifted by 2 columns: 8 / (16 + 8).
    gt = np.zeros((4, 8), dtype=bool)
    gt[:, :4] = True
    shifted = np.zeros((4, 8))
    shifted[:, 2:6] = 1.0
    assert ciou(gt_area_mask(shifted, 16), gt) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="non-empty"):
        gt_area_mask(heatmap, 0)


def test_frame_scores_pointing_and_peak_on_silent() -> None:
    gt = np.zeros((8, 8))
    gt[2:6, 1:4] = 1.0  # box [1, 2, 4, 6]: 12 pixels
    perfect = 2 * gt - 1  # cosine 1 on the box, -1 elsewhere
    scores = frame_scores(perfect, gt, [])
    # Median split: sorted[32] = -1, so >= keeps all 64 pixels: cIoU = 12 / (12 + 52).
    assert scores["ezvsl_ciou"] == pytest.approx(12 / 64)
    assert scores["ciou_gt_area"] == 1.0 and scores["avsbench_iou"] == pytest.approx(1.0)
    assert scores["peak_on_gt"] == 1.0 and np.isnan(scores["peak_on_silent"])
    assert scores["slavc_confidence"] == pytest.approx((12 * 1.0 + 4 * 0.0) / 16)
    off = -np.ones((8, 8))
    off[0:4, 5:8] = 1.0  # a silent object's box [5, 0, 8, 4]
    scores = frame_scores(off, gt, [[5, 0, 8, 4]])
    assert scores["ciou_gt_area"] == 0.0 and scores["avsbench_iou"] == 0.0
    assert scores["peak_on_gt"] == 0.0 and scores["peak_on_silent"] == 1.0
    # An empty ground truth (a release's degenerate box) scores 0, as the field's cIoU does;
    # AVSBench's empty rule: 52 of 64 pixels predicted background.
    scores = frame_scores(perfect, np.zeros((8, 8)), [])
    assert scores["ezvsl_ciou"] == 0.0 and scores["ciou_gt_area"] == 0.0
    assert scores["avsbench_iou"] == pytest.approx(52 / 64) and scores["peak_on_gt"] == 0.0


# ----------------------------------------------------------------------- data-set summaries


def test_summarise_families_by_hand() -> None:
    # Positive 1: median sorted[4] = 0.1 keeps 0.9, 0.5, 0.7, 0.1; GT 3 pixels, 1 predicted off
    # it: cIoU 3 / 4. Confidence: top 2 (0.9, 0.7) -> (0.95 + 0.85) / 2 = 0.9. AVSBench: the
    # same 4 pixels > 0: 3 / 4. |GT| = 3 highest: 0.9, 0.7, 0.5 = the GT: 1. Peak on GT.
    first = frame_scores(
        np.array([[0.9, 0.5, -0.2, -0.6], [0.7, 0.1, -0.4, -1.0]]),
        np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),
        [],
    )
    # Positive 2: five tied -0.5 at the median, >= keeps all 8: cIoU 2 / 8. Confidence:
    # (0.9 + 0.65) / 2 = 0.775. AVSBench: 3 pixels > 0, none on GT: 0. |GT| = 2 highest
    # (0.8, 0.3): 0. Peak (0, 3) on the silent box, off the GT.
    second = frame_scores(
        np.array([[-0.5, -0.5, 0.3, 0.8], [-0.5, -0.5, -0.5, 0.2]]),
        np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
        [[2, 0, 4, 1]],
    )
    # Negative: confidence (0.8 + 0.6) / 2 = 0.7; 6 of 8 pixels background: 0.75.
    negative = negative_scores(np.array([[0.6, 0.2, -0.2, -0.2], [-0.2, -0.2, -0.2, -0.2]]))
    assert (first["ezvsl_ciou"], second["ezvsl_ciou"]) == pytest.approx((0.75, 0.25))
    assert (first["slavc_confidence"], second["slavc_confidence"]) == pytest.approx((0.9, 0.775))
    assert negative["slavc_confidence"] == pytest.approx(0.7)
    curves = [np.array([0.2, 0.6]), np.array([0.4, 0.2])]
    summary = summarise([first, second], curves, [negative])
    assert summary["num_frames"] == 2 and summary["num_negatives"] == 1
    # EZ-VSL on cIoU 0.75, 0.25: success 1 up to t = 0.25, 1/2 up to 0.75, then 0. AUC:
    # 0.25 + 0.05 * 1.5 / 2 + 9 * 0.05 / 2 + 0.05 * 0.5 / 2 = 0.25 + 0.0375 + 0.225 + 0.0125.
    assert summary["ezvsl"] == pytest.approx({"ciou": 0.5, "auc": 0.525, "mean_ciou": 0.5})
    # SLAVC: AP thresholds 0.775 (p 1/2, r 1), 0.7 (p 1/3, r 1): AP = 1/2 * (1 - 1) = 0;
    # max-F1 over 0.7 (1/2), 0.775 (2/3), 0.9 (p 1, r 1/2: 2/3) = 2/3; Precision 1/2.
    assert summary["slavc"] == pytest.approx({"ap": 0.0, "max_f1": 2 / 3, "precision": 0.5})
    # AVSBench: mIoU over both positives and the negative (0.75 + 0 + 0.75) / 3; the F-score
    # is the max of the mean curve (0.3, 0.4).
    assert summary["avsbench"] == pytest.approx({"miou": 0.5, "fscore": 0.4}, rel=1e-6)
    assert summary["ours"] == pytest.approx(
        {
            "ciou_gt_area": 0.5,
            "mean_ciou_gt_area": 0.5,
            "pointing_accuracy": 0.5,
            "peak_on_silent_rate": 1.0,
        }
    )
    alone = summarise([first], curves[:1])
    assert alone["num_negatives"] == 0 and alone["ours"]["peak_on_silent_rate"] is None
    with pytest.raises(ValueError, match="no frame to summarise"):
        summarise([], [])


def test_grid_oracle_on_a_cell_aligned_box() -> None:
    masks = np.zeros((1, 48, 64), dtype=np.float32)
    masks[0, 12:18, 16:24] = 1.0  # cell (row 2, column 2) of an 8 x 8 grid on 64 x 48 pixels
    oracle = evaluate.grid_oracle_heatmaps(masks, (8, 8))
    assert oracle.shape == (1, 48, 64)
    # Cells score 2 c - 1 for their coverage c: 1 on the cell, -1 elsewhere. Bilinear upsampling
    # is a product of row and column weights: the cell's corner pixels (0.5625 * 0.5833 = 0.33
    # of the way up) lose to the pixels just outside the middle of its sides (0.4375 * 0.9167 =
    # 0.40), so even the oracle misses a few corner pixels.
    assert oracle[0, 12, 16] == pytest.approx(2 * 0.5625 * (7 / 12) - 1)
    assert oracle[0, 15, 15] == pytest.approx(2 * 0.4375 * (11 / 12) - 1)
    assert oracle.min() == pytest.approx(-1.0) and oracle.max() <= 1.0
    assert 0.8 < ciou(gt_area_mask(oracle[0], int(masks.sum())), masks[0]) < 1.0
