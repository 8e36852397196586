"""The ActionFormer detector end to end on tiny CPU tensors."""

import pytest
import torch

import models
from models import ActionFormerDetector, DetectorOutput, build_detector
from models.detector_config import HeadConfig, TargetConfig
from models.detectors import ActionFormerLossConfig, BackboneConfig, FusionConfig

DIMS = {"audio": 6, "visual": 10}
TINY = {
    "embed_dim": 16,
    "head_dim": 16,
    "num_heads": 2,
    "num_pyramid_blocks": 3,
    "attn_window": 5,
}


def _detector(**overrides: object) -> ActionFormerDetector:
    cfg = {"name": "actionformer", "input_dims": DIMS, "num_classes": 3, **TINY, **overrides}
    return build_detector(cfg)


def _batch(length: int = 64, valid: tuple[int, int] = (64, 40)) -> tuple[dict, torch.Tensor]:
    inputs = {m: torch.rand(2, length, d) for m, d in DIMS.items()}
    mask = torch.arange(length)[None, :] < torch.tensor(valid)[:, None]
    return inputs, mask


@pytest.mark.parametrize("modalities", [("audio", "visual"), ("audio",), ("visual",)])
def test_forward_shapes_for_fusion_and_unimodal(modalities: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    detector = _detector(modalities=list(modalities))
    assert detector.modalities == modalities and detector.max_stride == 8
    assert detector.embedding.out_channels == sum(DIMS[m] for m in modalities)
    inputs, mask = _batch()
    if modalities == ("audio",):
        del inputs["visual"]  # a unimodal model needs only its own modality
    output = detector(inputs, mask)
    assert isinstance(output, DetectorOutput)
    lengths = [64, 32, 16, 8]
    assert [x.shape for x in output.cls_logits] == [(2, t, 3) for t in lengths]
    assert [x.shape for x in output.offsets] == [(2, t, 2) for t in lengths]
    assert [int(m[1].sum()) for m in output.masks] == [40, 20, 10, 5]
    assert output.points.shape == (sum(lengths), 4)
    assert output.points[64:67, 0].tolist() == [0.0, 2.0, 4.0]  # level 1: t * 2
    assert output.points[-1].tolist() == [56.0, 16.0, float("inf"), 8.0]  # 4th range: (16, inf)


def test_modality_projection_and_fpn_neck() -> None:
    detector = _detector(modality_proj_dim=4, neck={"name": "fpn", "out_channels": 12})
    assert detector.embedding.out_channels == 8 and detector.neck.out_channels == 12
    inputs, mask = _batch()
    output = detector(inputs, mask)
    assert output.cls_logits[0].shape == (2, 64, 3)


def test_loss_is_finite_and_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    detector = _detector(path_drop=0.0)  # stochastic depth would skip whole branches
    detector.train()
    inputs, mask = _batch()
    # events of many lengths give positives on every level
    gt_segments = [
        torch.tensor([[1.5, 4.5], [6.5, 12.5], [14.5, 30.5], [20.0, 62.0], [33.5, 35.5]]),
        torch.zeros(0, 2),
    ]
    gt_labels = [torch.tensor([0, 1, 2, 0, 1]), torch.zeros(0, dtype=torch.long)]
    losses = detector.loss(detector(inputs, mask), gt_segments, gt_labels)
    assert set(losses) == {"cls", "reg", "loss"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["reg"] > 0 and losses["cls"] > 0
    assert losses["loss"].item() == pytest.approx((losses["cls"] + losses["reg"]).item())
    losses["loss"].backward()
    dead = [n for n, p in detector.named_parameters() if p.grad is None or not p.grad.any()]
    assert dead == []


def test_loss_normaliser_is_an_ema_updated_in_training_only() -> None:
    detector = _detector(init_loss_normalizer=100.0)
    inputs, mask = _batch()
    gt = [torch.tensor([[8.5, 11.5]]), torch.zeros(0, 2)]
    labels = [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]
    detector.eval()
    detector.loss(detector(inputs, mask), gt, labels)
    assert detector.loss_normalizer.item() == 100.0
    detector.train()
    # (8.5, 11.5): centre 10; level-0 points 9, 10, 11 (reach <= 4) are the positives
    detector.loss(detector(inputs, mask), gt, labels)
    assert detector.loss_normalizer.item() == pytest.approx(0.9 * 100.0 + 0.1 * 3)
    empty = detector.loss(
        detector(inputs, mask), [torch.zeros(0, 2)] * 2, [torch.zeros(0, dtype=torch.long)] * 2
    )
    assert empty["reg"].item() == 0.0 and empty["loss"].requires_grad


def test_bad_targets_and_inputs_are_refused() -> None:
    detector = _detector()
    inputs, mask = _batch()
    output = detector(inputs, mask)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        detector.loss(output, [torch.tensor([[1.0, 2.0]])] * 2, [torch.tensor([3])] * 2)
    with pytest.raises(ValueError, match="ends before it starts"):
        detector.loss(output, [torch.tensor([[5.0, 2.0]])] * 2, [torch.tensor([0])] * 2)
    with pytest.raises(ValueError, match="not a multiple of max_stride 8"):
        detector({m: x[:, :60] for m, x in inputs.items()}, mask[:, :60])
    with pytest.raises(ValueError, match="input 'visual' missing"):
        detector({"audio": inputs["audio"]}, mask)
    with pytest.raises(ValueError, match="prefix"):
        detector(inputs, ~mask)
    with pytest.raises(ValueError, match="regression_ranges has 2 entries"):
        _detector(regression_ranges=[(0, 4), (4, 1e8)])


@pytest.mark.parametrize("nms", ["soft", "hard", "none"])
def test_predict_is_sorted_bounded_and_capped(nms: str) -> None:
    torch.manual_seed(0)
    margin = 1.0  # the video reaches one cell past the outer cell edges
    detector = _detector(
        postprocessing={"max_detections": 7, "nms": nms, "boundary_margin": margin}
    )
    detector.eval()
    inputs, mask = _batch(valid=(64, 40))
    results = detector.predict(detector(inputs, mask))
    assert len(results) == 2
    for result, valid in zip(results, (64, 40), strict=True):
        assert 0 < result["segments"].shape[0] <= 7
        assert result["labels"].dtype == torch.long
        assert ((result["labels"] >= 0) & (result["labels"] < 3)).all()
        assert torch.all(result["scores"][:-1] >= result["scores"][1:])
        assert result["segments"].min() >= -0.5 - margin
        assert result["segments"].max() <= valid - 0.5 + margin
        assert (result["segments"][:, 1] > result["segments"][:, 0]).all()
    # a video that is all padding yields no detections
    empty = detector.predict(detector(inputs, mask & False))
    assert [r["scores"].numel() for r in empty] == [0, 0]
    assert empty[0]["segments"].shape == (0, 2)


def test_outputs_do_not_depend_on_padding_and_are_seeded() -> None:
    torch.manual_seed(0)
    detector = _detector()
    detector.eval()
    inputs, _ = _batch(length=32)
    full = detector(inputs, torch.ones(2, 32, dtype=torch.bool))
    padded_inputs = {
        m: torch.cat([x, torch.randn(2, 32, x.shape[2]) * 9], 1) for m, x in inputs.items()
    }
    padded_mask = torch.arange(64)[None, :].expand(2, -1) < 32
    padded = detector(padded_inputs, padded_mask)
    for short, long in zip(
        full.cls_logits + full.offsets, padded.cls_logits + padded.offsets, strict=True
    ):
        assert torch.allclose(short, long[:, : short.shape[1]], atol=1e-5)
    torch.manual_seed(0)
    twin = _detector()
    twin.eval()
    assert models.count_parameters(twin) == models.count_parameters(detector)
    again = twin(inputs, torch.ones(2, 32, dtype=torch.bool))
    assert all(torch.equal(a, b) for a, b in zip(full.cls_logits, again.cls_logits, strict=True))


def test_constructor_takes_config_groups_like_the_flat_config() -> None:
    torch.manual_seed(0)
    flat = _detector(modalities=["visual"], label_smoothing=0.1, center_sample_radius=None)
    torch.manual_seed(0)
    grouped = ActionFormerDetector(
        input_dims=DIMS,
        num_classes=3,
        fusion=FusionConfig(modalities=["visual"]),
        backbone=BackboneConfig(embed_dim=16, num_heads=2, num_pyramid_blocks=3, attn_window=5),
        head=HeadConfig(head_dim=16),
        targets=TargetConfig(center_sample_radius=None),
        loss=ActionFormerLossConfig(label_smoothing=0.1),
    )
    assert grouped.modalities == ("visual",) and grouped.label_smoothing == 0.1
    assert list(grouped.state_dict()) == list(flat.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(grouped.state_dict().values(), flat.state_dict().values(), strict=True)
    )
    with pytest.raises(TypeError, match="embed_dim"):
        ActionFormerDetector(input_dims=DIMS, num_classes=3, embed_dim=16)  # flat keys: from_config
    with pytest.raises(ValueError, match="attn_window lists 2 windows but the pyramid has 6"):
        BackboneConfig(attn_window=[3, 5])
    with pytest.raises(ValueError, match="modalities is empty"):
        FusionConfig(modalities=[])
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        ActionFormerLossConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="cls_prior_prob must be in"):
        HeadConfig(cls_prior_prob=1.0)


def test_count_parameters() -> None:
    layer = torch.nn.Linear(3, 2)
    assert models.count_parameters(layer) == 8
    layer.bias.requires_grad_(False)
    assert models.count_parameters(layer, trainable_only=True) == 6


def _segment_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def test_overfits_one_synthetic_event() -> None:
    """Features switch on inside one event; after 100 steps the top detection finds it
    (about 4 s on one CPU core)."""
    torch.manual_seed(0)
    length, event = 32, (9.5, 19.5)  # snippets 10..19
    inside = torch.zeros(1, length, 1)
    inside[:, 10:20] = 1.0
    inputs = {
        "audio": inside * torch.tensor([1.0, -1.0, 0.5, 0.0]) + 0.05 * torch.randn(1, length, 4),
        "visual": inside * torch.tensor([0.0, 1.0, 1.0, -0.5]) + 0.05 * torch.randn(1, length, 4),
    }
    mask = torch.ones(1, length, dtype=torch.bool)
    detector = build_detector(
        {
            "name": "actionformer",
            "input_dims": {"audio": 4, "visual": 4},
            "num_classes": 2,
            "embed_dim": 16,
            "head_dim": 16,
            "num_heads": 2,
            "num_pyramid_blocks": 2,
            "attn_window": 5,
            "path_drop": 0.0,
            "init_loss_normalizer": 3.0,
        }
    )
    optimiser = torch.optim.Adam(detector.parameters(), lr=5e-3)
    gt_segments, gt_labels = [torch.tensor([event])], [torch.tensor([1])]
    detector.train()
    for _ in range(100):
        losses = detector.loss(detector(inputs, mask), gt_segments, gt_labels)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
    detector.eval()
    (result,) = detector.predict(detector(inputs, mask))
    assert result["labels"][0].item() == 1 and result["scores"][0] > 0.5
    assert _segment_iou(result["segments"][0].tolist(), event) > 0.5
