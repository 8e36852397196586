"""LoCo (arXiv 2409.07967): LCC loss and targets, CDP sampling, the detector end to end."""

import math

import pytest
import torch

from models import build_detector
from models.detector_config import HeadConfig
from models.loco import LoCoDetector, LoCoOutput
from models.loco.cdp import WindowCrossAttention, sample_linear, window_sample_positions
from models.loco.config import LCCConfig, LoCoEncoderConfig, LoCoPyramidConfig
from models.loco.heads import assign_class_aware
from models.loco.lcc import LocalityCorrespondence, lcc_loss, lcc_targets
from models.loco.pyramid import CrossModalLayer
from models.points import make_points
from models.postprocessing import PostProcessingConfig, decode_candidates

# sigma^2 = 1 / (2 ln 2): the Gaussian weight exp(-d^2 / (2 sigma^2)) = 2^(-d^2),
# i.e. 1, 1/2, 1/16 for d = 0, 1, 2
SIGMA = 1.0 / math.sqrt(2.0 * math.log(2.0))
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


def test_lcc_target_matrices_by_hand() -> None:
    # three videos with 3, 2 and 1 valid snippets -> N = 6
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert torch.equal(lcc_targets(mask, "diagonal"), torch.eye(6))
    smoothed = _block_diag(
        [[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.0, 0.1, 0.9]], [[0.9, 0.1], [0.1, 0.9]], [[1.0]]
    )
    assert torch.allclose(lcc_targets(mask, "smoothed", epsilon=0.1), smoothed)
    # Gaussian rows: (1, 1/2, 1/16) / 25/16 = (16, 8, 1) / 25; (1/2, 1, 1/2) / 2; (1, 1/2) / 3/2
    gaussian = _block_diag(
        [[16 / 25, 8 / 25, 1 / 25], [0.25, 0.5, 0.25], [1 / 25, 8 / 25, 16 / 25]],
        [[2 / 3, 1 / 3], [1 / 3, 2 / 3]],
        [[1.0]],
    )
    assert torch.allclose(lcc_targets(mask, "fixed_gaussian", SIGMA), gaussian, atol=1e-6)
    learnable = lcc_targets(mask, "learnable_gaussian", torch.tensor(SIGMA))
    assert torch.allclose(learnable, gaussian, atol=1e-6)
    with pytest.raises(ValueError, match="lcc_target must be one of"):
        lcc_targets(mask, "uniform")


def test_lcc_loss_against_hand_computed_value() -> None:
    """Two videos of 3 snippets; audio = visual embeddings: video 0 (e1, e1, e2), video 1
    (e2, e2, e1). Temperature 1/2: logits 2 for equal vectors, 0 otherwise, so each row's
    softmax normaliser is Z = 3 e^2 + 3 (three e1 and three e2 columns in the batch).
    Gaussian targets (sigma as above) rows (16, 8, 1)/25, (1/4, 1/2, 1/4), (1, 8, 16)/25.
    KL row i = sum_j P log P + log Z - sum_j P_ij * logit_ij; the target mass on the
    row's own vector (own video): rows 0, 1, 2 -> 24/25, 3/4, 16/25 in both videos.
    Both directions are equal (symmetric logits)."""
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    embed = torch.tensor([[e1, e1, e2], [e2, e2, e1]])  # (B=2, T=3, D=2)
    mask = torch.ones(2, 3, dtype=torch.bool)
    targets = lcc_targets(mask, "fixed_gaussian", SIGMA)
    loss = lcc_loss(embed, 3.0 * embed, mask, targets, torch.tensor(0.5))  # scale: normalised
    edge_row_entropy = (16 * math.log(16 / 25) + 8 * math.log(8 / 25) + math.log(1 / 25)) / 25
    middle_row_entropy = 0.5 * math.log(0.25) + 0.5 * math.log(0.5)
    mean_neg_entropy = (2 * edge_row_entropy + middle_row_entropy) / 3
    own_mass = (24 / 25 + 3 / 4 + 16 / 25) / 3
    expected = mean_neg_entropy + math.log(3 * math.e**2 + 3) - 2.0 * own_mass
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(0.79297, abs=1e-4)
    # padded snippets with arbitrary embeddings do not count
    padded = torch.cat([embed, torch.randn(2, 2, 2)], dim=1)
    padded_mask = torch.tensor([[1, 1, 1, 0, 0]] * 2, dtype=torch.bool)
    again = lcc_loss(padded, padded, padded_mask, targets, torch.tensor(0.5))
    assert again.item() == pytest.approx(expected, abs=1e-5)
    # the module (projections aside) computes the same from its sigma and temperature
    module = LocalityCorrespondence(4, "fixed_gaussian", sigma=SIGMA, temperature=0.5)
    assert module(embed, embed, mask).item() == pytest.approx(expected, abs=1e-5)


