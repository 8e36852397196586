"""Optimiser, learning-rate schedule (linear warm-up, cosine decay, per step) and weight EMA."""

from __future__ import annotations

import math

import torch
from torch import nn


class WarmupCosine:
    """Learning-rate factor of optimiser step ``step`` (a ``LambdaLR`` lambda).

    Linear warm-up ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, then cosine
    decay ``0.5 * (1 + cos(pi * progress))`` from 1 to 0 over the remaining steps (SGDR,
    arXiv 1608.03983, Eq. 5 with one cycle and a minimum of 0).

    Args:
        warmup_steps: steps of linear warm-up (0: none).
        total_steps: all optimiser steps of the run.
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, *, learning_rate: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW (arXiv 1711.05101) with weight decay on weight matrices only.

    Biases, normalisation gains and scalar scales (parameters with at most one dimension) get no
    decay, as in ActionFormer's training recipe.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :class:`WarmupCosine` schedule; its state dict holds only plain numbers."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps))


class WarmupEMA:
    """Update rule for ``torch.optim.swa_utils.AveragedModel``: an exponential moving average of
    the weights whose decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))``.

    The warm-up (the ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``) keeps the
    random initial weights from dominating the average of a short run; after about
    ``10 / (1 - decay)`` updates it is the plain EMA with ``decay``.

    Args:
        decay: the EMA decay once warmed up, in [0, 1].
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"training.ema_decay must be in [0, 1], got {decay}")
        self.decay = decay

    def decay_after(self, num_updates: int) -> float:
        """The decay applied by the update that follows ``num_updates`` earlier ones."""
        return min(self.decay, (1.0 + num_updates) / (10.0 + num_updates))

    @torch.no_grad()
    def __call__(
        self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_updates: torch.Tensor
    ) -> None:
        weight = 1.0 - self.decay_after(int(num_updates))
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:
                average.copy_(value)  # integer buffers (counters) follow the model
