"""Tests of pipeline.segments.lars against updates and schedule values computed by hand."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from pipeline.segments.lars import LARS, lars_param_groups, warmup_cosine_factor

WEIGHT_LR = 0.5
BIAS_LR = 0.2
WEIGHT_DECAY = 0.5
ETA = 0.1
MOMENTUM = 0.9


def _parameter(values: list) -> nn.Parameter:
    """A float64 parameter holding ``values``."""
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _grad(values: list) -> torch.Tensor:
    """A float64 gradient holding ``values``."""
    return torch.tensor(values, dtype=torch.float64)


def _weight_and_bias_optimizer(
    layout: str,
) -> tuple[nn.Parameter, nn.Parameter, LARS]:
    """A 2x2 weight ``[[3, 0], [0, 4]]`` (norm 5), a bias ``[1, -2]`` and a LARS over them.

    Args:
        layout: "two_groups" (Barlow Twins' split, filters on the bias group only) or "one_group"
            (both in one group with both filters on: the filters must spare the 2-D weight).
    """
    weight = _parameter([[3.0, 0.0], [0.0, 4.0]])
    bias = _parameter([1.0, -2.0])
    hyper = {"weight_decay": WEIGHT_DECAY, "eta": ETA, "momentum": MOMENTUM}
    if layout == "two_groups":
        groups = [
            {"params": [weight], "lr": WEIGHT_LR},
            {
                "params": [bias],
                "lr": BIAS_LR,
                "weight_decay_filter": True,
                "lars_adaptation_filter": True,
            },
        ]
        return weight, bias, LARS(groups, lr=0.0, **hyper)
    groups = [{"params": [weight], "lr": WEIGHT_LR}, {"params": [bias], "lr": BIAS_LR}]
    optimizer = LARS(groups, lr=0.0, weight_decay_filter=True, lars_adaptation_filter=True, **hyper)
    return weight, bias, optimizer


@pytest.mark.parametrize("layout", ["two_groups", "one_group"])
def test_first_step_adapts_and_decays_weights_but_not_biases(layout: str) -> None:
    weight, bias, optimizer = _weight_and_bias_optimizer(layout)
    weight.grad = _grad([[0.0, 1.0], [2.0, 0.0]])  # not parallel to the weight
    bias.grad = _grad([0.5, 0.25])
    optimizer.step()

    # d = g + wd * w = [[1.5, 1], [2, 2]], ||d||^2 = 2.25 + 1 + 4 + 4 = 11.25, ||w|| = 5.
    ratio = ETA * 5.0 / math.sqrt(11.25)
    step = WEIGHT_LR * ratio  # the momentum buffer starts at 0, so it equals ratio * d
    expected_weight = _grad(
        [[3.0 - step * 1.5, 0.0 - step * 1.0], [0.0 - step * 2.0, 4.0 - step * 2.0]]
    )
    torch.testing.assert_close(weight.detach(), expected_weight)
    # Bias: plain lr * g, no decay and no trust ratio.
    torch.testing.assert_close(bias.detach(), _grad([1.0 - 0.2 * 0.5, -2.0 - 0.2 * 0.25]))


def test_second_step_accumulates_momentum() -> None:
    weight, bias, optimizer = _weight_and_bias_optimizer("two_groups")
    weight.grad = _grad([[0.0, 1.0], [2.0, 0.0]])
    bias.grad = _grad([0.5, 0.25])
    optimizer.step()
    weight_1 = weight.detach().clone()
    buffer_1 = ETA * 5.0 / math.sqrt(11.25) * _grad([[1.5, 1.0], [2.0, 2.0]])

    weight.grad = _grad([[1.0, 0.0], [0.0, -1.0]])
    bias.grad = _grad([-1.0, 1.0])
    optimizer.step()

    decayed = _grad([[1.0, 0.0], [0.0, -1.0]]) + WEIGHT_DECAY * weight_1
    ratio_2 = ETA * weight_1.norm() / decayed.norm()
    buffer_2 = MOMENTUM * buffer_1 + ratio_2 * decayed
    torch.testing.assert_close(optimizer.state[weight]["momentum_buffer"], buffer_2)
    torch.testing.assert_close(weight.detach(), weight_1 - WEIGHT_LR * buffer_2)
    # Bias buffer: 0.9 * [0.5, 0.25] + [-1, 1] = [-0.55, 1.225]; b1 = [0.9, -2.05].
    torch.testing.assert_close(bias.detach(), _grad([0.9 + 0.2 * 0.55, -2.05 - 0.2 * 1.225]))


def test_bias_in_unfiltered_group_is_decayed_and_adapted() -> None:
    bias = _parameter([1.0, -2.0])
    optimizer = LARS([bias], lr=BIAS_LR, weight_decay=WEIGHT_DECAY, eta=ETA)
    bias.grad = _grad([0.5, 0.25])
    optimizer.step()
    # d = [0.5 + 0.5, 0.25 - 1] = [1, -0.75], ||d|| = 1.25, ||b|| = sqrt(5).
    ratio = ETA * math.sqrt(5.0) / 1.25
    expected = _grad([1.0 - BIAS_LR * ratio * 1.0, -2.0 + BIAS_LR * ratio * 0.75])
    torch.testing.assert_close(bias.detach(), expected)


def test_default_eta_and_momentum() -> None:
    weight = _parameter([[3.0, 0.0], [0.0, 4.0]])
    optimizer = LARS([weight], lr=1.0)
    group = optimizer.param_groups[0]
    assert (group["eta"], group["momentum"], group["weight_decay"]) == (0.001, 0.9, 0.0)
    assert not group["weight_decay_filter"] and not group["lars_adaptation_filter"]
    weight.grad = _grad([[0.0, 1.0], [2.0, 0.0]])  # ||g|| = sqrt(5)
    optimizer.step()
    ratio = 0.001 * 5.0 / math.sqrt(5.0)
    torch.testing.assert_close(weight.detach(), _grad([[3.0, -ratio], [-2.0 * ratio, 4.0]]))


def test_zero_weight_norm_uses_ratio_one() -> None:
    weight = _parameter([[0.0, 0.0], [0.0, 0.0]])
    optimizer = LARS([weight], lr=WEIGHT_LR, weight_decay=0.1, eta=ETA)
    weight.grad = _grad([[1.0, 2.0], [2.0, 4.0]])
    optimizer.step()
    # eta * 0 / ||g|| would freeze the weight at zero forever; the ratio is 1 instead.
    torch.testing.assert_close(weight.detach(), _grad([[-0.5, -1.0], [-1.0, -2.0]]))


def test_zero_gradient_leaves_weight_finite_and_unchanged() -> None:
    weight = _parameter([[3.0, 0.0], [0.0, 4.0]])
    optimizer = LARS([weight], lr=WEIGHT_LR, eta=ETA)
    weight.grad = torch.zeros_like(weight)
    optimizer.step()
    torch.testing.assert_close(weight.detach(), _grad([[3.0, 0.0], [0.0, 4.0]]))


def test_step_runs_closure_and_skips_parameters_without_gradient() -> None:
    bias = _parameter([1.0, -2.0])
    untouched = _parameter([[1.0, 1.0], [1.0, 1.0]])
    optimizer = LARS(
        [bias, untouched], lr=BIAS_LR, weight_decay_filter=True, lars_adaptation_filter=True
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (bias * _grad([3.0, -1.0])).sum()  # d loss / d bias = [3, -1]
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss is not None and loss.item() == pytest.approx(3.0 * 1.0 + (-1.0) * (-2.0))
    torch.testing.assert_close(bias.detach(), _grad([1.0 - 0.2 * 3.0, -2.0 + 0.2 * 1.0]))
    torch.testing.assert_close(untouched.detach(), _grad([[1.0, 1.0], [1.0, 1.0]]))
    assert untouched not in optimizer.state


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"lr": -0.1}, "-0.1"),
        ({"weight_decay": -1e-6}, "-1e-06"),
        ({"momentum": 1.0}, "1.0"),
        ({"momentum": -0.5}, "-0.5"),
        ({"eta": 0.0}, "0.0"),
    ],
)
def test_lars_rejects_invalid_hyperparameters(kwargs: dict, value: str) -> None:
    arguments = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=value):
        LARS([_parameter([1.0])], **arguments)


def test_param_groups_split_weights_from_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    weights, biases = lars_param_groups(model, lr_weights=0.2, lr_biases=0.0048)
    assert [id(p) for p in weights["params"]] == [id(model[0].weight), id(model[2].weight)]
    expected_biases = [model[0].bias, model[1].weight, model[1].bias, model[2].bias]
    assert [id(p) for p in biases["params"]] == [id(p) for p in expected_biases]
    assert (weights["lr"], biases["lr"]) == (0.2, 0.0048)
    assert not weights["weight_decay_filter"] and not weights["lars_adaptation_filter"]
    assert biases["weight_decay_filter"] and biases["lars_adaptation_filter"]


def test_param_groups_count_shared_module_once_and_skip_frozen() -> None:
    shared = nn.Linear(2, 2)
    frozen = nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)
    model = nn.Sequential(shared, nn.ReLU(), shared, frozen)
    weights, biases = lars_param_groups(model, lr_weights=0.2, lr_biases=0.0048)
    assert [id(p) for p in weights["params"]] == [id(shared.weight)]
    assert [id(p) for p in biases["params"]] == [id(shared.bias), id(frozen.bias)]


def test_param_groups_drive_lars_as_barlow_twins_does() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = LARS(
        lars_param_groups(model, lr_weights=0.2, lr_biases=0.0048), lr=0.0, weight_decay=0.1
    )
    model(torch.rand(5, 3)).pow(2).sum().backward()
    norm_gain = model[1].weight.detach().clone()
    expected_gain = norm_gain - 0.0048 * model[1].weight.grad  # no decay, no adaptation
    optimizer.step()
    torch.testing.assert_close(model[1].weight.detach(), expected_gain)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),  # start of warm-up
        (5, 0.5),  # half-way through warm-up
        (10, 1.0),  # end of warm-up: peak
        (60, (1.0 + 0.1) / 2),  # cosine midpoint
        (110, 0.1),  # end: final_fraction
    ],
)
def test_warmup_cosine_factor_values(step: int, expected: float) -> None:
    factor = warmup_cosine_factor(step, total_steps=110, warmup_steps=10, final_fraction=0.1)
    assert factor == pytest.approx(expected)


def test_warmup_cosine_factor_without_warmup_and_as_lambda_lr() -> None:
    assert warmup_cosine_factor(0, total_steps=4, warmup_steps=0, final_fraction=0.0) == 1.0
    # Cosine quarter point: q = 0.5 * (1 + cos(pi / 4)), factor = q + 0.2 * (1 - q).
    quarter = 0.5 * (1.0 + math.cos(math.pi / 4))
    assert warmup_cosine_factor(1, 4, 0, 0.2) == pytest.approx(quarter + 0.2 * (1.0 - quarter))

    optimizer = LARS([_parameter([[1.0]])], lr=2.0)
    schedule = functools.partial(
        warmup_cosine_factor, total_steps=4, warmup_steps=2, final_fraction=0.1
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    learning_rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        learning_rates.append(optimizer.param_groups[0]["lr"])
    assert learning_rates == pytest.approx([0.0, 1.0, 2.0, 2.0 * 0.55, 0.2])


@pytest.mark.parametrize(
    ("arguments", "value"),
    [
        ({"total_steps": 0}, "total_steps must be >= 1, got 0"),
        ({"warmup_steps": -1}, "got -1"),
        ({"warmup_steps": 100}, "warmup_steps .* got 100"),
        ({"final_fraction": 1.5}, "got 1.5"),
        ({"final_fraction": -0.1}, "got -0.1"),
        ({"step": -1}, "step must be .* got -1"),
        ({"step": 101}, "step must be .* got 101"),
    ],
)
def test_warmup_cosine_factor_rejects_invalid_arguments(arguments: dict, value: str) -> None:
    valid = {"step": 0, "total_steps": 100, "warmup_steps": 10, "final_fraction": 0.1}
    with pytest.raises(ValueError, match=value):
        warmup_cosine_factor(**{**valid, **arguments})
