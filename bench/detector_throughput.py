"""Training throughput of the three temporal detectors at their papers' sizes.

Each detector is built from its ``configs/papers/`` file (the paper's model and training
settings), fed random features of its benchmark's widths in crops of the config's
``max_seq_len`` at the config's batch size, and trained for ``--steps`` optimiser steps (AdamW,
forward, loss, backward, gradient clipping) after one warm-up step. Prints snippets per second
(batch x sequence length x steps / seconds) and seconds per step, per detector and device.

    python bench/detector_throughput.py [--steps 3] [--device cpu|cuda] [--threads 2]

The rows (config, run, input widths):

* 2407.02318 early fusion: ``perception_test.yaml`` ``fusion``, VideoMAE V2 1408 + MMV 256;
* MRAV-FF: ``epic_kitchens_verb.yaml`` ``mravff``, SlowFast 2304 + our audio (classic, 140);
* LoCo: ``unav100_i3d_vggish.yaml`` ``loco``, I3D 2048 + VGGish 128.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import yaml

from models import build_detector
from pipeline.detection.run_config import detector_config

PAPERS = Path(__file__).resolve().parents[1] / "configs" / "papers"
ROWS = (
    ("2407.02318 fusion", "perception_test.yaml", "fusion", {"audio": 256, "visual": 1408}, 17),
    ("MRAV-FF", "epic_kitchens_verb.yaml", "mravff", {"audio": 140, "visual": 2304}, 97),
    ("LoCo", "unav100_i3d_vggish.yaml", "loco", {"audio": 128, "visual": 2048}, 100),
)


def measure(config_name: str, run: str, dims: dict, classes: int, steps: int, device: str):
    """(seconds per step, snippets per second, parameters in millions) of one detector."""
    config = yaml.safe_load((PAPERS / config_name).read_text())
    training, model_cfg = config["training"], config["runs"][run]["model"]
    batch, length = training["batch_size"], training["max_seq_len"]
    grid = 1.0  # seconds per grid unit; only the post-processing margin reads it
    detector = build_detector(
        detector_config(model_cfg, dims, classes, window_s=grid, stride_s=grid)
    ).to(device)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=1e-4)
    inputs = {
        name: torch.randn(batch, length, width, device=device) for name, width in dims.items()
    }
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    segments = [torch.tensor([[length * 0.2, length * 0.5]]) for _ in range(batch)]
    labels = [torch.tensor([1]) for _ in range(batch)]

    def step() -> None:
        losses = detector.loss(detector(inputs, mask), segments, labels)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(detector.parameters(), 1.0)
        optimizer.step()

    detector.train()
    step()  # warm-up: allocations, lazy initialisation
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    parameters = sum(p.numel() for p in detector.parameters()) / 1e6
    return seconds, batch * length / seconds, parameters, batch, length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps per detector")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(f"device {args.device} ({where or platform.machine()}), {args.threads} CPU threads")
    print("| detector | config | batch x length | parameters (M) | s / step | snippets / s |")
    print("|---|---|---|---|---|---|")
    for label, config_name, run, dims, classes in ROWS:
        seconds, rate, parameters, batch, length = measure(
            config_name, run, dims, classes, args.steps, args.device
        )
        print(
            f"| {label} | {config_name} `{run}` | {batch} x {length} | {parameters:.1f} | "
            f"{seconds:.2f} | {rate:.0f} |"
        )


if __name__ == "__main__":
    main()
