"""Training throughput of AV-BT pre-training and of TACMA at the paper's sizes.

AV-BT (Sec. 4.1): ResNet-50 on 224 x 224 crops of one frame per segment, VGGish on 96 x 64
log-mels, Bi-LSTMs of 2 x 256, the 2048/4096/4096 projector, Eq. (2), LARS; batches of
``--videos`` AVE clips of 10 one-second segments (the paper: 128, which needs a GPU). The
CNNs are randomly initialised (the same cost as the pretrained ones). TACMA: d_l = 512, the
default widths, Adam, batches of 128 videos. Prints segments per second of optimisation
(forward + backward + step; data loading and augmentation excluded), best of ``--steps``.

    python bench/segments_throughput.py [--device cpu|cuda] [--videos 4] [--steps 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from models.avbt import AVBarlowTwins, BackboneConfig, avbt_loss
from models.tacma import SegmentClassifier, masked_segment_cross_entropy
from pipeline.segments.lars import LARS, lars_param_groups

SEGMENTS = 10  # AVE: ten one-second segments per clip
CLASSES = 29  # AVE: 28 events + background


def best_step_seconds(step, steps: int, device: torch.device) -> float:
    """The fastest of ``steps`` calls of ``step`` (after one warm-up call), in seconds."""
    step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def avbt_throughput(videos: int, steps: int, device: torch.device) -> float:
    model = AVBarlowTwins(
        audio_backbone=BackboneConfig(name="vggish"),
        visual_backbone=BackboneConfig(name="resnet50"),
    ).to(device)
    optimizer = LARS(lars_param_groups(model, 0.2 * 2e-4, 0.0048 * 2e-4), lr=0.0)
    log_mel = torch.randn(videos, SEGMENTS, 1, 96, 64, device=device)
    frames = torch.rand(videos, SEGMENTS, 3, 224, 224, device=device)

    def step() -> None:
        out = model(log_mel, frames)
        loss = avbt_loss(out.audio_projection, out.visual_projection, 5e-3)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return videos * SEGMENTS / best_step_seconds(step, steps, device)


def tacma_throughput(videos: int, steps: int, device: torch.device) -> float:
    model = SegmentClassifier(kind="tacma", audio_dim=512, visual_dim=512, num_outputs=CLASSES)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    audio = torch.randn(videos, SEGMENTS, 512, device=device)
    visual = torch.randn(videos, SEGMENTS, 512, device=device)
    labels = torch.randint(0, CLASSES, (videos, SEGMENTS), device=device)
    mask = torch.ones(videos, SEGMENTS, dtype=torch.bool, device=device)

    def step() -> None:
        loss = masked_segment_cross_entropy(model(audio, visual, mask), labels, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return videos * SEGMENTS / best_step_seconds(step, steps, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--videos", type=int, default=4, help="AV-BT videos per batch")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (best is kept)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, device {device}, torch {torch.__version__}")  # fmt: skip
    avbt = avbt_throughput(args.videos, args.steps, device)
    print(f"AV-BT pre-training (ResNet-50 + VGGish + Bi-LSTM + projector, LARS), batch "
          f"{args.videos} videos x {SEGMENTS} segments: {avbt:,.1f} segments/s")  # fmt: skip
    tacma = tacma_throughput(128, args.steps, device)
    print(f"TACMA training (d_l 512, Adam), batch 128 videos x {SEGMENTS} segments: "
          f"{tacma:,.0f} segments/s")  # fmt: skip


if __name__ == "__main__":
    main()
