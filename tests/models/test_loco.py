"""LoCo (arXiv 2409.07967): the detector end to end, class-aware targets and losses (Eq. 9).
CDP and the pyramid: ``test_loco_cdp.py``; LCC: ``test_loco_lcc.py``."""

import math

import pytest
import torch

from models import build_detector
from models.detector_config import HeadConfig
from models.loco import LoCoDetector, LoCoOutput
from models.loco.config import LCCConfig, LoCoEncoderConfig, LoCoPyramidConfig
from models.loco.heads import assign_class_aware
from models.points import make_points
from models.postprocessing import PostProcessingConfig, decode_candidates

DIMS = {"audio": 6, "visual": 10}
TINY = {
    "embed_dim": 16,
    "head_dim": 16,
    "num_heads": 2,
    "num_pyramid_blocks": 3,
    "local_window": 5,
    "cdp_window": 4,
    "path_drop": 0.0,
}


def _detector(**overrides: object) -> LoCoDetector:
    cfg = {"name": "loco", "input_dims": DIMS, "num_classes": 3, **TINY, **overrides}
    return build_detector(cfg)


def _block_diag(*blocks: list[list[float]]) -> torch.Tensor:
    return torch.block_diag(*(torch.tensor(b) for b in blocks))


def test_class_aware_targets_keep_overlapping_events_of_different_classes() -> None:
    points = make_points([16], [1], [(0.0, math.inf)])
    segments = torch.tensor([[2.5, 9.5], [5.5, 7.5]])
    cls_targets, reg_targets = assign_class_aware(points, segments, torch.tensor([0, 2]), 3, None)
    # point 6 lies in both: positive for class 0 and class 2, each with its own event
    assert cls_targets[6].tolist() == [1.0, 0.0, 1.0]
    assert reg_targets[6, 0].tolist() == [3.5, 3.5] and reg_targets[6, 2].tolist() == [0.5, 1.5]
    assert cls_targets[:, 0].nonzero().flatten().tolist() == list(range(3, 10))
    assert cls_targets[:, 2].nonzero().flatten().tolist() == [6, 7]


def test_regression_loss_uses_the_ground_truth_class_offsets() -> None:
    detector = _detector(
        num_pyramid_blocks=0, lcc_weight=0.0, center_sample_radius=None, init_loss_normalizer=1.0
    )
    detector.eval()  # the loss normaliser stays 1
    points = make_points([16], [1], [(0.0, math.inf)])
    segments, labels = torch.tensor([[2.5, 9.5], [5.5, 7.5]]), torch.tensor([0, 2])
    _, reg_targets = assign_class_aware(points, segments, labels, 3, None)
    right = reg_targets.clamp(min=0.0)
    right[:, 1] = 5.0  # class 1 has no event: whatever it predicts is not regressed

    def reg_loss(offsets: torch.Tensor) -> float:
        output = LoCoOutput(
            cls_logits=[torch.zeros(1, 16, 3)],
            offsets=[offsets[None]],
            masks=[torch.ones(1, 16, dtype=torch.bool)],
            points=points,
        )
        return detector.loss(output, [segments], [labels])["reg"].item()

    assert reg_loss(right) == pytest.approx(0.0, abs=1e-6)
    # point 6 is positive for both classes; exchange their offsets there: class 0 then
    # predicts (0.5, 1.5) for its target (3.5, 3.5): segments (5.5, 7.5) in (2.5, 9.5),
    # IoU 2/7, hull = union, GIoU loss 5/7; class 2 the reverse, 5/7 too
    swapped = right.clone()
    swapped[6, 0], swapped[6, 2] = right[6, 2], right[6, 0]
    assert reg_loss(swapped) == pytest.approx(10 / 7, abs=1e-5)


