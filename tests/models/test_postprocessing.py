"""Soft-NMS, hard NMS, score voting, decoding: hand-computed cases.

Three segments of one class: A = (0, 10) 0.9, B = (2, 10) 0.85, C = (0, 4) 0.5.
IoU(A, B) = 8 / 10 = 0.8, IoU(A, C) = 4 / 10 = 0.4, IoU(B, C) = 2 / 10 = 0.2.
"""

import math

import pytest
import torch

from models.postprocessing import (
    PostProcessingConfig,
    decode_candidates,
    hard_nms_1d,
    nms_per_class,
    score_voting,
    segment_iou,
    soft_nms_1d,
)

SEGMENTS = torch.tensor([[0.0, 10.0], [2.0, 10.0], [0.0, 4.0]])
SCORES = torch.tensor([0.9, 0.85, 0.5])


def test_segment_iou() -> None:
    iou = segment_iou(SEGMENTS, SEGMENTS)
    expected = torch.tensor([[1.0, 0.8, 0.4], [0.8, 1.0, 0.2], [0.4, 0.2, 1.0]])
    assert torch.allclose(iou, expected)


def test_gaussian_soft_nms_hand_decays() -> None:
    keep, scores = soft_nms_1d(SEGMENTS, SCORES, "gaussian", sigma=0.5, min_score=0.001)
    # after A: B = 0.85 e^{-0.64/0.5}, C = 0.5 e^{-0.16/0.5}; C now beats B and is taken,
    # then B decays again by e^{-0.04/0.5}
    b_after_a = 0.85 * math.exp(-0.64 / 0.5)
    c_after_a = 0.5 * math.exp(-0.16 / 0.5)
    assert keep.tolist() == [0, 2, 1]
    expected = [0.9, c_after_a, b_after_a * math.exp(-0.04 / 0.5)]
    assert scores.tolist() == pytest.approx(expected, rel=1e-5)


def test_linear_soft_nms_hand_decays() -> None:
    keep, scores = soft_nms_1d(SEGMENTS, SCORES, "linear", iou_threshold=0.3)
    # after A: B = 0.85 (1 - 0.8) = 0.17, C = 0.5 (1 - 0.4) = 0.3; C taken; IoU(B, C) 0.2 < 0.3
    assert keep.tolist() == [0, 2, 1]
    assert scores.tolist() == pytest.approx([0.9, 0.3, 0.17], rel=1e-5)


def test_linear_soft_nms_decays_from_exactly_the_threshold() -> None:
    # IoU((0, 8), (0, 4)) = 4 / 8 = 0.5 exactly (in float32 too): at iou_threshold 0.5 the
    # decay applies (IoU >= threshold), 0.8 (1 - 0.5) = 0.4; just above, it does not.
    segments = torch.tensor([[0.0, 8.0], [0.0, 4.0]])
    scores = torch.tensor([0.9, 0.8])
    _, at = soft_nms_1d(segments, scores, "linear", iou_threshold=0.5)
    assert at.tolist() == pytest.approx([0.9, 0.4])
    _, above = soft_nms_1d(segments, scores, "linear", iou_threshold=0.5 + 1e-6)
    assert above.tolist() == pytest.approx([0.9, 0.8])
    # A score decayed to exactly min_score stays (dropped only below it).
    keep, _ = soft_nms_1d(segments, scores, "linear", iou_threshold=0.5, min_score=0.4)
    assert keep.tolist() == [0, 1]


