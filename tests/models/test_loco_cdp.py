"""LoCo's cross-modal sliding-window attention, CDP (Sec. 3.4, Eq. 6-8) and the pyramid's
downsampling and cross-modal layers."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.loco.cdp import (
    SlidingWindowCrossAttention,
    apply_window_weights,
    sample_linear,
    window_attention_weights,
    window_sample_positions,
)
from models.loco.pyramid import CrossModalLayer, CrossModalPyramid, Downsample


def _explicit_window_attention(q, k, v, key_valid, window_size):
    """Per query ``t``: softmax over the valid keys ``t - w // 2 .. t - w // 2 + w - 1``."""
    batch, heads, length, head_dim = q.shape
    out = torch.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            valid = key_valid[b, min(h, key_valid.shape[1] - 1)]
            for t in range(length):
                start = t - window_size // 2
                keys = [
                    j for j in range(start, start + window_size) if 0 <= j < length and valid[j]
                ]
                if not keys:
                    continue
                scores = torch.stack([q[b, h, t] @ k[b, h, j] for j in keys]) / math.sqrt(head_dim)
                out[b, h, t] = scores.softmax(0) @ v[b, h, keys]
    return out


@pytest.mark.parametrize("window_size", [1, 3, 4])
def test_sliding_window_attention_matches_an_explicit_loop(window_size: int) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 7, 3) for _ in range(3))
    key_valid = torch.ones(2, 2, 7, dtype=torch.bool)
    key_valid[0, 1, 3] = False  # one key hidden from one head
    key_valid[1, :, 5:] = False  # a padded tail, every head
    v = v * key_valid[..., None]  # as the callers do: a query without valid keys outputs 0
    weights = window_attention_weights(q, k, key_valid, window_size)
    out = apply_window_weights(weights, v)
    assert weights.shape == (2, 2, 7, window_size)
    assert torch.allclose(
        out, _explicit_window_attention(q, k, v, key_valid, window_size), atol=1e-6
    )


def test_even_window_covers_half_before_and_half_minus_one_after() -> None:
    # equal scores and one-hot values: the output of query t is the uniform mean of the
    # indicator vectors of the positions it sees: t - 2 .. t + 1 for w = 4
    length = 6
    q, k = torch.zeros(1, 1, length, 1), torch.zeros(1, 1, length, 1)
    v = torch.eye(length).view(1, 1, length, length)
    weights = window_attention_weights(q, k, torch.ones(1, 1, length, dtype=torch.bool), 4)
    out = apply_window_weights(weights, v)[0, 0]
    assert out[3].tolist() == [0.0, 0.25, 0.25, 0.25, 0.25, 0.0]  # positions 1..4
    assert out[0].tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0, 0.0, 0.0])  # -2, -1 outside
    assert out[5].tolist() == pytest.approx([0.0, 0.0, 0.0, 1 / 3, 1 / 3, 1 / 3])  # 6 outside


def test_sampling_positions_and_interpolation_by_hand() -> None:
    # w = 4, size 2, offset +1 (base widths): window 0 has centre 1.5 -> 1.5 + 4 = 5.5,
    # width 8 -> bins centred at 5.5 + 2 * (-1.5, -0.5, 0.5, 1.5) = 2.5, 4.5, 6.5, 8.5;
    # window 1: centre 5.5 + 4 = 9.5 -> 6.5, 8.5, 10.5, 12.5
    size, offset = torch.full((1, 1, 2), 2.0), torch.ones(1, 1, 2)
    positions = window_sample_positions(size, offset, 4)
    assert positions.tolist() == [[[[2.5, 4.5, 6.5, 8.5], [6.5, 8.5, 10.5, 12.5]]]]
    unit = window_sample_positions(torch.ones(1, 1, 2), torch.zeros(1, 1, 2), 4)
    assert unit.flatten().tolist() == list(range(8))  # size 1, offset 0: the base windows
    # values 0..11 with 9 valid snippets (padded values zero): 8.5 mixes 8 with a zero
    valid = torch.arange(12)[None, :] < 9
    features = (torch.arange(12.0) * valid[0]).view(1, 1, 1, 12)  # (B, H, F, T)
    samples, touches_valid = sample_linear(features, valid, positions.flatten(2))
    assert samples.flatten().tolist() == [2.5, 4.5, 6.5, 4.0, 6.5, 4.0, 0.0, 0.0]
    assert touches_valid.flatten().tolist() == [True] * 6 + [False] * 2