def test_loss_normaliser_counts_positive_point_class_pairs() -> None:
    detector = _detector(
        num_pyramid_blocks=0, lcc_weight=0.0, center_sample_radius=None, init_loss_normalizer=1.0
    )
    detector.train()
    output = LoCoOutput(
        cls_logits=[torch.zeros(1, 16, 3)],
        offsets=[torch.ones(1, 16, 3, 2)],
        masks=[torch.ones(1, 16, dtype=torch.bool)],
        points=make_points([16], [1], [(0.0, math.inf)]),
    )
    segments, labels = torch.tensor([[2.5, 9.5], [5.5, 7.5]]), torch.tensor([0, 2])
    losses = detector.loss(output, [segments], [labels])
    # class 0: t = 3..9 (7 pairs), class 2: t = 6, 7 (2 pairs); EMA 0.9 * 1 + 0.1 * 9
    assert detector.loss_normalizer.item() == pytest.approx(1.8)
    assert list(losses) == ["cls", "reg", "lcc", "loss"] and losses["lcc"].item() == 0.0


def test_constructor_takes_config_groups_like_the_flat_config() -> None:
    torch.manual_seed(0)
    flat = _detector(lcc_target="smoothed", pyramid_downsample="depthwise_conv")
    torch.manual_seed(0)
    grouped = LoCoDetector(
        input_dims=DIMS,
        num_classes=3,
        encoder=LoCoEncoderConfig(embed_dim=16, num_heads=2, local_window=5, path_drop=0.0),
        pyramid=LoCoPyramidConfig(
            num_pyramid_blocks=3, cdp_window=4, pyramid_downsample="depthwise_conv"
        ),
        lcc=LCCConfig(lcc_target="smoothed"),
        head=HeadConfig(head_dim=16),
    )
    assert grouped.loss_config.reg_loss == "giou" and grouped.lcc_weight == 0.1
    assert list(grouped.state_dict()) == list(flat.state_dict())
    for a, b in zip(grouped.state_dict().values(), flat.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="embed_dim must be even"):
        LoCoEncoderConfig(embed_dim=15)
    with pytest.raises(ValueError, match="lcc_sigma must be > 0"):
        LCCConfig(lcc_sigma=0.0)
    with pytest.raises(ValueError, match="pyramid_downsample must be one of"):
        LoCoPyramidConfig(pyramid_downsample="stride")
    with pytest.raises(ValueError, match="lcc_loss_form must be one of"):
        LCCConfig(lcc_loss_form="infonce")