def test_soft_nms_on_shifted_short_and_disjoint_segments() -> None:
    # The hand case of test_gaussian_soft_nms_hand_decays shifted by 7 and scaled by 0.05 (IoU
    # depends on neither), then a disjoint segment D: IoU 0, so never decayed. Each candidate is
    # selected once: A kept in play (decayed by itself, C and B to 0.9 e^{-2 - 0.32 - 1.28}, about
    # 0.025) would beat D's 0.01.
    segments = torch.cat([SEGMENTS * 0.05 + 7.0, torch.tensor([[20.0, 20.3]])])
    scores = torch.cat([SCORES, torch.tensor([0.01])])
    keep, new_scores = soft_nms_1d(segments, scores, "gaussian", sigma=0.5)
    b_after_a = 0.85 * math.exp(-0.64 / 0.5)
    c_after_a = 0.5 * math.exp(-0.16 / 0.5)
    assert keep.tolist() == [0, 2, 1, 3]
    expected = [0.9, c_after_a, b_after_a * math.exp(-0.04 / 0.5), 0.01]
    assert new_scores.tolist() == pytest.approx(expected, rel=1e-5)
    # The defaults are Gaussian with sigma 0.5, and linear decay from IoU 0.1.
    assert soft_nms_1d(segments, scores)[1].tolist() == pytest.approx(expected, rel=1e-5)
    _, linear = soft_nms_1d(segments, scores, "linear")  # C: 0.5 (1 - 0.4); B: 0.85 (1 - 0.8)
    assert linear.tolist() == pytest.approx([0.9, 0.3, 0.17 * 0.8, 0.01], rel=1e-5)
    # A candidate scoring exactly min_score is kept.
    assert soft_nms_1d(segments, scores, min_score=0.01)[0].tolist() == [0, 2, 1, 3]


def test_soft_nms_min_score_and_max_keep() -> None:
    keep, scores = soft_nms_1d(SEGMENTS, SCORES, "linear", iou_threshold=0.3, min_score=0.2)
    assert keep.tolist() == [0, 2]  # B fell to 0.17 < 0.2
    keep, _ = soft_nms_1d(SEGMENTS, SCORES, "gaussian", max_keep=1)
    assert keep.tolist() == [0]
    keep, scores = soft_nms_1d(SEGMENTS[:0], SCORES[:0])
    assert keep.numel() == 0 and scores.numel() == 0


def test_hard_nms_via_boxes() -> None:
    same_class = torch.zeros(3, dtype=torch.long)
    assert hard_nms_1d(SEGMENTS, SCORES, same_class, 0.3).tolist() == [0]
    assert hard_nms_1d(SEGMENTS, SCORES, same_class, 0.5).tolist() == [0, 2]  # 0.4 < 0.5
    other_class = torch.tensor([0, 1, 0])
    assert hard_nms_1d(SEGMENTS, SCORES, other_class, 0.3).tolist() == [0, 1]


def test_score_voting_hand_case() -> None:
    refined = score_voting(SEGMENTS[:1], SEGMENTS, SCORES, iou_threshold=0.5)
    # voters A (weight 0.9 * 1) and B (0.85 * 0.8 = 0.68); C (IoU 0.4) does not vote
    start = (0.9 * 0.0 + 0.68 * 2.0) / (0.9 + 0.68)
    assert refined.tolist()[0] == pytest.approx([start, 10.0], rel=1e-6)
    lonely = score_voting(torch.tensor([[50.0, 60.0]]), SEGMENTS, SCORES, 0.5)
    assert lonely.tolist() == [[50.0, 60.0]]


def test_nms_per_class_sorts_caps_and_filters() -> None:
    segments = torch.cat([SEGMENTS, SEGMENTS + 20])
    scores = torch.cat([SCORES, SCORES * 0.5])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    cfg = PostProcessingConfig(nms="soft", max_detections=4)
    _, out_scores, out_labels = nms_per_class(segments, scores, labels, cfg)
    assert out_scores.shape == (4,) and torch.all(out_scores[:-1] >= out_scores[1:])
    assert out_labels.tolist()[:2] == [0, 1]  # 0.9, then 0.45 beats 0.363
    hard = PostProcessingConfig(nms="hard", iou_threshold=0.3, min_score=0.3)
    _, hard_scores, hard_labels = nms_per_class(segments, scores, labels, hard)
    assert hard_scores.tolist() == pytest.approx([0.9, 0.45]) and hard_labels.tolist() == [0, 1]
    voted = PostProcessingConfig(nms="hard", iou_threshold=0.3, voting_iou_threshold=0.5)
    voted_segments, _, _ = nms_per_class(SEGMENTS, SCORES, torch.zeros(3, dtype=torch.long), voted)
    assert voted_segments[0, 0].item() == pytest.approx(1.36 / 1.58, rel=1e-6)


