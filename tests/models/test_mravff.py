"""MRAV-FF neck (arXiv 2310.03456): audio pooling, gated per-level fusion, detector end to end."""

import math

import pytest
import torch

from models import build_detector
from models.necks import IdentityNeck
from models.necks_mravff import MRAVFFNeck, pool_audio_to_level
from models.registry import NECKS

STRIDES = (1, 2, 4)
DERIVED = {"channels": 8, "strides": STRIDES, "input_dims": {"audio": 3, "visual": 5}}


def _pyramid(length: int = 16, valid: int = 9) -> tuple[list, list, dict, torch.Tensor]:
    torch.manual_seed(0)
    mask = torch.arange(length)[None, :] < torch.tensor([[length], [valid]])
    masks = [mask[:, ::s] for s in STRIDES]
    feats = [
        torch.randn(2, 8, length // s) * m[:, None, :] for s, m in zip(STRIDES, masks, strict=True)
    ]
    audio = torch.randn(2, 3, length)
    return feats, masks, {"audio": audio}, mask


def test_shapes_masks_and_padding_independence() -> None:
    neck = NECKS.build({"name": "mravff", "num_heads": 2, "fusion_dim": 6}, **DERIVED)
    assert neck.required_modalities == ("audio",) and neck.out_channels == 8
    feats, masks, inputs, mask = _pyramid()
    out, out_masks = neck(feats, masks, inputs, mask)
    assert [x.shape for x in out] == [(2, 8, 16 // s) for s in STRIDES]
    assert all(torch.equal(a, b) for a, b in zip(masks, out_masks, strict=True))
    for x, m in zip(out, out_masks, strict=True):
        assert torch.all(x[1][:, ~m[1]] == 0)
    # garbage audio on padded snippets changes nothing
    noisy = inputs["audio"].clone()
    noisy[1, :, 9:] = 1e4
    again, _ = neck(feats, masks, {"audio": noisy}, mask)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out, again, strict=True))


def test_audio_max_pooling_by_hand() -> None:
    audio = torch.tensor([[[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 100.0, 100.0]]])  # (1, 1, 8)
    mask = torch.tensor([[True] * 6 + [False] * 2])  # the two 100s are padding
    pooled, level_mask = pool_audio_to_level(audio, mask, 1)
    assert pooled.flatten().tolist() == [3, 1, 4, 1, 5, 9, 0, 0]
    # stride 2: windows centred on 0, 2, 4, 6 -> [-1..1], [1..3], [3..5], [5..7]
    pooled, level_mask = pool_audio_to_level(audio, mask, 2)
    assert pooled.flatten().tolist() == [3, 4, 9, 0]  # point 6 is padding
    assert level_mask.flatten().tolist() == [True, True, True, False]
    # stride 4: windows centred on 0 and 4 -> [-2..2] = max(3, 1, 4), [2..6] = max(4, 1, 5, 9)
    pooled, level_mask = pool_audio_to_level(audio, mask, 4)
    assert pooled.flatten().tolist() == [4, 9] and level_mask.all()


@pytest.mark.parametrize("gate", [False, True])
def test_gate_off_is_plain_sum_and_gate_on_halves_it_at_init(gate: bool) -> None:
    """Audio constant in time: every key is the same, so attention returns that one value
    whatever the query/key weights. Audio u = (1, 2, 4): LayerNorm gives
    (u - 7/3) / sqrt(14/9) = (-4, -1, 5) / sqrt(14); value W_v = [I_3; 1 1 1] gives
    (-4, -1, 5, 0) / sqrt(14); output projection identity. Gate off: v + that; gate on with
    a zero gate convolution: sigmoid(0) = 1/2 of it."""
    neck = MRAVFFNeck(
        channels=4,
        strides=(1, 2),
        input_dims={"audio": 3},
        num_heads=2,
        gate=gate,
        layer_norm=False,
    )
    for fusion in neck.fusions.values():
        with torch.no_grad():
            fusion.attn.value.weight.copy_(
                torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])[..., None]
            )
            fusion.attn.value.bias.zero_()
            fusion.attn.proj.weight.copy_(torch.eye(4)[..., None])
            fusion.attn.proj.bias.zero_()
            if gate:
                fusion.gate.weight.zero_()
                fusion.gate.bias.zero_()
    mask = torch.tensor([[True] * 6 + [False] * 2])
    audio = torch.tensor([1.0, 2.0, 4.0])[None, :, None].expand(1, 3, 8).clone()
    audio[..., 6:] = -50.0  # padding, ignored
    torch.manual_seed(1)
    masks = [mask, mask[:, ::2]]
    feats = [torch.randn(1, 4, 8) * masks[0], torch.randn(1, 4, 4) * masks[1]]
    out, _ = neck(feats, masks, {"audio": audio}, mask)
    contribution = torch.tensor([-4.0, -1.0, 5.0, 0.0]) / math.sqrt(14)
    factor = 0.5 if gate else 1.0
    for x, y, m in zip(feats, out, masks, strict=True):
        expected = (x + factor * contribution[None, :, None]) * m[:, None, :]
        assert torch.allclose(y, expected, atol=1e-4)