def test_learnable_sigma_and_temperature_receive_gradients() -> None:
    torch.manual_seed(0)
    module = LocalityCorrespondence(8, "learnable_gaussian", sigma=1.5, temperature=0.1)
    audio, visual = torch.randn(2, 8, 6), torch.randn(2, 8, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    module(*module.embed(audio, visual), mask).backward()
    for param in (module.log_sigma, module.log_temperature, module.audio_proj.weight):
        assert param.grad is not None and torch.isfinite(param.grad).all()
        assert param.grad.abs().sum() > 0
    fixed = LocalityCorrespondence(8, "fixed_gaussian")
    assert "log_sigma" not in dict(fixed.named_parameters())
    assert "log_sigma" in dict(fixed.named_buffers())


def test_sampling_positions_and_interpolation_by_hand() -> None:
    # w = 4, scale 2, offset +1 (window widths): window 0 has centre 1.5 -> 1.5 + 4 = 5.5,
    # width 8 -> bins centred at 5.5 + 2 * (-1.5, -0.5, 0.5, 1.5) = 2.5, 4.5, 6.5, 8.5;
    # window 1: centre 5.5 + 4 = 9.5 -> 6.5, 8.5, 10.5, 12.5
    scale, offset = torch.full((1, 1, 2), 2.0), torch.ones(1, 1, 2)
    positions = window_sample_positions(scale, offset, 4)
    assert positions.tolist() == [[[[2.5, 4.5, 6.5, 8.5], [6.5, 8.5, 10.5, 12.5]]]]
    unit = window_sample_positions(torch.ones(1, 1, 2), torch.zeros(1, 1, 2), 4)
    assert unit.flatten().tolist() == list(range(8))  # scale 1, offset 0: the base windows
    # values 0..11 with 9 valid snippets (padded values zero): 8.5 mixes 8 with a zero
    valid = torch.arange(12)[None, :] < 9
    values = torch.arange(12.0) * valid[0]
    table = torch.cat([values, torch.zeros(1)]).view(1, 13, 1, 1)  # (B, L + 1, H, F)
    samples, sample_valid = sample_linear(table, valid, positions.flatten(2))
    assert samples.flatten().tolist() == [2.5, 4.5, 6.5, 4.0, 6.5, 4.0, 0.0, 0.0]
    assert sample_valid.flatten().tolist() == [True] * 6 + [False] * 2


def _pair(length: int = 12, channels: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    return torch.randn(2, channels, length), torch.randn(2, channels, length)


@pytest.mark.parametrize("shift", [0, 2])
def test_cdp_at_unit_scale_zero_offset_equals_fixed_window(shift: int) -> None:
    torch.manual_seed(0)
    fixed = WindowCrossAttention(8, 2, 4, adaptive=False, shift=shift)
    cdp = WindowCrossAttention(8, 2, 4, adaptive=True, shift=shift)
    missing = cdp.load_state_dict(fixed.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["window_regressor.bias", "window_regressor.weight"]
    query, context = _pair()
    mask = torch.arange(12)[None, :] < torch.tensor([[12], [7]])
    reference = fixed(query, context, mask)
    assert torch.allclose(cdp(query, context, mask), reference, atol=1e-6)  # zero init
    with torch.no_grad():
        cdp.window_regressor.bias[2:] = 1.0  # offset +1 window for both heads
    moved = cdp(query, context, mask)
    if shift == 0:
        # offset +1 at scale 1 (integer positions): window n reads exactly the context of
        # window n + 1, i.e. the fixed windows over the context moved 4 snippets left
        next_window = torch.cat([context[..., 4:], torch.zeros(2, 8, 4)], dim=-1)
        expected = fixed(query, next_window, torch.ones(2, 12, dtype=torch.bool))
        assert torch.allclose(moved[0, :, :8], expected[0, :, :8], atol=1e-5)  # video 0: valid
    assert not torch.allclose(moved, reference, atol=1e-3)


@pytest.mark.parametrize("variant", ["global", "fixed_window", "cdp"])
def test_variants_run_and_ignore_padding(variant: str) -> None:
    torch.manual_seed(0)
    layer = CrossModalLayer(8, 2, variant, window_size=4, shift=2)
    if variant == "cdp":
        torch.nn.init.normal_(layer.attn.window_regressor.weight, std=0.5)  # non-trivial windows
    query, context = _pair(length=9)
    full = layer(query, context, torch.ones(2, 9, dtype=torch.bool))
    assert full.shape == (2, 8, 9)
    # the same 9 snippets padded to 16 with garbage: valid outputs unchanged, padding zero
    garbage = torch.randn(2, 8, 7) * 50
    padded_mask = torch.arange(16)[None, :].expand(2, -1) < 9
    padded = layer(torch.cat([query, garbage], -1), torch.cat([context, garbage], -1), padded_mask)
    assert torch.allclose(padded[..., :9], full, atol=1e-5)
    assert torch.all(padded[..., 9:] == 0)


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
    flat = _detector(lcc_target="smoothed", shifted_windows=False)
    torch.manual_seed(0)
    grouped = LoCoDetector(
        input_dims=DIMS,
        num_classes=3,
        encoder=LoCoEncoderConfig(embed_dim=16, num_heads=2, local_window=5, path_drop=0.0),
        pyramid=LoCoPyramidConfig(num_pyramid_blocks=3, cdp_window=4, shifted_windows=False),
        lcc=LCCConfig(lcc_target="smoothed"),
        head=HeadConfig(head_dim=16),
    )
    assert grouped.loss_config.reg_loss == "giou" and grouped.lcc_weight == 0.1
    assert list(grouped.state_dict()) == list(flat.state_dict())
    for a, b in zip(grouped.state_dict().values(), flat.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="embed_dim must be even"):
        LoCoEncoderConfig(embed_dim=15)
    with pytest.raises(ValueError, match="lcc_sigma and lcc_temperature must be > 0"):
        LCCConfig(lcc_sigma=0.0)


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


@pytest.mark.parametrize("variant", ["global", "fixed_window", "cdp"])
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
    with pytest.raises(ValueError, match="lcc_target must be one of"):
        _detector(lcc_target="uniform")
    with pytest.raises(ValueError, match="lack"):
        build_detector({"name": "loco", "input_dims": {"visual": 4}, "num_classes": 2, **TINY})