def test_window_adaptation_pools_the_valid_snippets_of_each_base_window() -> None:
    # LoCo Eq. (7) with C = 2, H = 1, w = 4: the offset reads channel 0's masked window mean
    cdp = SlidingWindowCrossAttention(2, 1, 4, adaptive=True)
    with torch.no_grad():
        cdp.window_regressor.weight[1, 0, 0] = 1.0  # offset <- channel 0
        cdp.window_regressor.bias[0] = math.log(2.0)  # size 2
    query = torch.zeros(1, 2, 6)
    query[0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    mask = torch.tensor([[True] * 6])
    size, offset = cdp.window_geometry(query, mask)
    # window 0: mean(1..4) = 2.5; window 1: snippets 4, 5 valid (6, 7 padding): 5.5
    assert offset.flatten().tolist() == [2.5, 5.5]
    assert size.flatten().tolist() == pytest.approx([2.0, 2.0])
    # window 0 of this head: centre 1.5 + 2.5 * 4 = 11.5, bins 11.5 + 2 * (-1.5 .. 1.5)
    positions = window_sample_positions(size, offset, 4)
    assert positions[0, 0, 0].tolist() == pytest.approx([8.5, 10.5, 12.5, 14.5])


def _pair(length: int = 12, channels: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    return torch.randn(2, channels, length), torch.randn(2, channels, length)


def test_cdp_with_zero_initialised_window_adaptation_equals_fixed_window() -> None:
    torch.manual_seed(0)
    fixed = SlidingWindowCrossAttention(8, 2, 4, adaptive=False)
    cdp = SlidingWindowCrossAttention(8, 2, 4, adaptive=True)
    missing = cdp.load_state_dict(fixed.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["window_regressor.bias", "window_regressor.weight"]
    query, context = _pair(length=11)
    mask = torch.arange(11)[None, :] < torch.tensor([[11], [7]])
    assert torch.equal(cdp(query, context, mask), fixed(query, context, mask))


def test_cdp_offset_of_one_window_attends_to_the_next_windows_context() -> None:
    torch.manual_seed(0)
    cdp = SlidingWindowCrossAttention(8, 2, 4, adaptive=True)
    with torch.no_grad():
        cdp.window_regressor.bias[2:] = 1.0  # offset +1 base window for both heads
    query, context = _pair()
    mask = torch.ones(2, 12, dtype=torch.bool)
    # size 1, offset +1: the stacked key at p is the context's key at p + 4; p >= 8 reads
    # outside the sequence, so those keys are invalid
    q = cdp.query(query).view(2, 2, 4, 12).transpose(2, 3)
    k = F.pad(cdp.key(context)[..., 4:], (0, 4)).view(2, 2, 4, 12).transpose(2, 3)
    v = F.pad(cdp.value(context)[..., 4:], (0, 4)).view(2, 2, 4, 12).transpose(2, 3)
    key_valid = (torch.arange(12) < 8).view(1, 1, 12)
    out = apply_window_weights(window_attention_weights(q, k, key_valid, 4), v)
    expected = cdp.proj(out.transpose(2, 3).reshape(2, 8, 12))
    assert torch.allclose(cdp(query, context, mask), expected, atol=1e-6)


def test_target_windows_outside_the_sequence_give_no_attention() -> None:
    torch.manual_seed(0)
    cdp = SlidingWindowCrossAttention(8, 2, 4, adaptive=True)
    with torch.no_grad():
        cdp.window_regressor.bias[2:] = 100.0  # every target window far behind the end
    query, context = _pair()
    mask = torch.arange(12)[None, :] < torch.tensor([[12], [5]])
    out = cdp(query, context, mask)
    expected = cdp.proj.bias[None, :, None] * mask[:, None, :]  # projection of zero values
    assert torch.allclose(out, expected.expand_as(out), atol=1e-6)


def test_a_query_whose_window_has_no_valid_key_ignores_the_padding() -> None:
    # C = 2, H = 1, w = 4, 5 valid snippets. WA: size 5 everywhere, offset 10 * the window
    # mean of channel 0 (1 in window 0, 0 in window 1). Window 0 samples at 34 .. 49
    # (outside); window 1 at 5.5 + 5 * (-1.5, -0.5, 0.5, 1.5) = -2, 3, 8, 13. Query 4 sees
    # the stacked slots 2 .. 5: 2, 3, 4 read outside; slot 5 reads snippet 3 but is itself
    # padding (it exists only when padding follows). No valid key: the output is 0.
    torch.manual_seed(0)
    cdp = SlidingWindowCrossAttention(2, 1, 4, adaptive=True)
    with torch.no_grad():
        cdp.window_regressor.weight[1, 0, 0] = 10.0
        cdp.window_regressor.bias[0] = math.log(5.0)
    query = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 0.0, 3.0, 3.0, 3.0]] * 2])  # (1, 2, 8)
    context = torch.randn(1, 2, 8)
    short = cdp(query[..., :5], context[..., :5], torch.ones(1, 5, dtype=torch.bool))
    padded = cdp(query, context, torch.arange(8)[None, :] < 5)
    assert torch.allclose(padded[..., :5], short, atol=1e-6)
    assert torch.allclose(short[0, :, 4], cdp.proj.bias, atol=1e-6)


