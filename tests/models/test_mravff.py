"""MRAV-FF neck (arXiv 2310.03456): project-then-pool audio, the scalar gate and its convex
mix by hand, the switches, padding, gradients, the detector end to end."""

import math

import pytest
import torch

from models import build_detector, check_detector_config
from models.cross_attention import MaskedCrossAttention
from models.necks import IdentityNeck
from models.necks_mravff import MRAVFFNeck, pool_audio_to_level
from models.registry import NECKS

STRIDES = (1, 2, 4)
DERIVED = {"channels": 8, "strides": STRIDES, "input_dims": {"audio": 3, "visual": 5}}
SWITCHES = [
    {},
    {"gate_shape": "channel"},
    {"gate_form": "residual"},
    {"gate_shape": "channel", "gate_form": "residual", "gate_init": 0.5},
    {"gate": False},
    {"attention_window": 3},
    {"fuse_levels": [False, True, False]},
    {"fusion_dim": 6, "attn_dropout": 0.1, "layer_norm": False},
]


def _pyramid(length: int = 16, valid: int = 9) -> tuple[list, list, dict, torch.Tensor]:
    torch.manual_seed(0)
    mask = torch.arange(length)[None, :] < torch.tensor([[length], [valid]])
    masks = [mask[:, ::s] for s in STRIDES]
    feats = [
        torch.randn(2, 8, length // s) * m[:, None, :] for s, m in zip(STRIDES, masks, strict=True)
    ]
    return feats, masks, {"audio": torch.randn(2, 3, length)}, mask


@pytest.mark.parametrize("switches", SWITCHES, ids=str)
def test_every_switch_builds_runs_and_keeps_shapes(switches: dict) -> None:
    neck = NECKS.build({"name": "mravff", "num_heads": 2, **switches}, **DERIVED)
    assert neck.required_modalities == ("audio",) and neck.out_channels == 8
    feats, masks, inputs, mask = _pyramid()
    out, out_masks = neck(feats, masks, inputs, mask)
    assert [x.shape for x in out] == [(2, 8, 16 // s) for s in STRIDES]
    assert all(torch.equal(a, b) for a, b in zip(masks, out_masks, strict=True))
    for x, m in zip(out, masks, strict=True):
        assert torch.isfinite(x).all() and torch.all(x[1][:, ~m[1]] == 0)
    gates = [fusion.gate for fusion in neck.fusions.values()]
    if switches.get("gate", True):
        width = 8 if switches.get("gate_shape") == "channel" else 1
        assert all(gate.out_channels == width for gate in gates)
    else:
        assert gates == [None] * len(gates)


def test_padding_and_the_batch_change_nothing() -> None:
    """Video 1 (8 valid snippets of 16) gives the same valid outputs padded with garbage (audio
    and visual) as alone at length 8."""
    neck = MRAVFFNeck(**DERIVED, num_heads=2).eval()
    feats, masks, inputs, mask = _pyramid(valid=8)
    out, _ = neck(feats, masks, inputs, mask)
    noisy_feats = [x.clone() for x in feats]
    for x, m in zip(noisy_feats, masks, strict=True):
        x[1][:, ~m[1]] = 1e3
    noisy_audio = inputs["audio"].clone()
    noisy_audio[1, :, 8:] = 1e4
    noisy, _ = neck(noisy_feats, masks, {"audio": noisy_audio}, mask)
    alone, _ = neck(
        [x[1:, :, : 8 // s] for x, s in zip(feats, STRIDES, strict=True)],
        [m[1:, : 8 // s] for m, s in zip(masks, STRIDES, strict=True)],
        {"audio": inputs["audio"][1:, :, :8]},
        mask[1:, :8],
    )
    for x, y, z, m, s in zip(out, noisy, alone, masks, STRIDES, strict=True):
        assert torch.allclose(x, y, atol=1e-5)  # padded outputs are zero in both
        assert torch.allclose(x[1:, :, : 8 // s], z, atol=1e-5) and not m[1, 8 // s :].any()


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


def test_audio_is_projected_then_pooled() -> None:
    """Each level attends to maxpool(W_a LN(a)), not to W_a LN(maxpool(a)): max-pooling does
    not commute with a projection that mixes channels with both signs."""
    neck = MRAVFFNeck(**DERIVED, num_heads=2)
    feats, masks, inputs, mask = _pyramid()
    seen = {}
    for level, fusion in neck.fusions.items():
        fusion.register_forward_hook(
            lambda _m, args, _o, level=level: seen.update({level: args[1]})
        )
    neck(feats, masks, inputs, mask)
    projected = neck.project_audio(inputs["audio"])  # (B, d, T)
    assert projected.shape == (2, 8, 16)
    for level, stride in enumerate(STRIDES):
        expected, _ = pool_audio_to_level(projected, mask, stride)
        assert torch.equal(seen[str(level)], expected)
    pooled_raw, _ = pool_audio_to_level(inputs["audio"], mask, 4)
    pooled_first = neck.project_audio(pooled_raw) * masks[2][:, None, :]
    assert not torch.allclose(seen["2"], pooled_first, atol=1e-3)


@pytest.mark.parametrize(
    ("gate", "gate_shape", "gate_form"),
    [
        (True, "scalar", "convex"),
        (True, "scalar", "residual"),
        (True, "channel", "convex"),
        (True, "channel", "residual"),
        (False, "scalar", "convex"),
    ],
)
def test_gate_and_mix_by_hand(gate: bool, gate_shape: str, gate_form: str) -> None:
    """Audio constant in time, so attention returns that one value whatever the query/key
    weights. u = (1, 2, 4): LN gives (-4, -1, 5) / sqrt(14); W_a = [I_3; 1 1 1], W_v = W_o = I
    give A = (-4, -1, 5, 0) / sqrt(14). Visual v_0 = (1, 2, 3, 6), v_1 = (6, 3, 2, 1): both
    variance 3.5, LN(v_0) = (-2, -1, 0, 3) / sqrt(3.5), LN(v_1) = (3, 0, -1, -2) / sqrt(3.5).
    Scalar gate w_g = (0, 0, 0, 1), b_g = 0: g_0 = sigmoid(3 / sqrt(3.5)) = 0.8326, g_1 =
    sigmoid(-2 / sqrt(3.5)) = 0.2556. Channel gate W_g = I: g = sigmoid(LN(v)) per channel.
    Convex: (1 - g) v + g A; residual: v + g A; no gate: v + A. Point 2 is padding."""
    neck = MRAVFFNeck(
        channels=4,
        strides=(1,),
        input_dims={"audio": 3},
        num_heads=2,
        gate=gate,
        gate_shape=gate_shape,
        gate_form=gate_form,
        layer_norm=False,
    )
    fusion = neck.fusions["0"]
    with torch.no_grad():
        audio_proj = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])  # (d, D_a)
        neck.audio_proj.weight.copy_(audio_proj[..., None])
        neck.audio_proj.bias.zero_()
        for layer in (fusion.attn.value, fusion.attn.proj):
            layer.weight.copy_(torch.eye(4)[..., None])
            layer.bias.zero_()
        if gate:
            gate_weight = torch.eye(4)[3:] if gate_shape == "scalar" else torch.eye(4)
            fusion.gate.weight.copy_(gate_weight[..., None])  # (1 or C, C, 1)
            fusion.gate.bias.zero_()
    mask = torch.tensor([[True, True, False]])
    audio = torch.tensor([[1.0, 1.0, -50.0], [2.0, 2.0, 7.0], [4.0, 4.0, 0.0]])[None]  # (1, 3, 3)
    visual = torch.tensor([[1.0, 6, 9], [2, 3, 9], [3, 2, 9], [6, 1, 9]])[None]  # (1, 4, 3)
    (out,), _ = neck([visual], [mask], {"audio": audio}, mask)
    attended = torch.tensor([-4.0, -1.0, 5.0, 0.0])[:, None] / math.sqrt(14)  # (C, 1)
    normed = torch.tensor([[-2.0, 3.0], [-1.0, 0.0], [0.0, -1.0], [3.0, -2.0]]) / math.sqrt(3.5)
    v = visual[0, :, :2]
    if not gate:
        expected = v + attended
    else:
        g = torch.sigmoid(normed[3:] if gate_shape == "scalar" else normed)  # (1 or C, 2)
        expected = (1 - g) * v + g * attended if gate_form == "convex" else v + g * attended
    assert torch.allclose(out[0, :, :2], expected, atol=1e-4)
    assert torch.all(out[0, :, 2] == 0)
    if gate and gate_shape == "scalar":
        weight = fusion.audio_weight(visual)
        assert weight.shape == (1, 1, 3)
        assert torch.allclose(weight[0, 0, :2], torch.tensor([0.8326, 0.2556]), atol=1e-4)


def test_gate_starts_at_gate_init() -> None:
    """b_g = logit(gate_init): with W_g zeroed every position starts at gate_init, so the
    convex mix starts at 0.9 v + 0.1 A (default) instead of halving the visual level."""
    for gate_init in (0.1, 0.5):
        neck = MRAVFFNeck(**DERIVED, gate_init=gate_init)
        for fusion in neck.fusions.values():
            assert fusion.gate.bias.item() == pytest.approx(math.log(gate_init / (1 - gate_init)))
            with torch.no_grad():
                fusion.gate.weight.zero_()
            weight = fusion.audio_weight(torch.randn(2, 8, 5))
            assert torch.allclose(weight, torch.full((2, 1, 5), gate_init))


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
    with pytest.raises(ValueError, match="at least one true"):
        MRAVFFNeck(**DERIVED, fuse_levels=[False, False, False])
    with pytest.raises(ValueError, match="'audio'"):
        MRAVFFNeck(channels=8, strides=STRIDES, input_dims={"visual": 5})


@pytest.mark.parametrize(
    ("neck", "message"),
    [
        ({"gate_shape": "vector"}, r"run\.neck: gate_shape must be one of scalar, channel"),
        ({"gate_form": "mix"}, r"run\.neck: gate_form must be one of convex, residual"),
        ({"gate_init": 1.0}, r"gate_init must be in \(0, 1\)"),
        ({"attention_window": 4}, "attention_window must be a positive odd number"),
        ({"fuse_levels": "some"}, "fuse_levels must be 'all' or a list"),
    ],
)
def test_bad_options_are_refused_before_building(neck: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_detector_config({"name": "actionformer", "neck": {"name": "mravff", **neck}}, "run")
    resolved = check_detector_config({"name": "actionformer", "neck": {"name": "mravff"}})
    assert resolved["neck"]["gate_shape"] == "scalar" and resolved["neck"]["gate_form"] == "convex"
    assert resolved["neck"]["attention_window"] is None


@pytest.mark.parametrize("gate_form", ["convex", "residual"])
def test_gradients_reach_gate_projection_and_attention_of_every_level(gate_form: str) -> None:
    neck = MRAVFFNeck(**DERIVED, num_heads=2, gate_form=gate_form)
    feats, masks, inputs, mask = _pyramid()
    out, _ = neck(feats, masks, inputs, mask)
    torch.manual_seed(2)
    sum((x * torch.randn_like(x)).sum() for x in out).backward()
    assert neck.audio_proj.weight.grad.abs().sum() > 0
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
        assert fusion.gate.bias.grad.abs() > 0, f"level {level} gate bias"


def test_detector_end_to_end_with_visual_backbone_and_audio_neck() -> None:
    torch.manual_seed(0)
    detector = build_detector(
        {
            "name": "actionformer",
            "input_dims": {"audio": 6, "visual": 10},
            "num_classes": 3,
            "modalities": ["visual"],
            "neck": {"name": "mravff", "num_heads": 2},
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


@pytest.mark.parametrize("window", [3, None])
def test_attention_window_keeps_far_audio_out_and_global_lets_it_in(window: int | None) -> None:
    torch.manual_seed(0)
    neck = MRAVFFNeck(
        channels=8, strides=(1, 2), input_dims={"audio": 4}, num_heads=2, attention_window=window
    ).eval()
    feats = [torch.randn(1, 8, 16), torch.randn(1, 8, 8)]
    masks = [torch.ones(1, 16, dtype=torch.bool), torch.ones(1, 8, dtype=torch.bool)]
    audio = torch.randn(1, 4, 16)
    out, _ = neck(feats, masks, {"audio": audio}, masks[0])
    changed = audio.clone()
    changed[..., 12:] = 10.0 * torch.randn(1, 4, 4)  # audio far from the first points
    out_changed, _ = neck(feats, masks, {"audio": changed}, masks[0])
    assert [o.shape for o in out] == [(1, 8, 16), (1, 8, 8)]
    near = torch.allclose(out[0][..., :10], out_changed[0][..., :10])  # band of 1: t <= 10
    assert near == (window is not None)
    assert not torch.allclose(out[0][..., 11:], out_changed[0][..., 11:])
