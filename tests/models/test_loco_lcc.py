"""LoCo's LCC loss (Sec. 3.3, Eq. 2-5): targets and loss against hand-computed values."""

import math

import pytest
import torch

from models.loco.lcc import LocalityCorrespondence, lcc_loss, lcc_targets

# The Gaussian of Eq. (3) is over the perpendicular distance d = |i - j| / sqrt(2), so its
# weight is exp(-d^2 / (2 sigma^2)) = exp(-(i - j)^2 / (4 sigma^2)); with
# sigma^2 = 1 / (4 ln 2) that is 2^(-(i - j)^2): 1, 1/2, 1/16 for |i - j| = 0, 1, 2
SIGMA = 1.0 / (2.0 * math.sqrt(math.log(2.0)))


def _block_diag(*blocks: list[list[float]]) -> torch.Tensor:
    return torch.block_diag(*(torch.tensor(b) for b in blocks))


def test_target_matrices_by_hand() -> None:
    # three videos with 3, 2 and 1 valid snippets -> N = 6; zero between videos
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert torch.equal(lcc_targets(mask, "diagonal"), torch.eye(6))
    # label smoothing over all snippets of the row's video: 0.9 [i == j] + 0.1 / n
    own, other = 0.9 + 0.1 / 3, 0.1 / 3
    smoothed = _block_diag(
        [[own, other, other], [other, own, other], [other, other, own]],
        [[0.95, 0.05], [0.05, 0.95]],
        [[1.0]],
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


def _two_videos() -> tuple[torch.Tensor, torch.Tensor]:
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    return torch.tensor([[e1, e1, e2], [e2, e2, e1]]), torch.ones(2, 3, dtype=torch.bool)


# Two videos of 3 snippets; audio = visual embeddings: video 0 (e1, e1, e2), video 1
# (e2, e2, e1). Temperature 1/2: logits 2 for equal vectors, 0 otherwise, so every row's
# softmax normaliser is Z = 3 e^2 + 3 (three e1 and three e2 columns in the batch).
# Gaussian rows (16, 8, 1)/25, (1/4, 1/2, 1/4), (1, 8, 16)/25. Cross-entropy of row i:
# log Z - sum_j y_ij logit_ij = log Z - 2 * (target mass on the row's own vector): rows 0,
# 1, 2 -> 24/25, 3/4, 16/25 in both videos; both directions equal (symmetric logits).
OWN_MASS = (24 / 25 + 3 / 4 + 16 / 25) / 3
CROSS_ENTROPY = math.log(3 * math.e**2 + 3) - 2.0 * OWN_MASS
EDGE_ROW_ENTROPY = -(16 * math.log(16 / 25) + 8 * math.log(8 / 25) + math.log(1 / 25)) / 25
MIDDLE_ROW_ENTROPY = -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))
MEAN_ENTROPY = (2 * EDGE_ROW_ENTROPY + MIDDLE_ROW_ENTROPY) / 3


def test_cross_entropy_loss_against_hand_computed_value() -> None:
    embed, mask = _two_videos()
    targets = lcc_targets(mask, "fixed_gaussian", SIGMA)
    loss = lcc_loss(embed, 3.0 * embed, mask, targets, torch.tensor(0.5))  # scale: normalised
    assert loss.item() == pytest.approx(CROSS_ENTROPY, abs=1e-5)
    assert loss.item() == pytest.approx(1.65881, abs=1e-4)
    # "kl" subtracts the targets' mean entropy
    kl = lcc_loss(embed, embed, mask, targets, torch.tensor(0.5), form="kl")
    assert kl.item() == pytest.approx(CROSS_ENTROPY - MEAN_ENTROPY, abs=1e-5)
    # padded snippets with arbitrary embeddings do not count
    padded = torch.cat([embed, torch.randn(2, 2, 2)], dim=1)
    padded_mask = torch.tensor([[1, 1, 1, 0, 0]] * 2, dtype=torch.bool)
    again = lcc_loss(padded, padded, padded_mask, targets, torch.tensor(0.5))
    assert again.item() == pytest.approx(CROSS_ENTROPY, abs=1e-5)
    # the module (projections aside) computes the same from its sigma and temperature
    module = LocalityCorrespondence(4, "fixed_gaussian", sigma=SIGMA, temperature=0.5)
    assert module(embed, embed, mask).item() == pytest.approx(CROSS_ENTROPY, abs=1e-5)
    kl_module = LocalityCorrespondence(4, "fixed_gaussian", SIGMA, temperature=0.5, loss_form="kl")
    assert kl_module(embed, embed, mask).item() == pytest.approx(kl.item(), abs=1e-6)