def test_decoding_reads_the_candidate_class_offsets() -> None:
    logits = torch.full((4, 2), -20.0)
    logits[1, 1] = 3.0  # one candidate: point 1, class 1
    offsets = torch.zeros(4, 2, 2)
    offsets[1, 0] = torch.tensor([0.5, 0.5])
    offsets[1, 1] = torch.tensor([1.0, 2.0])
    points = make_points([4], [1], [(0.0, math.inf)])
    segments, scores, labels = decode_candidates(
        [logits],
        [offsets],
        [torch.ones(4, dtype=torch.bool)],
        [points],
        4.0,
        PostProcessingConfig(),
    )
    assert segments.tolist() == [[0.0, 3.0]] and labels.tolist() == [1]
    assert scores.item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_detector_forward_loss_backward_predict() -> None:
    torch.manual_seed(0)
    detector = _detector()
    assert detector.input_modalities == ("audio", "visual") and detector.max_stride == 8
    detector.train()
    inputs = {m: torch.rand(2, 64, d) for m, d in DIMS.items()}
    mask = torch.arange(64)[None, :] < torch.tensor([[64], [40]])
    output = detector(inputs, mask)
    lengths = [64, 32, 16, 8]
    assert [x.shape for x in output.cls_logits] == [(2, t, 3) for t in lengths]
    assert [x.shape for x in output.offsets] == [(2, t, 3, 2) for t in lengths]
    assert output.audio_embed.shape == (2, 64, 8) and output.points.shape == (120, 4)
    gt_segments = [
        torch.tensor([[1.5, 4.5], [6.5, 12.5], [14.5, 30.5], [20.0, 62.0], [33.5, 35.5]]),
        torch.zeros(0, 2),
    ]
    gt_labels = [torch.tensor([0, 1, 2, 0, 1]), torch.zeros(0, dtype=torch.long)]
    losses = detector.loss(output, gt_segments, gt_labels)
    assert set(losses) == {"cls", "reg", "lcc", "loss"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    total = losses["cls"] + losses["reg"] + 0.1 * losses["lcc"]
    assert losses["loss"].item() == pytest.approx(total.item())
    losses["loss"].backward()
    dead = [n for n, p in detector.named_parameters() if p.grad is None or not p.grad.any()]
    assert dead == []
    detector.eval()
    results = detector.predict(detector(inputs, mask))
    for result, valid in zip(results, (64, 40), strict=True):
        assert 0 < result["segments"].shape[0] <= 500
        assert torch.all(result["scores"][:-1] >= result["scores"][1:])
        assert result["segments"].max() <= valid and result["labels"].max() < 3


def test_defaults_are_the_papers_settings() -> None:
    detector = build_detector({"name": "loco", "input_dims": DIMS, "num_classes": 3})
    assert detector.lcc_weight == 0.1  # Eq. (9): lambda
    assert detector.loss_config.reg_loss == "giou" and detector.loss_config.loss_weight_reg == 1
    assert detector.lcc.target == "learnable_gaussian" and detector.lcc.loss_form == "cross_entropy"
    assert detector.strides == (1, 2, 4, 8, 16, 32)  # downsampling ratio 2, UniAV's 6 levels
    cross = detector.pyramid.audio_layers[0][0]
    assert cross.cross_attention == "cdp" and cross.attn.window_regressor is not None


def test_without_lcc_there_are_no_lcc_parameters_and_the_loss_is_zero() -> None:
    torch.manual_seed(0)
    with_lcc, without = _detector(), _detector(lcc_weight=0.0)
    extra = sum(p.numel() for p in with_lcc.parameters()) - sum(
        p.numel() for p in without.parameters()
    )
    # two 1x1 projections 16 -> 8 (weights and biases), log sigma, log temperature
    assert without.lcc is None and extra == 2 * (16 * 8 + 8) + 2
    inputs = {m: torch.rand(1, 16, d) for m, d in DIMS.items()}
    output = without(inputs, torch.ones(1, 16, dtype=torch.bool))
    assert output.audio_embed is None
    losses = without.loss(output, [torch.tensor([[1.5, 6.5]])], [torch.tensor([1])])
    assert losses["lcc"].item() == 0.0
    assert losses["loss"].item() == pytest.approx((losses["cls"] + losses["reg"]).item())


@pytest.mark.parametrize("variant", ["none", "global", "fixed_window", "cdp"])
def test_detector_outputs_do_not_depend_on_padding(variant: str) -> None:
    torch.manual_seed(0)
    detector = _detector(cross_attention=variant)
    detector.eval()
    inputs = {m: torch.rand(1, 32, d) for m, d in DIMS.items()}
    full = detector(inputs, torch.ones(1, 32, dtype=torch.bool))
    padded_inputs = {m: torch.cat([x, torch.randn_like(x) * 9], 1) for m, x in inputs.items()}
    padded = detector(padded_inputs, torch.arange(64)[None, :] < 32)
    pairs = zip(full.cls_logits + full.offsets, padded.cls_logits + padded.offsets, strict=True)
    for short, long in pairs:
        assert torch.allclose(short, long[:, : short.shape[1]], atol=1e-4)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="cross_attention must be one of"):
        _detector(cross_attention="dense")
    with pytest.raises(ValueError, match="lcc_temperature in"):
        _detector(lcc_temperature=1.0)
    with pytest.raises(ValueError, match="lcc_target must be one of"):
        _detector(lcc_target="uniform")
    with pytest.raises(ValueError, match="lack"):
        build_detector({"name": "loco", "input_dims": {"visual": 4}, "num_classes": 2, **TINY})
