"""Tests of models.tacma against AV-BT/TACMA Eq. (3)-(9), computed by hand in plain Python."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.tacma import (
    TACMA,
    SegmentClassifier,
    masked_segment_cross_entropy,
    temporal_weights,
)

AUDIO = [[1.0, 0.0, 0.5], [0.5, 1.0, -0.5], [0.0, 2.0, 1.0]]  # f_a (T = 3, d_l = 3)
VISUAL = [[2.0, 0.0, 0.0], [1.0, 1.0, 1.5], [-1.0, 0.5, 0.0]]  # f_v, unlike f_a


def _identity_tacma(theta: float, eq6_reading: str = "cross") -> TACMA:
    """d_l = d_h = d_e = 3 with every projection the identity and no biases."""
    tacma = TACMA(
        feature_dim=3, attention_dim=3, output_dim=3, theta=theta, eq6_reading=eq6_reading
    )
    with torch.no_grad():
        for layer in (
            tacma.audio_query_key,
            tacma.visual_query_key,
            tacma.audio_value,
            tacma.visual_value,
            tacma.audio_output,
            tacma.visual_output,
        ):
            layer.weight.copy_(torch.eye(3))
            layer.bias.zero_()
    return tacma


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(value) for value in row]
    return [value / sum(exps) for value in exps]


def _hand_maps(theta: float) -> tuple[list[list[float]], list[list[float]]]:
    """W_av and W_va of Eq. (3)-(5) for AUDIO, VISUAL with identity projections."""
    dot = [
        [sum(a * v for a, v in zip(AUDIO[i], VISUAL[j], strict=True)) for j in range(3)]
        for i in range(3)
    ]
    scores_av = [[max(0.0, dot[i][j] / math.sqrt(3)) for j in range(3)] for i in range(3)]
    scores_va = [[scores_av[j][i] for j in range(3)] for i in range(3)]  # M_va = M_av^T
    maps = []
    for scores in (scores_av, scores_va):
        softmaxed = [_softmax(row) for row in scores]
        maps.append(
            [
                [
                    math.exp(-theta * abs(i - j) / softmaxed[i][j]) * softmaxed[i][j]
                    for j in range(3)
                ]
                for i in range(3)
            ]
        )
    return maps[0], maps[1]


def _layer_norm(row: list[float]) -> list[float]:
    mean = sum(row) / len(row)
    variance = sum((value - mean) ** 2 for value in row) / len(row)
    return [(value - mean) / math.sqrt(variance + 1e-5) for value in row]


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([AUDIO]), torch.tensor([VISUAL])


def test_eq3_to_eq5_by_hand() -> None:
    theta = 0.5
    expected_av, expected_va = _hand_maps(theta)
    output = _identity_tacma(theta)(*_inputs())
    assert torch.allclose(output.weighted_av[0], torch.tensor(expected_av), atol=1e-6)
    assert torch.allclose(output.weighted_va[0], torch.tensor(expected_va), atol=1e-6)
    # No renormalisation (Eq. (5)): rows lose mass wherever |i - j| > 0 carries attention.
    row_sums = output.weighted_av[0].sum(dim=1)
    assert torch.all(row_sums < 1.0)
    assert torch.allclose(row_sums, torch.tensor([sum(row) for row in expected_av]), atol=1e-6)


@pytest.mark.parametrize("reading", ["cross", "literal"])
def test_eq6_and_eq7_by_hand(reading: str) -> None:
    theta = 0.5
    weighted_av, weighted_va = _hand_maps(theta)

    def attend(weights: list[list[float]], values: list[list[float]]) -> list[list[float]]:
        return [
            [sum(weights[i][j] * values[j][k] for j in range(3)) for k in range(3)]
            for i in range(3)
        ]

    def add(first: list[list[float]], second: list[list[float]]) -> list[list[float]]:
        pairs = zip(first, second, strict=True)
        return [[a + b for a, b in zip(r1, r2, strict=True)] for r1, r2 in pairs]

    if reading == "cross":  # visual queries gather audio values, keep the visual residual
        visual_fused = add(attend(weighted_va, AUDIO), VISUAL)
        audio_fused = add(attend(weighted_av, VISUAL), AUDIO)
    else:  # Eq. (6) as printed
        visual_fused = add(attend(weighted_va, VISUAL), AUDIO)
        audio_fused = add(attend(weighted_av, AUDIO), VISUAL)
    output = _identity_tacma(theta, reading)(*_inputs())
    expected_visual = torch.tensor([_layer_norm(row) for row in visual_fused])
    expected_audio = torch.tensor([_layer_norm(row) for row in audio_fused])
    assert torch.allclose(output.visual_from_audio[0], expected_visual, atol=1e-5)
    assert torch.allclose(output.audio_from_visual[0], expected_audio, atol=1e-5)


def test_the_two_eq6_readings_differ() -> None:
    cross = _identity_tacma(0.5, "cross")(*_inputs())
    literal = _identity_tacma(0.5, "literal")(*_inputs())
    assert not torch.allclose(cross.visual_from_audio, literal.visual_from_audio, atol=1e-3)


def test_each_stream_gathers_the_other_modalitys_values() -> None:
    # Cross reading: the visual stream's attended values are audio's (f_a W_a2), the audio
    # stream's are visual's (f_v W_v2). Zeroing one modality's value projection leaves the other
    # stream with its residual alone, and leaves this stream as it was.
    torch.manual_seed(0)
    audio, visual = torch.randn(1, 4, 3), torch.randn(1, 4, 3) * 2.0 + 1.0  # unlike each other
    tacma = TACMA(feature_dim=3, attention_dim=3, output_dim=3, theta=0.1)
    before = tacma(audio, visual)
    with torch.no_grad():
        tacma.audio_value.weight.zero_()
        tacma.audio_value.bias.zero_()
    no_audio_values = tacma(audio, visual)
    residual_only = tacma.visual_norm(tacma.visual_output(visual))
    assert torch.allclose(no_audio_values.visual_from_audio, residual_only, atol=1e-6)
    assert not torch.allclose(before.visual_from_audio, residual_only, atol=1e-3)
    assert torch.equal(no_audio_values.audio_from_visual, before.audio_from_visual)
    with torch.no_grad():
        tacma.visual_value.weight.zero_()
        tacma.visual_value.bias.zero_()
    residual_only = tacma.audio_norm(tacma.audio_output(audio))
    assert torch.allclose(tacma(audio, visual).audio_from_visual, residual_only, atol=1e-6)


def test_theta_zero_removes_only_the_weighting() -> None:
    torch.manual_seed(0)
    audio, visual = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    tacma = TACMA(feature_dim=8, attention_dim=4, output_dim=6, theta=0.0)
    output = tacma(audio, visual)
    # The same module with Eq. (4)-(5) deleted: ReLU, row softmax, shared projections, Eq. (6)-(7).
    scores = tacma.audio_query_key(audio) @ tacma.visual_query_key(visual).transpose(1, 2)
    scores = F.relu(scores / math.sqrt(8))
    attention_av, attention_va = scores.softmax(-1), scores.transpose(1, 2).softmax(-1)
    visual_fused = attention_va @ tacma.audio_value(audio) + visual
    audio_fused = attention_av @ tacma.visual_value(visual) + audio
    assert torch.allclose(
        output.visual_from_audio, tacma.visual_norm(tacma.visual_output(visual_fused)), atol=1e-6
    )
    assert torch.allclose(
        output.audio_from_visual, tacma.audio_norm(tacma.audio_output(audio_fused)), atol=1e-6
    )
    # ... and theta > 0 with the same weights changes the result.
    weighted = TACMA(feature_dim=8, attention_dim=4, output_dim=6, theta=0.03)
    weighted.load_state_dict(tacma.state_dict())
    assert not torch.allclose(weighted(audio, visual).visual_from_audio, output.visual_from_audio)


def test_temporal_weights_diagonal_and_tiny_scores() -> None:
    attention = torch.tensor([[[0.5, 1e-12, 0.0], [0.3, 0.4, 0.3], [0.0, 0.0, 1.0]]])
    weights = temporal_weights(attention, theta=0.03)
    assert torch.all(torch.diagonal(weights[0]) == 1.0)  # |i - j| = 0, whatever M_ii is
    assert weights[0, 0, 1] == 0.0 and weights[0, 0, 2] == 0.0  # tiny and zero entries vanish
    assert weights[0, 1, 0] == pytest.approx(math.exp(-0.03 / 0.3))
    assert weights[0, 1, 2] == pytest.approx(math.exp(-0.03 / 0.3))


def test_gradients_are_finite_with_extreme_scores() -> None:
    torch.manual_seed(0)
    tacma = TACMA(feature_dim=4, attention_dim=4, output_dim=4, theta=0.03)
    audio = (torch.randn(2, 6, 4) * 50).requires_grad_()
    visual = (torch.randn(2, 6, 4) * 50).requires_grad_()
    output = tacma(audio, visual)
    (output.visual_from_audio.sum() + output.audio_from_visual.pow(2).sum()).backward()
    for parameter in tacma.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
    assert torch.isfinite(audio.grad).all() and torch.isfinite(visual.grad).all()


def test_padded_segments_do_not_change_real_ones() -> None:
    torch.manual_seed(0)
    tacma = TACMA(feature_dim=4, attention_dim=4, output_dim=4, theta=0.03).eval()
    audio, visual = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    padded_audio = torch.cat([audio, torch.randn(1, 2, 4) * 10], dim=1)
    padded_visual = torch.cat([visual, torch.randn(1, 2, 4) * 10], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    short = tacma(audio, visual)
    long = tacma(padded_audio, padded_visual, mask)
    assert torch.allclose(long.visual_from_audio[:, :3], short.visual_from_audio, atol=1e-5)
    assert torch.allclose(long.audio_from_visual[:, :3], short.audio_from_visual, atol=1e-5)
    assert torch.all(long.weighted_av[0, :, 3:] == 0) and torch.all(long.weighted_va[0, 3:] == 0)


@pytest.mark.parametrize("kind", ["audio", "visual", "sum", "tacma"])
def test_classifier_kinds_shapes_and_gradients(kind: str) -> None:
    torch.manual_seed(0)
    model = SegmentClassifier(
        kind=kind, audio_dim=6, visual_dim=6, num_outputs=4, hidden_dim=8, attention_dim=5,
        output_dim=7,
    )  # fmt: skip
    audio, visual = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    logits = model(audio, visual, mask)
    assert logits.shape == (2, 10, 4)
    labels = torch.randint(0, 4, (2, 10))
    masked_segment_cross_entropy(logits, labels, mask).backward()
    assert all(p.grad is not None for p in model.mlp.parameters())
    if kind == "tacma":
        assert model.tacma.audio_query_key.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("reading", [None, "cross", "literal"])
def test_tacma_classifier_is_the_mlp_of_both_cross_modal_streams(reading: str | None) -> None:
    # Eq. (8) with the classifier's reading of Eq. (6), the cross one by default: the same
    # weights in a standalone TACMA of that reading give the same logits.
    torch.manual_seed(0)
    setting = {} if reading is None else {"eq6_reading": reading}
    model = SegmentClassifier(
        kind="tacma", audio_dim=3, visual_dim=3, num_outputs=2, attention_dim=3, output_dim=3,
        **setting,
    )  # fmt: skip
    tacma = TACMA(
        feature_dim=3, attention_dim=3, output_dim=3, theta=0.03, eq6_reading=reading or "cross"
    )
    tacma.load_state_dict(model.tacma.state_dict())
    audio, visual = torch.randn(1, 4, 3), torch.randn(1, 4, 3) * 2.0 + 1.0
    fused = tacma(audio, visual)
    expected = model.mlp(fused.visual_from_audio + fused.audio_from_visual)
    assert torch.allclose(model(audio, visual), expected, atol=1e-6)
    other = "literal" if (reading or "cross") == "cross" else "cross"
    tacma.eq6_reading = other
    fused = tacma(audio, visual)
    unexpected = model.mlp(fused.visual_from_audio + fused.audio_from_visual)
    assert not torch.allclose(model(audio, visual), unexpected, atol=1e-4)


def test_unimodal_classifiers_read_only_their_modality() -> None:
    torch.manual_seed(0)
    audio, visual = torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    for kind, changed in (("audio", "visual"), ("visual", "audio")):
        model = SegmentClassifier(kind=kind, audio_dim=3, visual_dim=3, num_outputs=2)
        other = {"audio": audio, "visual": visual, changed: torch.randn(1, 4, 3)}
        assert torch.equal(model(audio, visual), model(other["audio"], other["visual"]))


def test_sum_is_the_mlp_of_the_summed_features() -> None:
    torch.manual_seed(0)
    model = SegmentClassifier(kind="sum", audio_dim=3, visual_dim=3, num_outputs=2)
    audio, visual = torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    assert torch.allclose(model(audio, visual), model.mlp(audio + visual))


def test_widths_must_agree_unless_projected() -> None:
    with pytest.raises(ValueError, match="input_projection_dim"):
        SegmentClassifier(kind="tacma", audio_dim=128, visual_dim=512, num_outputs=29)
    model = SegmentClassifier(
        kind="tacma", audio_dim=128, visual_dim=512, num_outputs=29, input_projection_dim=16
    )
    assert model(torch.randn(1, 10, 128), torch.randn(1, 10, 512)).shape == (1, 10, 29)


def test_cross_entropy_ignores_padding() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 5.0]]])
    labels = torch.tensor([[0, 0]])
    mask = torch.tensor([[True, False]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert masked_segment_cross_entropy(logits, labels, mask).item() == pytest.approx(expected)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="theta"):
        TACMA(feature_dim=2, attention_dim=2, output_dim=2, theta=-1.0)
    with pytest.raises(ValueError, match="eq6_reading"):
        TACMA(feature_dim=2, attention_dim=2, output_dim=2, theta=0.1, eq6_reading="other")
    with pytest.raises(ValueError, match="kind"):
        SegmentClassifier(kind="lstm", audio_dim=2, visual_dim=2, num_outputs=2)
