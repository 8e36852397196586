"""A trained sound-source localiser on disk: written by the training stage, read by evaluation.

The checkpoint is self-contained and loads with ``torch.load(..., weights_only=True)``
(:func:`pipeline.runtime.load_checkpoint`): the training config (as a plain dict), the
dimensions derived from the features, the frame size and the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.m2vsl import SoundLocaliser, build_localiser
from pipeline.runtime import load_checkpoint, save_checkpoint

CHECKPOINT_FORMAT = "spatial-localiser-v3"  # v3: grid_levels (a backbone pyramid in the grid)


def save_localiser(
    path: str | Path,
    model: SoundLocaliser,
    train_config: Mapping[str, Any],
    frame_size: tuple[int, int],
) -> Path:
    """Write a self-contained checkpoint (safe to load with ``weights_only=True``).

    Args:
        path: the ``model.pt`` to write (atomically).
        model: the trained localiser.
        train_config: ``dataclasses.asdict`` of the run's ``SpatialTrainConfig``; ``method``
            and ``model`` rebuild the localiser.
        frame_size: ``(width, height)`` of the video frames the heatmaps are drawn at.
    """
    return save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "train_config": dict(train_config),
            "derived": {
                "grid_dim": model.grid_dim,
                "audio_dim": model.audio_dim,
                "grid_shape": list(model.grid_shape),
                "num_classes": model.num_classes,
                "grid_levels": [list(level) for level in model.grid_levels],
            },
            "frame_size": list(frame_size),
            "state_dict": model.state_dict(),
        },
    )


def load_localiser(path: str | Path) -> tuple[SoundLocaliser, dict[str, Any]]:
    """Load a checkpoint of :func:`save_localiser`: the model in eval mode and the payload."""
    payload = load_checkpoint(path)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a sound-localiser checkpoint of this version "
            f"({payload.get('format')!r}, expected {CHECKPOINT_FORMAT!r}); train it again with "
            "pipeline.spatial.train"
        )
    cfg = payload["train_config"]
    model = build_localiser({"name": cfg["method"], **cfg["model"]}, **payload["derived"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload
