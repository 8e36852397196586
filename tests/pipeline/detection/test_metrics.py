"""Tests of the temporal detection evaluator against hand-computed values and a reference."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.annotations import AnnotationSet, Event, VideoAnnotation, load_annotations
from pipeline.detection.metrics import (
    TIOU_PRESETS,
    Prediction,
    Predictions,
    average_precision,
    evaluate_detection,
    interpolated_average_precision,
    read_results,
    segment_tiou,
    tiou_matrix,
    write_results,
)

LABELS = ("dog", "cat", "bird")
SHARED_DATASETS = Path(
    os.environ.get("AVLOC_SHARED_DATASETS") or Path(__file__).parents[3] / "../shared/datasets"
)
UNAV100 = SHARED_DATASETS / "unav100" / "unav100_annotations.json"


def make_gt(events_by_video: dict[str, list[tuple[float, float, int]]]) -> AnnotationSet:
    """Ground truth from {video: [(start, end, label_id)]}; every video is 100 s long."""
    videos = {
        vid: VideoAnnotation(
            vid, 100.0, "test", tuple(Event(s, e, LABELS[c], c) for s, e, c in events)
        )
        for vid, events in events_by_video.items()
    }
    return AnnotationSet("test", videos, LABELS)


def preds(*rows: tuple[str, float, float, int, float]) -> list[Prediction]:
    """Predictions from (video, start, end, label_id, score) rows, order kept."""
    return [Prediction(v, s, e, c, p) for v, s, e, c, p in rows]


def test_tiou_hand_values() -> None:
    # [0,10] vs [5,15]: inter 5, union 15 -> 1/3; [10,20]: touching -> 0; [0,10] -> 1;
    # [2,4]: inter 2, union 10 -> 0.2; zero-length [5,5]: inter 0 -> 0.
    candidates = np.array([[5, 15], [10, 20], [0, 10], [2, 4], [5, 5]], float)
    np.testing.assert_allclose(
        segment_tiou(np.array([0.0, 10.0]), candidates), [1 / 3, 0, 1, 0.2, 0]
    )
    matrix = tiou_matrix(np.array([[0.0, 10.0], [5.0, 15.0]]), candidates)
    assert matrix.shape == (2, 5)
    np.testing.assert_allclose(matrix[1], [1, 0.5 / 1.5 * 1.0, 1 / 3, 0, 0])


def test_presets() -> None:
    np.testing.assert_array_equal(
        TIOU_PRESETS["unav100"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    )
    np.testing.assert_array_equal(TIOU_PRESETS["thumos14"], [0.3, 0.4, 0.5, 0.6, 0.7])
    assert len(TIOU_PRESETS["activitynet"]) == 10
    assert TIOU_PRESETS["activitynet"][-1] == 0.95
    np.testing.assert_array_equal(TIOU_PRESETS["epic_kitchens"], [0.1, 0.2, 0.3, 0.4, 0.5])


def test_single_perfect_prediction() -> None:
    gt = make_gt({"a": [(0, 10, 0)]})
    metrics = evaluate_detection(gt, preds(("a", 0, 10, 0, 0.9)), TIOU_PRESETS["unav100"])
    np.testing.assert_array_equal(metrics.map_per_tiou, np.ones(9))
    assert metrics.average_map == 1.0
    np.testing.assert_array_equal(metrics.recall_1x, np.ones(9))


def test_tp_then_fp_versus_fp_then_tp() -> None:
    gt = make_gt({"a": [(0, 10, 0)]})
    # TP (0.9) then FP (0.8): precision [1, 1/2], recall [1, 1] -> AP = 1 * 1 = 1.
    first = evaluate_detection(gt, preds(("a", 0, 10, 0, 0.9), ("a", 20, 30, 0, 0.8)), [0.5])
    assert first.map_per_tiou[0] == pytest.approx(1.0)
    # FP (0.9) then TP (0.8): precision [0, 1/2], recall [0, 1]; envelope at recall 1 is 1/2
    # -> AP = (1 - 0) * 1/2 = 0.5.
    second = evaluate_detection(gt, preds(("a", 20, 30, 0, 0.9), ("a", 0, 10, 0, 0.8)), [0.5])
    assert second.map_per_tiou[0] == pytest.approx(0.5)


def test_duplicate_is_false_positive() -> None:
    gt = make_gt({"a": [(0, 10, 0), (20, 30, 0)]})
    # 0.9 [0,10] TP (GT 0); 0.8 [0,10] duplicate: GT 0 taken, GT 1 tIoU 0 -> FP;
    # 0.7 [20,30] TP. tp [1,0,1]: precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]
    # -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    p = preds(("a", 0, 10, 0, 0.9), ("a", 0, 10, 0, 0.8), ("a", 20, 30, 0, 0.7))
    metrics = evaluate_detection(gt, p, [0.5])
    assert metrics.map_per_tiou[0] == pytest.approx(5 / 6)


def test_score_ties_keep_input_order() -> None:
    gt = make_gt({"a": [(0, 10, 0)]})
    hit, miss = ("a", 0, 10, 0, 0.5), ("a", 40, 50, 0, 0.5)
    # Equal scores: the stable sort keeps input order. Hit first: TP, FP -> AP 1.
    assert evaluate_detection(gt, preds(hit, miss), [0.5]).average_map == pytest.approx(1.0)
    # Miss first: FP, TP -> AP 0.5 (as in test_tp_then_fp_versus_fp_then_tp).
    assert evaluate_detection(gt, preds(miss, hit), [0.5]).average_map == pytest.approx(0.5)


def test_class_without_predictions_scores_zero_and_unknown_class_ignored() -> None:
    gt = make_gt({"a": [(0, 10, 0), (20, 30, 1)]})
    # dog: perfect -> AP 1; cat: no prediction -> AP 0; mAP = (1 + 0) / 2 = 0.5.
    only_dog = preds(("a", 0, 10, 0, 0.9))
    metrics = evaluate_detection(gt, only_dog, [0.5])
    assert metrics.class_names == ("dog", "cat")
    np.testing.assert_allclose(metrics.ap_per_class, [[1.0], [0.0]])
    assert metrics.average_map == pytest.approx(0.5)
    # bird has no ground truth: its predictions (even high-scoring) change nothing.
    with_bird = [*only_dog, *preds(("a", 0, 10, 2, 0.99), ("a", 50, 60, 2, 0.95))]
    again = evaluate_detection(gt, with_bird, [0.5])
    assert again.class_names == ("dog", "cat")
    np.testing.assert_allclose(again.ap_per_class, metrics.ap_per_class)


def test_prediction_flips_from_tp_to_fp_with_threshold() -> None:
    gt = make_gt({"a": [(0, 10, 0)]})
    # [0,6] vs [0,10]: inter 6, union 10 -> tIoU 0.6 exactly; TP at 0.5 and 0.6 (>=), FP at 0.7.
    metrics = evaluate_detection(gt, preds(("a", 0, 6, 0, 0.9)), [0.5, 0.6, 0.7])
    np.testing.assert_allclose(metrics.map_per_tiou, [1.0, 1.0, 0.0])
    assert metrics.average_map == pytest.approx(2 / 3)


def test_envelope_lifts_precision_that_rises_later() -> None:
    gt = make_gt({"a": [(0, 10, 0), (20, 30, 0), (40, 50, 0)]})
    # TP, FP, TP, TP: precision [1, 1/2, 2/3, 3/4], recall [1/3, 1/3, 2/3, 1].
    # Envelope [1, 3/4, 3/4, 3/4] -> AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6
    # (without the envelope it would be 1/3 * (1 + 2/3 + 3/4) = 29/36).
    p = preds(
        ("a", 0, 10, 0, 0.9), ("a", 60, 70, 0, 0.8), ("a", 20, 30, 0, 0.7), ("a", 40, 50, 0, 0.6)
    )
    assert evaluate_detection(gt, p, [0.5]).average_map == pytest.approx(5 / 6)
    # The same curve through the public helper.
    ap = interpolated_average_precision(
        np.array([[1, 1 / 2, 2 / 3, 3 / 4]]), np.array([[1 / 3, 1 / 3, 2 / 3, 1]])
    )
    np.testing.assert_allclose(ap, [5 / 6])


def test_empty_predictions_score_zero() -> None:
    gt = make_gt({"a": [(0, 10, 0), (20, 30, 1)]})
    metrics = evaluate_detection(gt, [], TIOU_PRESETS["thumos14"])
    np.testing.assert_array_equal(metrics.map_per_tiou, np.zeros(5))
    np.testing.assert_array_equal(metrics.ap_per_class, np.zeros((2, 5)))
    np.testing.assert_array_equal(metrics.recall_5x, np.zeros(5))
    assert metrics.average_map == 0.0 and metrics.num_predictions == 0


def test_multiple_videos_do_not_mix() -> None:
    gt = make_gt({"a": [(0, 10, 0)], "b": [(20, 30, 0)]})
    # 0.9 b [0,10]: FP (it would match a's GT if videos were mixed); 0.8 a [0,10] TP;
    # 0.7 b [20,30] TP. precision [0, 1/2, 2/3], recall [0, 1/2, 1]; envelope 2/3 up to
    # recall 1 -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3.
    p = preds(("b", 0, 10, 0, 0.9), ("a", 0, 10, 0, 0.8), ("b", 20, 30, 0, 0.7))
    assert evaluate_detection(gt, p, [0.5]).average_map == pytest.approx(2 / 3)


def test_greedy_match_takes_highest_tiou_free_gt() -> None:
    gt = make_gt({"a": [(0, 10, 0), (4, 14, 0)]})
    # P1 [3,13]: tIoU 7/13 with GT0, 9/11 with GT1 -> takes GT1 (highest) at 0.5.
    # P2 [0,9]: GT0 tIoU 0.9 -> TP. tp [1,1] -> AP 1 at 0.5.
    # At 0.85 P1 reaches neither (0.818 < 0.85): FP; P2 TP on GT0 -> precision [0, 1/2],
    # recall [0, 1/2] -> AP = 1/2 * 1/2 = 1/4.
    p = preds(("a", 3, 13, 0, 0.9), ("a", 0, 9, 0, 0.8))
    metrics = evaluate_detection(gt, p, [0.5, 0.85])
    np.testing.assert_allclose(metrics.map_per_tiou, [1.0, 0.25])
    # If P1 had taken GT0 instead, P2 (tIoU 5/14 with GT1) would be a FP at 0.5.


def test_competing_predictions_match_at_exactly_the_threshold() -> None:
    # GT0 [0,10] and GT1 [0,6] overlap, so each prediction has two candidate GT events (the
    # matching that chooses between them). P1 [0,6]: tIoU 1 with GT1, 6/10 = 0.6 exactly with
    # GT0 (0.6 is the double nearest 6/10 either way); P2, the same segment, lower score.
    gt = make_gt({"a": [(0, 10, 0), (0, 6, 0)]})
    p = preds(("a", 0, 6, 0, 0.9), ("a", 0, 6, 0, 0.8))
    # At 0.6: P1 takes GT1 (highest tIoU), P2 takes GT0 at tIoU 0.6 >= 0.6 -> tp [1, 1], AP 1
    # (with ">" P2 would be a FP: AP 1/2). At 0.7: P2 reaches nothing free -> AP 1/2.
    metrics = evaluate_detection(gt, p, [0.6, 0.7])
    np.testing.assert_allclose(metrics.map_per_tiou, [1.0, 0.5])
    # Top-1x recall (2 GT -> the 2 best predictions): GT0's best tIoU is 0.6, recalled at 0.6
    # (>=) but not at 0.7; GT1 at both.
    np.testing.assert_allclose(metrics.recall_1x, [1.0, 0.5])
    # The same through the single-class entry point.
    ground_truth = {"a": np.array([[0.0, 10.0], [0.0, 6.0]])}
    np.testing.assert_allclose(
        average_precision(ground_truth, Predictions.from_records(p), [0.6, 0.7]), [1.0, 0.5]
    )


def test_every_group_is_matched_whatever_the_groups_before_it() -> None:
    # Groups (class, video) in key order: dog without predictions (AP 0), cat whose two GT
    # events are both matched before its last prediction (the matching stops early there), then
    # bird. Neither may end the matching of the groups after it.
    gt = make_gt({"a": [(0, 10, 0), (0, 10, 1), (0, 6, 1), (20, 30, 2)]})
    p = preds(
        ("a", 0, 6, 1, 0.9),  # cat: GT [0,6] (tIoU 1)
        ("a", 0, 6, 1, 0.8),  # cat: GT [0,10] (tIoU 0.6)
        ("a", 50, 60, 1, 0.7),  # cat: FP, after both GT events are matched
        ("a", 20, 30, 2, 0.6),  # bird: TP
    )
    metrics = evaluate_detection(gt, p, [0.5])
    np.testing.assert_allclose(metrics.ap_per_class, [[0.0], [1.0], [1.0]])


def test_recall_at_1x_and_5x() -> None:
    gt = make_gt({"a": [(0, 10, 0), (20, 30, 0), (40, 50, 1)]})
    p = preds(
        ("a", 20, 30, 1, 0.95),  # cat but on a dog event: class-aware, does not count
        ("a", 0, 10, 0, 0.9),
        ("a", 0, 10, 0, 0.8),  # duplicate
        ("a", 20, 30, 0, 0.7),
        ("a", 40, 44, 1, 0.6),  # cat event: tIoU 4/10 = 0.4
    )
    metrics = evaluate_detection(gt, p, [0.3, 0.5])
    # dog, 2 GT: top 1x = 2 highest dog predictions = [0,10] twice -> 1 of 2 recalled (0.5 at
    # both thresholds); top 5x = all 3 -> 2 of 2 (1.0).
    # cat, 1 GT: top 1x = its best cat prediction [20,30] (tIoU 0) -> 0; top 5x adds [40,44]
    # (tIoU 0.4) -> 1 at 0.3, 0 at 0.5.
    # mean over classes: 1x [(0.5+0)/2, (0.5+0)/2]; 5x [(1+1)/2, (1+0)/2].
    np.testing.assert_allclose(metrics.recall_1x, [0.25, 0.25])
    np.testing.assert_allclose(metrics.recall_5x, [1.0, 0.5])


def test_invalid_predictions_raise_naming_the_video() -> None:
    gt = make_gt({"a": [(0, 10, 0)]})
    with pytest.raises(ValueError, match=r"'a'.*NaN"):
        evaluate_detection(gt, preds(("a", 0, 10, 0, math.nan)), [0.5])
    with pytest.raises(ValueError, match=r"'a'.*NaN or infinite"):
        evaluate_detection(gt, preds(("a", 0, math.inf, 0, 0.5)), [0.5])
    with pytest.raises(ValueError, match=r"'a'.*ends before it starts"):
        evaluate_detection(gt, preds(("a", 5, 1, 0, 0.5)), [0.5])
    with pytest.raises(ValueError, match=r"'a'.*label_id 7"):
        evaluate_detection(gt, preds(("a", 0, 10, 7, 0.5)), [0.5])
    with pytest.raises(ValueError, match=r"label_id 3, outside 0\.\.2"):  # 3 labels: ids 0..2
        evaluate_detection(gt, preds(("a", 0, 10, 3, 0.5)), [0.5])
    with pytest.raises(ValueError, match="'zz'"):
        evaluate_detection(gt, preds(("zz", 0, 10, 0, 0.5)), [0.5])


def test_unknown_videos_as_false_positives_when_allowed() -> None:
    gt = make_gt({"a": [(0, 10, 0)]})
    # FP on an unknown video (0.9) then TP (0.8) -> AP 0.5.
    p = preds(("zz", 0, 10, 0, 0.9), ("a", 0, 10, 0, 0.8))
    metrics = evaluate_detection(gt, p, [0.5], allow_unknown_videos=True)
    assert metrics.average_map == pytest.approx(0.5)


def test_average_precision_single_class() -> None:
    ground_truth = {"a": np.array([[0.0, 10.0], [20.0, 30.0]]), "b": np.array([[5.0, 6.0]])}
    p = Predictions.from_records(
        preds(("a", 0, 10, 0, 0.9), ("a", 0, 10, 0, 0.8), ("a", 20, 30, 0, 0.7))
    )
    # tp [1,0,1] over 3 GT: precision [1, 1/2, 2/3], recall [1/3, 1/3, 2/3]
    # -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    np.testing.assert_allclose(average_precision(ground_truth, p, [0.5, 0.9]), [5 / 9, 5 / 9])


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / max((b[1] - b[0]) + (a[1] - a[0]) - inter, 1e-8)


def reference_evaluation(
    gt: list[tuple[str, int, float, float]],
    pred: list[tuple[str, int, float, float, float]],
    thresholds: list[float],
) -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """Plain-Python ActivityNet loop: per class AP rows and per class 1x / 5x recall rows."""
    aps, recall_1x, recall_5x = [], [], []
    for c in sorted({g[1] for g in gt}):
        gt_c = [g for g in gt if g[1] == c]
        pred_c = sorted([p for p in pred if p[1] == c], key=lambda p: -p[4])
        ap_row = []
        for thr in thresholds:
            locked = [False] * len(gt_c)
            tp, fp, precision, recall = 0, 0, [], []
            for p in pred_c:
                options = [(_tiou(p[2:4], g[2:4]), j) for j, g in enumerate(gt_c) if g[0] == p[0]]
                options.sort(key=lambda o: -o[0])
                hit = False
                for value, j in options:
                    if value < thr:
                        break
                    if locked[j]:
                        continue
                    locked[j], hit = True, True
                    break
                tp, fp = tp + hit, fp + (not hit)
                precision.append(tp / (tp + fp))
                recall.append(tp / len(gt_c))
            mprec, mrec = [0.0, *precision, 0.0], [0.0, *recall, 1.0]
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            ap_row.append(
                sum(
                    (mrec[i] - mrec[i - 1]) * mprec[i]
                    for i in range(1, len(mrec))
                    if mrec[i] != mrec[i - 1]
                )
            )
        aps.append(ap_row)
        for k, rows in ((1, recall_1x), (5, recall_5x)):
            row = []
            for thr in thresholds:
                found = 0
                for vid in {g[0] for g in gt_c}:
                    gt_v = [g for g in gt_c if g[0] == vid]
                    top = [p for p in pred_c if p[0] == vid][: k * len(gt_v)]
                    found += sum(any(_tiou(p[2:4], g[2:4]) >= thr for p in top) for g in gt_v)
                row.append(found / len(gt_c))
            rows.append(row)
    return aps, recall_1x, recall_5x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_plain_python_reference_on_random_case(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt_rows, pred_rows, events = [], [], {}
    for v in range(12):
        vid = f"v{v}"
        events[vid] = []
        for _ in range(int(rng.integers(1, 5))):
            # Clustered events so that same-class events overlap and predictions compete.
            start = float(rng.uniform(0, 30))
            end = start + float(rng.uniform(2, 15))
            c = int(rng.integers(3))
            events[vid].append((start, end, c))
            gt_rows.append((vid, c, start, end))
            for _ in range(int(rng.integers(0, 6))):
                s, e = sorted((start + rng.normal(0, 2), end + rng.normal(0, 2)))
                pred_rows.append((vid, c, float(s), float(e), float(rng.random())))
        for _ in range(8):
            s = float(rng.uniform(0, 40))
            pred_rows.append(
                (vid, int(rng.integers(3)), s, s + float(rng.uniform(1, 10)), float(rng.random()))
            )
    order = rng.permutation(len(pred_rows))
    pred_rows = [pred_rows[i] for i in order]
    thresholds = TIOU_PRESETS["unav100"].tolist()
    metrics = evaluate_detection(
        make_gt(events), preds(*[(v, s, e, c, p) for v, c, s, e, p in pred_rows]), thresholds
    )
    aps, recall_1x, recall_5x = reference_evaluation(gt_rows, pred_rows, thresholds)
    np.testing.assert_allclose(metrics.ap_per_class, aps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics.map_per_tiou, np.mean(aps, axis=0), atol=1e-12)
    np.testing.assert_allclose(metrics.recall_1x, np.mean(recall_1x, axis=0), atol=1e-12)
    np.testing.assert_allclose(metrics.recall_5x, np.mean(recall_5x, axis=0), atol=1e-12)
    assert 0 < metrics.average_map < 1


def test_results_json_round_trip(tmp_path) -> None:
    gt = make_gt({"a": [(0, 10, 0)], "b": [(20, 30, 1)]})
    original = Predictions.from_records(
        preds(("a", 0, 10, 0, 0.9), ("a", 50, 60, 2, 0.1), ("b", 19.5, 30.25, 1, 0.4))
    )
    path = tmp_path / "results.json"
    write_results(path, original.by_video(), LABELS)
    payload = json.loads(path.read_text())
    assert payload["external_data"] == {} and "version" in payload
    assert payload["results"]["b"] == [{"segment": [19.5, 30.25], "label": "cat", "score": 0.4}]
    restored = read_results(path, LABELS)
    np.testing.assert_array_equal(restored.video_ids, original.video_ids)
    np.testing.assert_array_equal(restored.segments, original.segments)
    np.testing.assert_array_equal(restored.label_ids, original.label_ids)
    np.testing.assert_array_equal(restored.scores, original.scores)
    before = evaluate_detection(gt, original, [0.5]).to_dict()
    after = evaluate_detection(gt, restored, [0.5]).to_dict()
    assert before == after and before["mAP"]["0.5"] == pytest.approx(1.0)
    json.dumps(before)  # the metrics dict is plain JSON


def test_read_results_refuses_unknown_label(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"results": {"a": [{"segment": [0, 1], "label": "yak", "score": 0.5}]}})
    )
    with pytest.raises(ValueError, match=r"bad\.json.*'a'.*prediction 0"):
        read_results(path, LABELS)


@pytest.mark.skipif(not UNAV100.exists(), reason=f"{UNAV100} absent (needs ../shared/datasets)")
def test_real_unav100_test_split() -> None:
    test = load_annotations(UNAV100).subset("test")
    events = [(v.video_id, e) for v in test.videos.values() for e in v.events]
    exact = [Prediction(vid, e.start_s, e.end_s, e.label_id, 1.0) for vid, e in events]
    # The ground truth itself: every prediction is a TP at every threshold -> mAP 1, recall 1.
    metrics = evaluate_detection(test, exact, TIOU_PRESETS["unav100"])
    assert metrics.num_ground_truth == len(events) and len(metrics.class_names) == 100
    np.testing.assert_allclose(metrics.map_per_tiou, np.ones(9))
    np.testing.assert_allclose(metrics.recall_1x, np.ones(9))
    # Each event shortened to 55 % of its length from its start: tIoU 0.55 with its own event,
    # so a TP up to 0.5 and a FP above (measured: no other event of its class in its video
    # overlaps it by 0.6 or more), hence mAP and recall 1 then 0.
    short = [
        Prediction(vid, e.start_s, e.start_s + 0.55 * (e.end_s - e.start_s), e.label_id, 1.0)
        for vid, e in events
    ]
    metrics = evaluate_detection(test, short, TIOU_PRESETS["unav100"])
    np.testing.assert_allclose(metrics.map_per_tiou, [1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(metrics.recall_5x, [1, 1, 1, 1, 1, 0, 0, 0, 0])