def test_gradients_reach_the_window_adaptation_at_its_zero_init() -> None:
    torch.manual_seed(0)
    cdp = SlidingWindowCrossAttention(8, 2, 4, adaptive=True)
    query, context = _pair(length=10)
    mask = torch.arange(10)[None, :] < torch.tensor([[10], [6]])
    (cdp(query, context, mask) * torch.randn(2, 8, 10)).sum().backward()
    for param in (cdp.window_regressor.weight, cdp.window_regressor.bias):
        assert param.grad is not None and param.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["global", "fixed_window", "cdp"])
@pytest.mark.parametrize("valid", [8, 9])
def test_cross_modal_layers_ignore_padding(variant: str, valid: int) -> None:
    torch.manual_seed(0)
    layer = CrossModalLayer(8, 2, variant, window_size=4)
    if variant == "cdp":  # non-trivial windows that reach past the valid snippets
        torch.nn.init.normal_(layer.attn.window_regressor.weight, std=0.5)
        torch.nn.init.normal_(layer.attn.window_regressor.bias, std=0.5)
    query, context = _pair(length=valid)
    full = layer(query, context, torch.ones(2, valid, dtype=torch.bool))
    assert full.shape == (2, 8, valid) and torch.isfinite(full).all()
    for total in (valid + 3, 16, 24):
        garbage = torch.randn(2, 8, total - valid) * 50
        padded_mask = torch.arange(total)[None, :].expand(2, -1) < valid
        padded = layer(
            torch.cat([query, garbage], -1), torch.cat([context, garbage], -1), padded_mask
        )
        assert torch.allclose(padded[..., :valid], full, atol=1e-5), total
        assert torch.all(padded[..., valid:] == 0)


def test_max_pool_downsampling_by_hand() -> None:
    # kernel 3, stride 2, padding 1: output t reads inputs 2t - 1 .. 2t + 1
    x = torch.tensor([[[1.0, 5.0, 2.0, 3.0, 9.0, 4.0, 7.0, 8.0]]])
    mask = torch.arange(8)[None, :] < 5  # 4.0, 7.0, 8.0 are padding
    out, out_mask = Downsample("max_pool", 1)(x, mask)
    assert out.flatten().tolist() == [5.0, 5.0, 9.0, 0.0]
    assert out_mask.flatten().tolist() == [True, True, True, False]
    assert sum(p.numel() for p in Downsample("max_pool", 4).parameters()) == 0


@pytest.mark.parametrize("kind", ["max_pool", "depthwise_conv", "transformer"])
def test_downsampling_halves_and_ignores_padding(kind: str) -> None:
    torch.manual_seed(0)
    down = Downsample(kind, 8, num_heads=2, local_window=3)
    x = torch.randn(1, 8, 10)
    full, _ = down(x, torch.ones(1, 10, dtype=torch.bool))
    padded, padded_mask = down(
        torch.cat([x, torch.randn(1, 8, 6) * 9], -1), torch.arange(16)[None] < 10
    )
    assert full.shape == (1, 8, 5) and padded.shape == (1, 8, 8)
    assert torch.allclose(padded[..., :5], full, atol=1e-5)
    assert padded_mask.flatten().tolist() == [True] * 5 + [False] * 3
    assert torch.all(padded[..., 5:] == 0)
    with pytest.raises(ValueError, match="pyramid_downsample must be one of"):
        Downsample("avg_pool", 8)


def test_pyramid_without_cross_attention_only_downsamples_and_fuses() -> None:
    torch.manual_seed(0)
    pyramid = CrossModalPyramid(8, 3, 2, cross_attention="none")
    assert all(len(layers) == 0 for layers in pyramid.audio_layers)
    audio, visual = _pair(length=16)
    mask = torch.arange(16)[None, :] < torch.tensor([[16], [10]])
    feats, masks = pyramid(audio, visual, mask)
    assert [f.shape for f in feats] == [(2, 8, 16), (2, 8, 8), (2, 8, 4)]
    assert [m.sum(1).tolist() for m in masks] == [[16, 10], [8, 5], [4, 3]]
    # level 0: no cross-modal layer, no downsampling: the fusion of the inputs themselves
    expected = pyramid.fuse_norms[0](pyramid.fuse[0](torch.cat([audio, visual], 1)))
    assert torch.allclose(feats[0], expected * mask[:, None, :], atol=1e-6)
    with_cross = CrossModalPyramid(8, 3, 2, cross_attention="cdp")
    params = sum(p.numel() for p in pyramid.parameters())
    assert params < sum(p.numel() for p in with_cross.parameters())
