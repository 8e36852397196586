"""LARS optimiser, its parameter groups and learning-rate schedule as Barlow Twins trains with them.

LARS (layer-wise adaptive rate scaling, You, Gitman and Ginsburg, arXiv 1708.03888, Eq. 6 and
Algorithm 1) scales the step of each weight tensor by a trust ratio ``eta * ||w|| / ||g + wd * w||``
before SGD with momentum. Barlow Twins (Zbontar et al., arXiv 2103.03230, Sec. 3 and its official
``main.py``) uses it with momentum 0.9 and weight decay 1.5e-6 (the paper's value; ``main.py``
defaults to 1e-6), leaves biases and normalisation parameters out of both the weight decay and the
trust ratio, gives them a learning rate of their own (base 0.0048 against 0.2 for weights, each
times ``batch_size / 256``), and warms the learning rate up linearly for 10 epochs before a cosine
decay. AV-BT (Applied Sciences 12(24) 12622, Sec. 4.1) trains with that recipe for 100 epochs at
batch 128, multiplies both learning rates by 2e-4 and ends the cosine decay at a tenth of the peak.

Typical use, one scheduler step per optimiser step::

    optimizer = LARS(lars_param_groups(model, lr_weights, lr_biases), lr=0.0, weight_decay=1.5e-6)
    schedule = functools.partial(
        warmup_cosine_factor, total_steps=total, warmup_steps=warmup, final_fraction=0.1
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def _is_bias_or_norm(parameter: torch.Tensor) -> bool:
    """Whether ``parameter`` is a bias, a normalisation gain or shift, or a scalar (ndim <= 1)."""
    return parameter.ndim <= 1


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose weight steps are scaled layer by layer (arXiv 1708.03888).

    For each parameter ``w`` with gradient ``g`` in a group with learning rate ``lr``::

        d = g + weight_decay * w                       # unless filtered out
        d = d * eta * ||w|| / ||d||                    # unless filtered out; ratio 1 if a norm is 0
        buffer = momentum * buffer + d                 # buffer starts at 0, so first step: d
        w = w - lr * buffer

    The filters exclude parameters with at most one dimension (biases, normalisation parameters,
    scalars) from decay or adaptation; every option may be overridden per parameter group, so the
    biases can sit in a group of their own with both filters on (see :func:`lars_param_groups`).

    Args:
        params: parameters, or dicts of parameter groups, to optimise.
        lr: learning rate (groups may set their own), >= 0.
        weight_decay: L2 penalty added to the gradient before the trust ratio, >= 0.
        momentum: momentum factor of the heavy-ball buffer, in [0, 1).
        eta: LARS trust coefficient of the ratio ``eta * ||w|| / ||d||``, > 0.
        weight_decay_filter: if True, parameters with ndim <= 1 get no weight decay.
        lars_adaptation_filter: if True, parameters with ndim <= 1 get no trust ratio.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.001,
        weight_decay_filter: bool = False,
        lars_adaptation_filter: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"LARS lr must be >= 0, got {lr}")
        if not weight_decay >= 0.0:
            raise ValueError(f"LARS weight_decay must be >= 0, got {weight_decay}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS momentum must be in [0, 1), got {momentum}")
        if not eta > 0.0:
            raise ValueError(f"LARS eta must be > 0, got {eta}")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "eta": eta,
            "weight_decay_filter": weight_decay_filter,
            "lars_adaptation_filter": lars_adaptation_filter,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient once.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it runs
                with gradients enabled before the update.

        Returns:
            The loss ``closure`` returned, or None without a closure.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if parameter.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                update = parameter.grad
                excluded = _is_bias_or_norm(parameter)
                if not (group["weight_decay_filter"] and excluded):
                    update = update.add(parameter, alpha=group["weight_decay"])
                if not (group["lars_adaptation_filter"] and excluded):
                    weight_norm = torch.linalg.vector_norm(parameter)
                    update_norm = torch.linalg.vector_norm(update)
                    # arXiv 1708.03888 Eq. 6 with weight decay inside the norm; 1 if either is 0.
                    trust_ratio = torch.where(
                        (weight_norm > 0) & (update_norm > 0),
                        group["eta"] * weight_norm / update_norm,
                        torch.ones_like(weight_norm),
                    )
                    update = update.mul(trust_ratio)
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(parameter)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(update)
                parameter.add_(buffer, alpha=-group["lr"])
        return loss


def lars_param_groups(model: nn.Module, lr_weights: float, lr_biases: float) -> list[dict]:
    """Barlow Twins' two parameter groups for :class:`LARS`: weights, then biases and norms.

    The first group holds parameters with more than one dimension (decayed and adapted); the
    second holds those with at most one (biases, normalisation gains and shifts, scalars) with
    both LARS filters on, so they get neither weight decay nor the trust ratio. Parameters that do
    not require gradients are left out; a parameter shared by several modules appears once. Both
    groups are always returned (possibly empty) so that their indices are fixed.

    Args:
        model: the module whose parameters are split.
        lr_weights: learning rate of the weight group.
        lr_biases: learning rate of the bias and normalisation group.

    Returns:
        ``[weights_group, biases_group]``, each a dict with ``params``, ``lr`` and the filters,
        plus a ``name`` ("weights" or "biases") for logs.
    """
    weights: list[nn.Parameter] = []
    biases: list[nn.Parameter] = []
    for parameter in model.parameters():  # yields each shared parameter once
        if parameter.requires_grad:
            (biases if _is_bias_or_norm(parameter) else weights).append(parameter)
    return [
        {
            "name": "weights",
            "params": weights,
            "lr": lr_weights,
            "weight_decay_filter": False,
            "lars_adaptation_filter": False,
        },
        {
            "name": "biases",
            "params": biases,
            "lr": lr_biases,
            "weight_decay_filter": True,
            "lars_adaptation_filter": True,
        },
    ]


def warmup_cosine_factor(
    step: int, total_steps: int, warmup_steps: int, final_fraction: float
) -> float:
    """Learning-rate factor of step ``step``: linear warm-up, then cosine decay to a floor.

    ``step / warmup_steps`` rises from 0 to 1 over the warm-up; afterwards, with
    ``q = 0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))``, the factor
    is ``q + final_fraction * (1 - q)``: 1 at the end of the warm-up, ``(1 + final_fraction) / 2``
    half-way and ``final_fraction`` at ``total_steps`` (Barlow Twins' ``adjust_learning_rate``,
    whose floor is 0.001; AV-BT's "reduced by a factor of 10" is ``final_fraction=0.1``).

    Args:
        step: optimiser steps taken so far, in [0, total_steps].
        total_steps: all optimiser steps of the run, >= 1.
        warmup_steps: steps of linear warm-up, in [0, total_steps).
        final_fraction: factor reached at ``total_steps``, in [0, 1].

    Returns:
        The factor to multiply each group's peak learning rate by.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}"
        )
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    if step < warmup_steps:
        return step / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cosine + final_fraction * (1.0 - cosine)
