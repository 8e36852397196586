"""Cost of LoCo's CDP cross-attention against fixed-window and global cross-attention.

For T in (256, 1024, 4096) snippets, one video, C channels, H heads and base window w,
times the forward pass (no grad) and forward + backward of the three attention modules of
``models.loco`` (``SlidingWindowCrossAttention`` with ``adaptive`` True (CDP, LoCo Sec. 3.4)
and False (the "Fixed" sliding window of Table 2(c)), and ``MaskedCrossAttention``, the
dense "Global"), and counts their forward FLOPs: ``torch.utils.flop_counter.FlopCounterMode``
(matrix products and convolutions) plus, for the two sliding windows, the windowed
products that FlopCounterMode does not see (computed as elementwise products:
``SlidingWindowCrossAttention.attention_flops``). The interpolation gathers and the
softmax are not counted; the timings include them. Times are the best of ``--repeats``
interleaved runs in CPU time of one thread. Prints a Markdown table and the CDP /
fixed-window ratios; the target is CDP <= 1.3x fixed-window in time.

    OMP_NUM_THREADS=1 python bench/cdp_cost.py [--channels 512] [--heads 4] [--window 8]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads its BLAS

import argparse
import platform
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models.cross_attention import MaskedCrossAttention
from models.loco.cdp import SlidingWindowCrossAttention

LENGTHS = (256, 1024, 4096)
TARGET_RATIO = 1.3


def build(kind: str, channels: int, heads: int, window: int) -> nn.Module:
    """One attention module: "cdp", "fixed_window" or "global"."""
    if kind == "global":
        return MaskedCrossAttention(channels, channels, channels, heads)
    module = SlidingWindowCrossAttention(channels, heads, window, adaptive=kind == "cdp")
    if kind == "cdp":
        # non-trivial windows (fractional positions) so the interpolation really runs
        nn.init.normal_(module.window_regressor.weight, std=0.1)
    return module


def call(
    module: nn.Module, query: torch.Tensor, context: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Run either attention signature."""
    if isinstance(module, MaskedCrossAttention):
        return module(query, mask, context, mask)
    return module(query, context, mask)


def best_times(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Best CPU time of ``repeats`` runs of every step, after one warm-up each, seconds.

    The steps run interleaved (one of each per round) and are timed with
    ``time.thread_time`` (this thread's CPU time; torch runs single-threaded here), so
    that other processes on a shared machine shift neither the times nor their ratios.
    """
    for step in steps.values():
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.thread_time()
            step()
            best[name] = min(best[name], time.thread_time() - started)
    return best


def measure(length: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Forward FLOPs, forward and forward + backward seconds of the three modules."""
    torch.manual_seed(0)
    query = torch.randn(1, args.channels, length)
    context = torch.randn(1, args.channels, length)
    mask = torch.ones(1, length, dtype=torch.bool)
    modules = {
        kind: build(kind, args.channels, args.heads, args.window)
        for kind in ("fixed_window", "cdp", "global")
    }
    rows: dict[str, dict[str, float]] = {}
    for kind, module in modules.items():
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            call(module, query, context, mask)
        windowed = 0
        if isinstance(module, SlidingWindowCrossAttention):
            windowed = module.attention_flops(1, length)
        rows[kind] = {"gflops": (counter.get_total_flops() + windowed) / 1e9}

    def forward(module: nn.Module) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                call(module, query, context, mask)

        return step

    def forward_backward(module: nn.Module) -> Callable[[], None]:
        def step() -> None:
            module.zero_grad(set_to_none=True)
            call(module, query, context, mask).sum().backward()

        return step

    forward_s = best_times({k: forward(m) for k, m in modules.items()}, args.repeats)
    train_s = best_times({k: forward_backward(m) for k, m in modules.items()}, args.repeats)
    for kind in modules:
        rows[kind].update(forward_s=forward_s[kind], train_s=train_s[kind])
    return rows


def main() -> None:
    """Parse arguments, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"C={args.channels}, H={args.heads}, w={args.window}, batch 1, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.processor()}"
    )
    print("| T | attention | forward GFLOPs | forward CPU ms | fwd+bwd CPU ms |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for length in LENGTHS:
        rows = measure(length, args)
        for kind, row in rows.items():
            print(
                f"| {length} | {kind} | {row['gflops']:.3f} | {1e3 * row['forward_s']:.1f} | "
                f"{1e3 * row['train_s']:.1f} |"
            )
        flops = rows["cdp"]["gflops"] / rows["fixed_window"]["gflops"]
        forward = rows["cdp"]["forward_s"] / rows["fixed_window"]["forward_s"]
        train = rows["cdp"]["train_s"] / rows["fixed_window"]["train_s"]
        worst = max(worst, forward, train)
        print(f"|   | cdp / fixed | {flops:.3f}x | {forward:.2f}x | {train:.2f}x |")
    verdict = "within" if worst <= TARGET_RATIO else "ABOVE"
    print(f"worst CDP / fixed-window time ratio {worst:.2f}x: {verdict} the {TARGET_RATIO}x target")


if __name__ == "__main__":
    main()