def test_fusion_off_at_a_level_is_identity_there() -> None:
    feats, masks, inputs, mask = _pyramid()
    plain = MRAVFFNeck(**DERIVED, num_heads=2, fuse_levels=[True, False, True], layer_norm=False)
    assert sorted(plain.fusions) == ["0", "2"]  # no parameters at the unfused level
    out, _ = plain(feats, masks, inputs, mask)
    assert torch.equal(out[1], feats[1])
    assert not torch.allclose(out[0], feats[0]) and not torch.allclose(out[2], feats[2])
    # with the output LayerNorm an unfused level is exactly the identity neck's
    normed = MRAVFFNeck(**DERIVED, num_heads=2, fuse_levels=[False, False, True])
    reference, _ = IdentityNeck(**DERIVED)(feats, masks, inputs, mask)
    out, _ = normed(feats, masks, inputs, mask)
    assert torch.equal(out[0], reference[0]) and torch.equal(out[1], reference[1])
    with pytest.raises(ValueError, match="one bool per pyramid level"):
        MRAVFFNeck(**DERIVED, fuse_levels=[True, False])
    with pytest.raises(ValueError, match="'audio'"):
        MRAVFFNeck(channels=8, strides=STRIDES, input_dims={"visual": 5})


def test_gradients_reach_gate_and_attention_of_every_level() -> None:
    neck = MRAVFFNeck(**DERIVED, num_heads=2)
    feats, masks, inputs, mask = _pyramid()
    out, _ = neck(feats, masks, inputs, mask)
    torch.manual_seed(2)
    sum((x * torch.randn_like(x)).sum() for x in out).backward()
    for level, fusion in neck.fusions.items():
        for name, module in [
            ("gate", fusion.gate),
            ("query", fusion.attn.query),
            ("key", fusion.attn.key),
            ("value", fusion.attn.value),
            ("proj", fusion.attn.proj),
        ]:
            grad = module.weight.grad
            assert grad is not None and grad.abs().sum() > 0, f"level {level} {name}"


