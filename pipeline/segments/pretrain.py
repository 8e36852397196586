"""AV-BT pre-training on the train split's videos (no labels are read).

Each step takes a batch of videos (Sec. 4.1: 128) and, for every 1-second segment, its
log-mel spectrogram and one of its frames picked at random anew each epoch (Sec. 3.2.1,
Sec. 3.2.2's "random frame sampling"), augmented (:mod:`pipeline.segments.augment`), encodes
them with the CNNs and the Bi-LSTMs, projects them and minimises Eq. (2) (:mod:`models.avbt`).
The optimiser is LARS with Barlow Twins' parameter groups and a warm-up + cosine schedule
(:mod:`pipeline.segments.lars`), or AdamW with the same schedule for the small CPU demo.
Everything random is drawn from generators seeded with ``seed``. The checkpoint is a plain
dict saved with ``torch.save`` that loads with ``torch.load(..., weights_only=True)``; a JSON
summary sits beside it.

CLI: ``python -m pipeline.segments.pretrain --clips clips.zarr --out avbt.pt [--epochs 12 ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import count_parameters
from models.avbt import AVBarlowTwins, BackboneConfig, avbt_loss
from pipeline.cli import user_errors
from pipeline.config import settings_argument
from pipeline.runtime import load_checkpoint, save_checkpoint
from pipeline.segments.augment import augment_frames
from pipeline.segments.clips import SegmentClips, load_clips
from pipeline.segments.lars import LARS, lars_param_groups, warmup_cosine_factor
from pipeline.segments.settings import (
    ClipSettings,
    PretrainSettings,
    check_settings,
    from_dict,
    settings_help,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "avbt-v2"


@dataclass(frozen=True)
class PretrainResult:
    """What a pre-training run produced."""

    model: AVBarlowTwins  # the trained model (eval mode)
    epoch_losses: list[float]  # mean Eq. (2) loss of each epoch
    train_segments_per_s: float  # segments per second of training
    num_train_segments: int  # train-split segments used
    num_train_videos: int  # train-split videos used


def build_model(settings: PretrainSettings, *, load_backbone_weights: bool = True) -> AVBarlowTwins:
    """The AV-BT model described by ``settings``; the CNNs start from their pretrained weights
    unless ``load_backbone_weights`` is False (a checkpoint's state dict replaces them)."""

    def backbone(modality: str) -> BackboneConfig:
        return BackboneConfig(
            name=getattr(settings, f"{modality}_backbone"),
            weights=settings.weights_file(modality) if load_backbone_weights else None,
            conv_width=settings.conv_width,
            conv_depth=settings.conv_depth,
            conv_dim=settings.conv_dim,
        )

    return AVBarlowTwins(
        audio_backbone=backbone("audio"),
        visual_backbone=backbone("visual"),
        feature_dim=settings.feature_dim,
        temporal=settings.temporal,
        projector_dims=settings.projector_dims,
        shared_projector=settings.shared_projector,
    )


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float ``(..., 3, H, W)`` in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    return tensor.movedim(-1, -3).float().div_(255.0)


def pick_frames(frames: Any, rows: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Frame ``choice[k]`` of segment ``rows[k]`` for every k: ``(K, H, W, 3)`` uint8, from a
    Zarr array (one chunk read per frame) or an in-memory array."""
    if isinstance(frames, np.ndarray):
        return frames[rows, choice]
    return np.stack([frames[int(row), int(slot)] for row, slot in zip(rows, choice, strict=True)])


def pad_videos(videos: Sequence[np.ndarray]) -> tuple[np.ndarray, torch.Tensor]:
    """Row indices ``(B, T)`` of a batch of videos (padding repeats a video's last row) and
    the mask ``(B, T)`` (True for real segments)."""
    length = max(len(rows) for rows in videos)
    rows = np.stack([np.pad(rows, (0, length - len(rows)), mode="edge") for rows in videos])
    mask = torch.zeros(len(videos), length, dtype=torch.bool)
    for index, video in enumerate(videos):
        mask[index, : len(video)] = True
    return rows, mask


def build_optimizer(
    model: AVBarlowTwins, settings: PretrainSettings, total_steps: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """LARS (Sec. 4.1) or AdamW, with the warm-up + cosine schedule stepped once per batch."""
    if settings.optimizer == "lars":
        scale = settings.batch_size / 256  # Barlow Twins' linear scaling rule
        optimizer: torch.optim.Optimizer = LARS(
            lars_param_groups(model, settings.lr_weights * scale, settings.lr_biases * scale),
            lr=0.0,
            weight_decay=settings.weight_decay,
        )
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
    schedule = functools.partial(
        warmup_cosine_factor,
        total_steps=total_steps,
        warmup_steps=settings.warmup_epochs * steps_per_epoch,
        final_fraction=settings.final_lr_fraction,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def pretrain(clips: SegmentClips, settings: PretrainSettings) -> PretrainResult:
    """Train AV-BT on the train split of ``clips``; deterministic for a given seed."""
    videos = [rows for rows in clips.videos("train") if len(rows) >= 2]
    if len(videos) < settings.batch_size:
        raise ValueError(
            f"the train split has {len(videos)} videos of 2 or more segments, fewer than one "
            f"batch of {settings.batch_size}; lower segments.pretrain.batch_size"
        )
    torch.manual_seed(settings.seed)
    model = build_model(settings)
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = len(videos) // settings.batch_size  # the last partial batch is dropped
    optimizer, scheduler = build_optimizer(
        model, settings, settings.epochs * steps_per_epoch, steps_per_epoch
    )
    frames_per_segment = clips.frames.shape[1]
    epoch_losses: list[float] = []
    processed = 0
    started = time.perf_counter()
    model.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(videos), generator=generator).tolist()
        losses = []
        for step in range(steps_per_epoch):
            batch = [videos[i] for i in order[step * settings.batch_size :][: settings.batch_size]]
            rows, mask = pad_videos(batch)  # (B, T), (B, T)
            choice = torch.randint(frames_per_segment, rows.shape, generator=generator).numpy()
            frames = pick_frames(clips.frames, rows.ravel(), choice.ravel())  # (B * T, H, W, 3)
            frames = augment_frames(frames_to_tensor(frames), generator, settings)
            frames = frames.view(*rows.shape, *frames.shape[1:])  # (B, T, 3, S, S)
            log_mel = torch.from_numpy(clips.log_mel[rows])[:, :, None]  # (B, T, 1, M, n_mels)
            out = model(log_mel, frames, mask)
            loss = avbt_loss(
                out.audio_projection, out.visual_projection, settings.off_diagonal_weight, mask
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            processed += int(mask.sum())
        epoch_losses.append(float(np.mean(losses)))
        log.info("epoch %d/%d: AV-BT loss %.4f", epoch + 1, settings.epochs, epoch_losses[-1])
    elapsed = time.perf_counter() - started
    model.eval()
    num_segments = sum(len(rows) for rows in videos)
    return PretrainResult(model, epoch_losses, processed / elapsed, num_segments, len(videos))


def encoder_parameters(model: AVBarlowTwins) -> dict[str, int]:
    """Parameter counts of the encoders, the projector(s) and the whole model."""
    projectors = [model.audio_projector]
    if not model.shared_projector:
        projectors.append(model.visual_projector)
    return {
        "audio_encoder": count_parameters(model.audio_encoder),
        "visual_encoder": count_parameters(model.visual_encoder),
        "projectors": sum(count_parameters(projector) for projector in projectors),
        "total": count_parameters(model),
    }


def save_pretrained(
    path: str | Path, result: PretrainResult, settings: PretrainSettings, clips: ClipSettings
) -> dict[str, Any]:
    """Write the checkpoint ``path`` (plain dict) and ``path`` with suffix .json (summary);
    return the summary."""
    summary = {
        "format": CHECKPOINT_FORMAT,
        "settings": dataclasses.asdict(settings),
        "clip_settings": dataclasses.asdict(clips),
        "epoch_losses": result.epoch_losses,
        "train_segments_per_s": result.train_segments_per_s,
        "num_train_segments": result.num_train_segments,
        "num_train_videos": result.num_train_videos,
        "num_parameters": encoder_parameters(result.model),
    }
    save_checkpoint(path, {**summary, "state_dict": result.model.state_dict()})
    Path(path).with_suffix(".json").write_text(json.dumps(summary, indent=1))
    return summary


def load_pretrained(path: str | Path) -> tuple[AVBarlowTwins, dict[str, Any]]:
    """The AV-BT model (eval mode) and the checkpoint's other entries, loaded with
    ``weights_only=True``."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not an AV-BT checkpoint (format {checkpoint.get('format')!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); run pipeline.segments.pretrain again"
        )
    settings = from_dict(PretrainSettings, checkpoint["settings"])
    model = build_model(settings, load_backbone_weights=False)
    model.load_state_dict(checkpoint.pop("state_dict"))
    model.eval()
    return model, checkpoint


@user_errors()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", required=True, help="clips .zarr of pipeline.segments.clips")
    parser.add_argument("--out", required=True, help="checkpoint .pt to write (+ .json summary)")
    parser.add_argument("--settings", default="{}", help=settings_help(PretrainSettings))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = check_settings(PretrainSettings, settings_argument(args.settings), "--settings")
    clips = load_clips(args.clips)
    result = pretrain(clips, settings)
    summary = save_pretrained(args.out, result, settings, clips.settings)
    log.info(
        "AV-BT: %d train segments, %.0f segments/s, parameters %s -> %s",
        result.num_train_segments,
        result.train_segments_per_s,
        summary["num_parameters"],
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
