"""Segment classifiers on fixed features: the Table 2 MLPs and AV-BT + TACMA (Sec. 3.3-4.1).

Features (optionally standardised with the train split's mean and std per dimension, which
the paper does not do) are grouped into one sequence per video (padded to the longest of a
batch, with a mask) and classified per 1-second segment into K classes + background with
:class:`models.tacma.SegmentClassifier` (``audio``, ``visual``, ``sum`` or ``tacma``). Adam,
the learning rate multiplied by 0.98 every 10 epochs, batch 128 (Sec. 4.1). After every epoch
the validation accuracy is measured and the best epoch's weights (the earliest on a tie) are
kept; the test split is scored once, with those weights. (The paper reports test accuracy and
does not say how it selects the epoch; we select on AVE's validation split.) Training
throughput counts train segments per second of optimisation (validation excluded).

CLI: ``python -m pipeline.segments.train --features features.npz --model tacma --out DIR``
writes ``DIR/model.pt`` and ``DIR/metrics.json`` (with every test segment's predicted label id
under ``test_predictions``, for the results viewer, :mod:`pipeline.viewer`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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
from torch import Tensor, nn

from models import count_parameters
from models.tacma import CLASSIFIERS, SegmentClassifier, masked_segment_cross_entropy
from pipeline.cli import user_errors
from pipeline.config import settings_argument
from pipeline.runtime import save_checkpoint
from pipeline.segments.features import SegmentFeatures, load_features
from pipeline.segments.metrics import majority_accuracy, segment_accuracy
from pipeline.segments.settings import ClassifierSettings, check_settings, settings_help

log = logging.getLogger(__name__)

MODELS = CLASSIFIERS
CHECKPOINT_FORMAT = "segment-classifier-v2"


@dataclass(frozen=True)
class PackedVideos:
    """The segments of a set of videos as padded sequences (V videos, up to T segments).

    Attributes:
        audio: ``(V, T, D_a)`` standardised audio features (0 at padding).
        visual: ``(V, T, D_v)`` standardised visual features (0 at padding).
        labels: ``(V, T)`` long labels (0 at padding).
        mask: ``(V, T)`` bool, True for real segments.
        video_ids: the V video ids.
    """

    audio: Tensor
    visual: Tensor
    labels: Tensor
    mask: Tensor
    video_ids: list[str]

    def select(self, videos: Tensor) -> PackedVideos:
        """The videos at indices ``videos``, cut to their longest sequence."""
        mask = self.mask[videos]  # (b, T)
        length = int(mask.sum(dim=1).max())
        return PackedVideos(
            self.audio[videos, :length],
            self.visual[videos, :length],
            self.labels[videos, :length],
            mask[:, :length],
            [self.video_ids[i] for i in videos.tolist()],
        )


def standardisation(
    features: SegmentFeatures, enabled: bool
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-modality mean and std ``(D,)`` of the train split's segments (0 and 1 when not
    ``enabled``)."""
    train = features.subsets == "train"
    if not train.any():
        raise ValueError("the features hold no train segment; check annotations.json subsets")
    stats = {}
    for modality in ("audio", "visual"):
        values = getattr(features, modality)[train]
        if enabled:
            stats[modality] = (values.mean(axis=0), values.std(axis=0) + 1e-6)
        else:
            stats[modality] = (np.zeros(values.shape[1], np.float32), np.ones(values.shape[1]))
    return stats


def pack_videos(
    features: SegmentFeatures, subset: str, stats: dict[str, tuple[np.ndarray, np.ndarray]]
) -> PackedVideos:
    """The standardised, padded sequences of one subset's videos (segments.csv order)."""
    rows = np.flatnonzero(features.subsets == subset)
    if len(rows) == 0:
        raise ValueError(f"the features hold no {subset} segment; check annotations.json")
    video_ids = list(dict.fromkeys(features.video_ids[rows].tolist()))
    per_video = [rows[features.video_ids[rows] == video_id] for video_id in video_ids]
    max_length = max(len(video_rows) for video_rows in per_video)
    packed: dict[str, Tensor] = {}
    for modality in ("audio", "visual"):
        mean, std = stats[modality]
        values = (getattr(features, modality) - mean) / std  # (N, D)
        padded = np.zeros((len(video_ids), max_length, values.shape[1]), np.float32)
        for index, video_rows in enumerate(per_video):
            padded[index, : len(video_rows)] = values[
                video_rows[np.argsort(features.segments[video_rows])]
            ]
        packed[modality] = torch.from_numpy(padded)  # (V, T, D)
    labels = torch.zeros(len(video_ids), max_length, dtype=torch.long)
    mask = torch.zeros(len(video_ids), max_length, dtype=torch.bool)
    for index, video_rows in enumerate(per_video):
        ordered = video_rows[np.argsort(features.segments[video_rows])]
        labels[index, : len(ordered)] = torch.from_numpy(features.label_ids[ordered])
        mask[index, : len(ordered)] = True
    return PackedVideos(packed["audio"], packed["visual"], labels, mask, video_ids)