def test_detector_end_to_end_with_visual_backbone_and_audio_neck() -> None:
    torch.manual_seed(0)
    detector = build_detector(
        {
            "name": "actionformer",
            "input_dims": {"audio": 6, "visual": 10},
            "num_classes": 3,
            "modalities": ["visual"],
            "neck": {"name": "mravff", "num_heads": 2, "gate": True},
            "embed_dim": 16,
            "head_dim": 16,
            "num_heads": 2,
            "num_pyramid_blocks": 3,
            "attn_window": 5,
            "path_drop": 0.0,
        }
    )
    assert detector.modalities == ("visual",)
    assert detector.input_modalities == ("visual", "audio")  # the neck's audio is read too
    detector.train()
    inputs = {"audio": torch.rand(2, 64, 6), "visual": torch.rand(2, 64, 10)}
    mask = torch.arange(64)[None, :] < torch.tensor([[64], [40]])
    output = detector(inputs, mask)
    assert [x.shape for x in output.cls_logits] == [(2, t, 3) for t in (64, 32, 16, 8)]
    # events of many lengths give positives on every level
    gt_segments = [
        torch.tensor([[1.5, 4.5], [6.5, 12.5], [14.5, 30.5], [20.0, 62.0], [33.5, 35.5]]),
        torch.zeros(0, 2),
    ]
    gt_labels = [torch.tensor([0, 1, 2, 0, 1]), torch.zeros(0, dtype=torch.long)]
    losses = detector.loss(output, gt_segments, gt_labels)
    assert torch.isfinite(losses["loss"]) and losses["reg"] > 0
    losses["loss"].backward()
    dead = [n for n, p in detector.named_parameters() if p.grad is None or not p.grad.any()]
    assert dead == []
    detector.eval()
    other_audio = detector({**inputs, "audio": torch.rand(2, 64, 6)}, mask)
    assert not torch.allclose(detector(inputs, mask).cls_logits[0], other_audio.cls_logits[0])
    results = detector.predict(detector(inputs, mask))
    assert len(results) == 2 and all(r["segments"].shape[1] == 2 for r in results)
    assert results[0]["scores"].numel() > 0
    with pytest.raises(ValueError, match="input 'audio' missing"):
        detector({"visual": inputs["visual"]}, mask)


def test_windowed_cross_attention_sees_only_the_band_by_hand() -> None:
    from models.cross_attention import MaskedCrossAttention

    torch.manual_seed(0)
    attention = MaskedCrossAttention(2, 2, 2, 1, window=3)
    with torch.no_grad():  # identity projections: the output is a weighted mean of the values
        for layer in (attention.query, attention.key, attention.value, attention.proj):
            layer.weight.copy_(torch.eye(2)[:, :, None])
            if layer.bias is not None:
                layer.bias.zero_()
    query = torch.zeros(1, 2, 5)  # zero queries: uniform weights over the keys each one sees
    context = torch.arange(10.0).view(1, 2, 5)  # channel 0: 0..4, channel 1: 5..9
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = attention(query, mask, context, mask)
    expected = torch.tensor([0.5, 1.0, 2.0, 3.0, 3.5])  # means of {0,1}, {0,1,2}, ..., {3,4}
    assert torch.allclose(out[0, 0], expected)
    assert torch.allclose(out[0, 1], expected + 5)
    mask[0, 4] = False  # a padded key leaves the band of its neighbours
    out = attention(query, mask, context, mask)
    assert torch.allclose(out[0, 0], torch.tensor([0.5, 1.0, 2.0, 2.5, 0.0]))
    with pytest.raises(ValueError, match="odd"):
        MaskedCrossAttention(2, 2, 2, 1, window=4)
    with pytest.raises(ValueError, match="one time grid"):
        attention(query, mask, context[..., :4], mask[:, :4])


def test_neck_with_attention_window_keeps_shapes_and_far_audio_out() -> None:
    torch.manual_seed(0)
    neck = MRAVFFNeck(
        channels=8, strides=(1, 2), input_dims={"audio": 4}, num_heads=2, attention_window=3
    ).eval()
    feats = [torch.randn(1, 8, 16), torch.randn(1, 8, 8)]
    masks = [torch.ones(1, 16, dtype=torch.bool), torch.ones(1, 8, dtype=torch.bool)]
    audio = torch.randn(1, 4, 16)
    out, _ = neck(feats, masks, {"audio": audio}, masks[0])
    changed = audio.clone()
    changed[..., 12:] += 10.0  # audio far from the first points
    out_changed, _ = neck(feats, masks, {"audio": changed}, masks[0])
    assert [o.shape for o in out] == [(1, 8, 16), (1, 8, 8)]
    assert torch.allclose(out[0][..., :10], out_changed[0][..., :10])  # band of 1: t <= 10
    assert not torch.allclose(out[0][..., 11:], out_changed[0][..., 11:])
