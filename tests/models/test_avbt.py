"""Tests of models.avbt: AV-BT Eq. (1)-(2) by hand, the per-video (time-axis) correlation,
the CNN + Bi-LSTM encoders and the shared projector."""

from __future__ import annotations

import io
import math

import pytest
import torch

from models.avbt import (
    AVBarlowTwins,
    BackboneConfig,
    Projector,
    SegmentEncoder,
    avbt_loss,
    cross_correlation,
)

ZA = [[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]]  # one video, T = 3 segments, d = 2
ZV = [[2.0, 1.0], [0.0, 1.0], [1.0, 4.0]]


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def _column(rows: list[list[float]], index: int) -> list[float]:
    return [row[index] for row in rows]


def _hand_correlation(za: list[list[float]], zv: list[list[float]]) -> list[list[float]]:
    """Eq. (1) after the time normalisation: Pearson correlation of columns i and j."""
    return [[_pearson(_column(za, i), _column(zv, j)) for j in range(2)] for i in range(2)]


def test_eq1_and_eq2_by_hand() -> None:
    c = _hand_correlation(ZA, ZV)
    lam = 5e-3
    expected = (1 - c[0][0]) ** 2 + (1 - c[1][1]) ** 2 + lam * (c[0][1] ** 2 + c[1][0] ** 2)
    za, zv = torch.tensor([ZA]), torch.tensor([ZV])
    assert torch.allclose(cross_correlation(za, zv), torch.tensor(c), atol=1e-6)
    assert avbt_loss(za, zv, lam).item() == pytest.approx(expected, rel=1e-5)


def test_correlation_is_per_video_then_averaged() -> None:
    other_a = [[0.0, 1.0], [1.0, -1.0], [4.0, 0.5]]
    other_v = [[1.0, 0.0], [3.0, 2.0], [0.0, 1.0]]
    first, second = _hand_correlation(ZA, ZV), _hand_correlation(other_a, other_v)
    expected = [[(first[i][j] + second[i][j]) / 2 for j in range(2)] for i in range(2)]
    za, zv = torch.tensor([ZA, other_a]), torch.tensor([ZV, other_v])
    assert torch.allclose(cross_correlation(za, zv), torch.tensor(expected), atol=1e-6)
    # Not Barlow Twins' correlation over the 6 pooled segments.
    pooled = _hand_correlation(ZA + other_a, ZV + other_v)
    assert not torch.allclose(cross_correlation(za, zv), torch.tensor(pooled), atol=1e-2)


def test_identical_decorrelated_projections_give_zero_loss() -> None:
    z = torch.tensor([[[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]])  # centred, orthogonal
    assert avbt_loss(z, z, 5e-3).item() == pytest.approx(0.0, abs=1e-6)


def test_padding_is_ignored_and_short_videos_refused() -> None:
    za = torch.tensor([[*ZA, [9.0, 9.0]]])
    zv = torch.tensor([[*ZV, [-7.0, 3.0]]])
    mask = torch.tensor([[True, True, True, False]])
    expected = cross_correlation(torch.tensor([ZA]), torch.tensor([ZV]))
    assert torch.allclose(cross_correlation(za, zv, mask), expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 segments"):
        cross_correlation(za, zv, torch.tensor([[True, False, False, False]]))
    with pytest.raises(ValueError, match="one shape"):
        cross_correlation(torch.zeros(1, 3, 2), torch.zeros(1, 3, 4))


def _small_model(**kwargs) -> AVBarlowTwins:
    conv = BackboneConfig(name="conv", conv_width=4, conv_depth=2, conv_dim=8)
    options = {
        "audio_backbone": conv,
        "visual_backbone": conv,
        "feature_dim": 6,
        "projector_dims": (10, 10, 12),
    }
    return AVBarlowTwins(**(options | kwargs))


def test_model_shapes_gradients_and_padding() -> None:
    torch.manual_seed(0)
    model = _small_model()
    log_mel, frames = torch.randn(2, 5, 1, 96, 64), torch.rand(2, 5, 3, 32, 32)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    out = model(log_mel, frames, mask)
    assert out.audio_features.shape == (2, 5, 6) and out.visual_projection.shape == (2, 5, 12)
    assert torch.all(out.audio_features[1, 3:] == 0) and torch.all(out.audio_projection[1, 3:] == 0)
    avbt_loss(out.audio_projection, out.visual_projection, 5e-3, mask).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
    # The Bi-LSTM gives context: changing segment 0 changes the features of segment 2.
    model.eval()
    changed = frames.clone()
    changed[0, 0] = torch.rand(3, 32, 32)
    with torch.no_grad():
        before = model.visual_encoder(frames, mask)[0, 2]
        after = model.visual_encoder(changed, mask)[0, 2]
    assert not torch.allclose(before, after)


def test_bilstm_ignores_padded_segments() -> None:
    torch.manual_seed(0)
    encoder = SegmentEncoder(torch.nn.Flatten(), 4, 6).eval()
    segments = torch.randn(1, 3, 4, 1, 1)
    padded = torch.cat([segments, torch.randn(1, 2, 4, 1, 1)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    assert torch.allclose(encoder(padded, mask)[:, :3], encoder(segments), atol=1e-6)


def test_shared_and_separate_projectors() -> None:
    shared = _small_model()
    separate = _small_model(shared_projector=False)
    assert shared.audio_projector is shared.visual_projector
    assert separate.audio_projector is not separate.visual_projector
    extra = sum(p.numel() for p in separate.visual_projector.parameters())
    assert sum(p.numel() for p in separate.parameters()) == (
        sum(p.numel() for p in shared.parameters()) + extra
    )


def test_projector_has_three_linear_layers_of_the_given_widths() -> None:
    projector = Projector(6, (2048, 4096, 4096))
    linears = [m for m in projector.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (6, 2048), (2048, 4096), (4096, 4096),
    ]  # fmt: skip


def test_temporal_none_has_no_context() -> None:
    torch.manual_seed(0)
    encoder = SegmentEncoder(torch.nn.Flatten(), 4, 6, temporal="none")
    segments = torch.randn(1, 3, 4, 1, 1)
    changed = segments.clone()
    changed[0, 0] = 5.0
    assert torch.equal(encoder(segments)[0, 2], encoder(changed)[0, 2])


def test_state_dict_round_trip_with_weights_only() -> None:
    model = _small_model()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = _small_model()
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    for name, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[name]), name


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="backbone"):
        _small_model(audio_backbone=BackboneConfig(name="vgg99"))
    with pytest.raises(ValueError, match="temporal"):
        SegmentEncoder(torch.nn.Flatten(), 4, 6, temporal="gru")
    with pytest.raises(ValueError, match="even"):
        SegmentEncoder(torch.nn.Flatten(), 4, 5)