def build_classifier(
    kind: str, settings: ClassifierSettings, audio_dim: int, visual_dim: int, num_outputs: int
) -> nn.Module:
    """The classifier ``kind`` (one of :data:`MODELS`) described by ``settings``."""
    return SegmentClassifier(
        kind=kind,
        audio_dim=audio_dim,
        visual_dim=visual_dim,
        num_outputs=num_outputs,
        hidden_dim=settings.hidden_dim,
        attention_dim=settings.attention_dim,
        output_dim=settings.output_dim,
        theta=settings.theta,
        eq6_reading=settings.eq6_reading,
        input_projection_dim=settings.input_projection_dim,
        dropout=settings.dropout,
    )


@torch.no_grad()
def evaluate(model: nn.Module, videos: PackedVideos) -> float:
    """Segment accuracy of ``model`` on all segments of ``videos``."""
    model.eval()
    return segment_accuracy(
        model(videos.audio, videos.visual, videos.mask), videos.labels, videos.mask
    )


@torch.no_grad()
def segment_predictions(model: nn.Module, videos: PackedVideos) -> dict[str, list[int]]:
    """Video id -> the predicted label id of each of its segments, in time order (the
    background is K, as in segments.csv)."""
    model.eval()
    predicted = model(videos.audio, videos.visual, videos.mask).argmax(dim=-1)  # (V, T)
    return {
        video_id: predicted[index][videos.mask[index]].tolist()
        for index, video_id in enumerate(videos.video_ids)
    }


def train_classifier(
    features: SegmentFeatures, kind: str, settings: ClassifierSettings
) -> dict[str, Any]:
    """Train one classifier; return its metrics, the best weights and the feature stats."""
    stats = standardisation(features, settings.standardise)
    splits = {
        subset: pack_videos(features, subset, stats) for subset in ("train", "validation", "test")
    }
    train = splits["train"]
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = build_classifier(
        kind, settings, features.audio.shape[1], features.visual.shape[1], features.num_classes + 1
    )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    num_videos = len(train.video_ids)
    scheduler = torch.optim.lr_scheduler.StepLR(  # stepped once per epoch
        optimizer, step_size=settings.lr_decay_every, gamma=settings.lr_decay
    )
    best = {"accuracy": -1.0, "epoch": 0, "state": None}
    epoch_log, train_seconds = [], 0.0
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(num_videos, generator=generator)
        losses = []
        for start in range(0, num_videos, settings.batch_size):
            batch = train.select(order[start : start + settings.batch_size])
            logits = model(batch.audio, batch.visual, batch.mask)  # (b, T, K + 1)
            loss = masked_segment_cross_entropy(logits, batch.labels, batch.mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        train_seconds += time.perf_counter() - started
        validation_accuracy = evaluate(model, splits["validation"])
        epoch_log.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "validation_accuracy": validation_accuracy,
            }
        )
        if validation_accuracy > best["accuracy"]:
            best = {
                "accuracy": validation_accuracy,
                "epoch": epoch,
                "state": copy.deepcopy(model.state_dict()),
            }
    model.load_state_dict(best["state"])
    test_accuracy = evaluate(model, splits["test"])
    train_labels = features.label_ids[features.subsets == "train"]
    test_labels = features.label_ids[features.subsets == "test"]
    majority_label, majority_test = majority_accuracy(train_labels, test_labels)
    num_train_segments = int(train.mask.sum())
    metrics = {
        "model": kind,
        "test_accuracy": test_accuracy,
        "validation_accuracy": best["accuracy"],
        "best_epoch": best["epoch"],
        "majority_label_id": majority_label,
        "majority_test_accuracy": majority_test,
        "num_parameters": count_parameters(model),
        "train_segments_per_s": num_train_segments * settings.epochs / train_seconds,
        "num_segments": {subset: int(packed.mask.sum()) for subset, packed in splits.items()},
        "num_classes": features.num_classes,
        "settings": dataclasses.asdict(settings),
        "epochs": epoch_log,
        "test_predictions": segment_predictions(model, splits["test"]),
    }
    return {"metrics": metrics, "state_dict": best["state"], "stats": stats}


@user_errors()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--features", required=True, help="features .npz of pipeline.segments.features"
    )
    parser.add_argument("--model", required=True, choices=MODELS, help="classifier to train")
    parser.add_argument("--out", required=True, help="folder for model.pt and metrics.json")
    parser.add_argument("--settings", default="{}", help=settings_help(ClassifierSettings))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = check_settings(ClassifierSettings, settings_argument(args.settings), "--settings")
    features = load_features(args.features)
    result = train_classifier(features, args.model, settings)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = result["metrics"]
    save_checkpoint(
        out_dir / "model.pt",
        {
            "format": CHECKPOINT_FORMAT,
            "model": args.model,
            "settings": dataclasses.asdict(settings),
            "num_classes": features.num_classes,
            "feature_stats": {
                modality: [torch.from_numpy(mean), torch.from_numpy(std)]
                for modality, (mean, std) in result["stats"].items()
            },
            "state_dict": result["state_dict"],
        },
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info(
        "%s: test accuracy %.4f (validation %.4f at epoch %d; majority baseline %.4f)",
        args.model,
        metrics["test_accuracy"],
        metrics["validation_accuracy"],
        metrics["best_epoch"],
        metrics["majority_test_accuracy"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