def test_directions_by_hand_with_audio_unlike_visual() -> None:
    # One video of 2 snippets, temperature 1, diagonal targets; audio (e1, e1), visual
    # (e1, e2): logits (rows audio) [[1, 0], [1, 0]], so the two directions differ.
    # a2v rows: log(1 + e) - 1 and log(1 + e); v2a rows (logits^T [[1, 1], [0, 0]]): log 2 each.
    # LCC = (log(1 + e) - 1/2 + log 2) / 2 (both directions from the audio rows would give
    # log(1 + e) - 1/2).
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    audio, visual = torch.tensor([[e1, e1]]), torch.tensor([[e1, e2]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    expected = (math.log(1 + math.e) - 0.5 + math.log(2.0)) / 2
    loss = lcc_loss(audio, visual, mask, lcc_targets(mask, "diagonal"), torch.tensor(1.0))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # Swapping the modalities swaps the directions: the same symmetric sum.
    swapped = lcc_loss(visual, audio, mask, lcc_targets(mask, "diagonal"), torch.tensor(1.0))
    assert swapped.item() == pytest.approx(expected, abs=1e-6)


def _reference_lcc(audio, visual, targets, temperature: float, form: str) -> float:
    """LoCo Eq. (2) and (5) in plain Python: rows i audio, columns j visual; a2v soft-maxes
    s_ij over j with targets y_ij, v2a over i with targets y_ij (the transpose, visual rows)."""

    def unit(row: list[float]) -> list[float]:
        norm = math.sqrt(sum(x * x for x in row))
        return [x / norm for x in row]

    a, v = [unit(r) for r in audio], [unit(r) for r in visual]
    n = len(a)
    s = [
        [sum(p * q for p, q in zip(a[i], v[j], strict=True)) / temperature for j in range(n)]
        for i in range(n)
    ]
    y = targets

    def logsumexp(values: list[float]) -> float:
        top = max(values)
        return top + math.log(sum(math.exp(x - top) for x in values))

    a2v = [-sum(y[i][j] * (s[i][j] - logsumexp(s[i])) for j in range(n)) for i in range(n)]
    column = [[s[i][j] for i in range(n)] for j in range(n)]
    v2a = [-sum(y[i][j] * (s[i][j] - logsumexp(column[j])) for i in range(n)) for j in range(n)]
    loss = 0.5 * (sum(a2v) / n + sum(v2a) / n)
    if form == "kl":
        plogp = [
            [y[i][j] * math.log(y[i][j]) if y[i][j] > 0 else 0.0 for j in range(n)]
            for i in range(n)
        ]
        rows = sum(sum(row) for row in plogp) / n
        columns = sum(sum(plogp[i][j] for i in range(n)) for j in range(n)) / n
        loss += 0.5 * (rows + columns)
    return loss


@pytest.mark.parametrize("form", ["cross_entropy", "kl"])
def test_loss_matches_plain_python_reference_with_asymmetric_targets(form: str) -> None:
    # Random audio unlike visual, two videos (one padded), and targets that are not symmetric
    # (rows sum to 1, columns do not), so each direction's logits and targets are checked.
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    visual = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    n = int(mask.sum())
    targets = torch.rand(n, n, generator=generator, dtype=torch.float64)
    targets[0, 1] = 0.0  # a zero target: 0 log 0 = 0 in the kl form
    targets = targets / targets.sum(dim=1, keepdim=True)
    loss = lcc_loss(audio, visual, mask, targets, torch.tensor(0.3), form=form)
    expected = _reference_lcc(
        audio[mask].tolist(), visual[mask].tolist(), targets.tolist(), 0.3, form
    )
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_learnable_sigma_temperature_and_projections_receive_gradients() -> None:
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


def test_cross_entropy_pushes_sigma_down_where_kl_fits_it() -> None:
    # unit vectors at angles 0.3 t: similarity falls with |i - j|, as a trained model's would
    angles = 0.3 * torch.arange(8.0)
    embed = torch.stack([angles.cos(), angles.sin()], dim=-1)[None]  # (1, 8, 2)
    mask = torch.ones(1, 8, dtype=torch.bool)
    grads = {}
    for form in ("cross_entropy", "kl"):
        module = LocalityCorrespondence(4, "learnable_gaussian", sigma=0.3, loss_form=form)
        module(embed, embed, mask).backward()
        grads[form] = module.log_sigma.grad.item()
    assert grads["cross_entropy"] > 0  # a descent step shrinks sigma
    assert grads["kl"] < 0  # a narrower target than the similarities show: sigma grows


def test_temperature_is_kept_in_albefs_range() -> None:
    module = LocalityCorrespondence(4, "diagonal", temperature=0.07)
    with torch.no_grad():
        module.log_temperature.fill_(0.0)  # temperature 1, above ALBEF's 0.5
    embed, mask = _two_videos()
    module(embed, embed, mask)
    assert module.log_temperature.exp().item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lcc_temperature in"):
        LocalityCorrespondence(4, temperature=0.9)
    with pytest.raises(ValueError, match="lcc_loss_form must be one of"):
        LocalityCorrespondence(4, loss_form="infonce")