def test_decode_candidates_thresholds_clamps_and_filters() -> None:
    cfg = PostProcessingConfig(pre_nms_score_threshold=0.5, pre_nms_topk=1, min_duration=0.5)
    logits = [torch.tensor([[math.log(9.0), -5.0], [math.log(4.0), 0.1]])]  # probs .9, .8, .52
    offsets = [torch.tensor([[1.0, 2.0], [0.1, 0.1]])]
    points = [torch.tensor([[2.0, 0.0, 8.0, 2.0], [4.0, 0.0, 8.0, 2.0]])]
    mask = [torch.tensor([True, True])]
    segments, scores, labels = decode_candidates(logits, offsets, mask, points, 5.0, cfg)
    # top-1 of the level: point t=2 (stride 2), class 0 -> (2 - 2, 2 + 4) clamped to the
    # outer cell edges of 5 valid snippets, (-0.5, 4.5)
    assert segments.tolist() == [[0.0, 4.5]] and labels.tolist() == [0]
    assert scores.tolist() == pytest.approx([0.9])
    # a boundary margin of 1 cell lets it reach 5.5
    margin = PostProcessingConfig(
        pre_nms_score_threshold=0.5, pre_nms_topk=1, min_duration=0.5, boundary_margin=1.0
    )
    segments, _, _ = decode_candidates(logits, offsets, mask, points, 5.0, margin)
    assert segments.tolist() == [[0.0, 5.5]]
    wide = PostProcessingConfig(pre_nms_score_threshold=0.5, min_duration=0.5)
    segments, scores, labels = decode_candidates(logits, offsets, mask, points, 5.0, wide)
    # the point at t=4 decodes to (3.8, 4.2): 0.4 long, dropped by min_duration
    assert labels.tolist() == [0] and segments.shape == (1, 2)
    masked = decode_candidates(logits, offsets, [torch.tensor([True, False])], points, 5.0, wide)
    assert masked[0].shape == (1, 2)


def test_config_refuses_unknown_keys_and_values() -> None:
    with pytest.raises(
        ValueError, match=r"unknown key 'postprocessing\.nms_sigma'; valid keys here: .*, nms, "
    ):
        PostProcessingConfig.from_dict({"nms_sigma": 0.4})
    with pytest.raises(ValueError, match=r"unknown key 'runs\.a\.model\.postprocessing\.top'"):
        PostProcessingConfig.from_dict({"top": 4}, "runs.a.model.postprocessing")
    with pytest.raises(ValueError, match="soft, hard or none"):
        PostProcessingConfig.from_dict({"nms": "fast"})
    assert PostProcessingConfig.from_dict(None) == PostProcessingConfig()


def test_soft_nms_classes_do_not_interact() -> None:
    torch.manual_seed(0)
    starts = torch.rand(40) * 50
    segments = torch.stack([starts, starts + 1 + torch.rand(40) * 10], dim=1)
    scores = torch.rand(40)
    labels = torch.randint(0, 3, (40,))
    keep, new_scores = soft_nms_1d(segments, scores, max_keep=6, labels=labels)
    for label in range(3):
        members = torch.nonzero(labels == label).flatten()
        alone_keep, alone_scores = soft_nms_1d(segments[members], scores[members], max_keep=6)
        in_class = labels[keep] == label
        assert keep[in_class].tolist() == members[alone_keep].tolist()
        assert torch.allclose(new_scores[in_class], alone_scores)
