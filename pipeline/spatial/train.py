"""Train a sound-source localiser (M2VSL or the similarity-map baseline) on the train split.

Weakly supervised: a batch holds (grid, audio) pairs of snippets and the losses only know
which sound belongs to which frame. By default only snippets whose grid frame lies in a
labelled audio-visual event are used (``train_snippets: events``; the temporal annotations are
the weak labels, as curated localisation sets keep clips with a visible sound source); boxes are
never read for training. After training the model is scored once on the validation split (for
the log only: no checkpoint is selected with it). The defaults (10 epochs of batches of 64,
learning rate 3e-3, the models' temperature 0.2) were chosen on the demo set's validation split:
longer training and a temperature of 0.07 made more seeds lock a class onto the wrong cells.

Usage: ``python -m pipeline.spatial.train --index results/demo/features/classic/index.json
--boxes results/demo/boxes.json --annotations results/demo/annotations.json
--settings '{"method": "m2vsl"}' --seed 0 --out results/demo/spatial/m2vsl/seed0``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from models import count_parameters
from models.keys import check_keys
from models.m2vsl import SOUND_LOCALISERS, SoundLocaliser, build_localiser
from pipeline.cli import user_errors
from pipeline.config import load_schema, settings_argument
from pipeline.io import read_json
from pipeline.spatial.checkpoint import save_localiser
from pipeline.spatial.data import (
    EvaluationFrames,
    SpatialSnippets,
    add_data_arguments,
    check_data_arguments,
    evaluation_frames,
    event_snippets,
    load_boxes,
    load_split,
)
from pipeline.spatial.evaluate import evaluate_localiser
from pipeline.spatial.sets import load_set, training_split
from pipeline.store import StoreError

log = logging.getLogger(__name__)

TRAIN_SNIPPETS = ("events", "all")


@dataclass(frozen=True)
class SpatialTrainConfig:
    """How a localiser is trained; the defaults live once, in the workflow schema's
    ``spatial.training`` block (:meth:`from_settings` fills them in).

    Args:
        method: registered localiser name (``m2vsl`` or ``similarity``).
        model: further constructor arguments of the localiser (``dim``, ``temperature``, ...).
        epochs: passes over the training snippets.
        batch_size: snippets per batch (the contrastive negatives are the batch's others).
        learning_rate: AdamW peak learning rate (cosine decay to 0 over all steps).
        weight_decay: AdamW weight decay.
        seed: seed of the initialisation and of the batch order.
        train_snippets: ``events`` (grid frame inside a labelled event) or ``all``.
    """

    method: str
    model: dict[str, Any]
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    train_snippets: str

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], seed: int) -> SpatialTrainConfig:
        """Build from a run's settings (:func:`pipeline.config.spatial_settings`); training keys
        it leaves out take the schema's defaults, an unknown key is refused."""
        schema = load_schema()["properties"]["spatial"]["properties"]["training"]["properties"]
        defaults = {key: spec["default"] for key, spec in schema.items()}
        check_keys(settings, ["method", "model", *defaults], "spatial settings")
        if "method" not in settings:
            raise ValueError("spatial settings lack 'method' (a registered localiser)")
        return cls(**{"model": {}, **defaults, **settings, "seed": seed})

    def __post_init__(self) -> None:
        if self.method not in SOUND_LOCALISERS:
            raise ValueError(
                f"unknown method {self.method!r}; valid: {', '.join(SOUND_LOCALISERS.names())}"
            )
        if not isinstance(self.model, dict):
            raise ValueError(f"the model arguments must be a JSON object, got {self.model!r}")
        if self.train_snippets not in TRAIN_SNIPPETS:
            raise ValueError(f"train_snippets must be one of {TRAIN_SNIPPETS}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("training needs epochs >= 1 and batch_size >= 2")


def build_for_data(cfg: SpatialTrainConfig, snippets: SpatialSnippets) -> SoundLocaliser:
    """Build the configured localiser with the input sizes read from the snippets."""
    _, rows, cols, grid_dim = snippets.grids.shape
    return build_localiser(
        {"name": cfg.method, **cfg.model},
        grid_dim=grid_dim,
        audio_dim=snippets.audio.shape[1],
        grid_shape=(rows, cols),
        num_classes=snippets.labels.shape[1],
        grid_levels=snippets.grid_levels,
    )


def train_localiser(
    cfg: SpatialTrainConfig, train: SpatialSnippets
) -> tuple[SoundLocaliser, list[dict[str, float]]]:
    """Train a localiser on ``train``; returns it (in eval mode) and one log row per epoch."""
    if len(train) < 2:
        raise ValueError("training needs at least 2 snippets; is the train split empty?")
    torch.manual_seed(cfg.seed)
    model = build_for_data(cfg, train)
    grids = torch.from_numpy(train.grids)
    audio = torch.from_numpy(train.audio)
    labels = torch.from_numpy(train.labels)
    model.set_normalisation(
        grids.flatten(0, 2).mean(0), grids.flatten(0, 2).std(0), audio.mean(0), audio.std(0)
    )
    batch_size = min(cfg.batch_size, len(train))
    steps_per_epoch = len(train) // batch_size
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=cfg.epochs * steps_per_epoch
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    history = []
    model.train()
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(train), generator=generator)
        sums: dict[str, float] = {}
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            losses = model.losses(grids[rows], audio[rows], labels[rows])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            scheduler.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
        row = {"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}}
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        log.info("epoch %d: loss %.4f (%.1f s)", epoch + 1, row["loss"], row["seconds"])
    return model.eval(), history


def run_training(
    *,
    cfg: SpatialTrainConfig,
    out_dir: str | Path,
    index_path: str | Path | None = None,
    boxes_path: str | Path | None = None,
    annotations_path: str | Path | None = None,
    set_dir: str | Path | None = None,
    name: str = "",
) -> dict[str, Any]:
    """Train on the train split, write ``model.pt``, ``train_log.json`` and
    ``train_summary.json`` into ``out_dir``, and return the summary. ``name`` labels the run
    in the tables (default: the method).

    The data: the feature stores (``index_path``, with ``boxes_path`` and ``annotations_path``),
    or a benchmark's spatial set (``set_dir``, :mod:`pipeline.spatial.sets`): every sample of
    its train split (the releases keep clips with a visible sound source, so
    ``train_snippets`` does not apply), or of its test split where the release has no training
    list (image-sound pairs only: no box or mask is read); its validation split, where it has
    one, is scored for the log."""
    out_dir = Path(out_dir)
    if set_dir is not None:
        train, validation, extra = _set_data(set_dir)
    else:
        train, validation, extra = _store_data(index_path, boxes_path, annotations_path, cfg)
    log.info("training %s on %d snippets", cfg.method, len(train))
    started, cpu_started = time.perf_counter(), time.process_time()
    model, history = train_localiser(cfg, train)
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = time.process_time() - cpu_started
    save_localiser(out_dir / "model.pt", model, asdict(cfg), train.frame_size)
    summary: dict[str, Any] = {
        "name": name or cfg.method,
        "method": cfg.method,
        "train_config": asdict(cfg),
        "num_train_snippets": len(train),
        "num_parameters": count_parameters(model),
        "train_seconds": round(train_seconds, 2),
        "train_cpu_seconds": round(train_cpu_seconds, 2),
        "torch_threads": torch.get_num_threads(),
        "final_loss": history[-1]["loss"],
        **extra,
    }
    if validation is not None:
        metrics = evaluate_localiser(model, *validation).metrics
        summary["validation"] = {"num_frames": metrics["num_frames"], **metrics["overall"]}
    (out_dir / "train_log.json").write_text(json.dumps(history, indent=1))
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


Validation = tuple[SpatialSnippets, EvaluationFrames] | None


def _store_data(
    index_path: str | Path,
    boxes_path: str | Path,
    annotations_path: str | Path,
    cfg: SpatialTrainConfig,
) -> tuple[SpatialSnippets, Validation, dict[str, Any]]:
    """Training snippets and the validation split (if extracted) of the feature stores."""
    annotations = read_json(annotations_path, "annotations file")
    boxes = load_boxes(boxes_path)
    train = load_split(index_path, annotations_path, "train")
    if cfg.train_snippets == "events":
        train = train.subset(event_snippets(train))
    validation_ids = {
        vid for vid, e in annotations["database"].items() if e["subset"] == "validation"
    }
    if not validation_ids & set(read_json(index_path, "feature index")["videos"]):
        return train, None, {}
    validation = load_split(index_path, annotations_path, "validation")
    return train, (validation, evaluation_frames(validation, boxes)), {}


def _set_data(set_dir: str | Path) -> tuple[SpatialSnippets, Validation, dict[str, Any]]:
    """Training samples and the validation split (if the release has one) of a spatial set."""
    train_path, train_source = training_split(set_dir)
    train = load_set(train_path)[0]
    validation_path = Path(set_dir) / "validation.npz"
    validation = load_set(validation_path) if validation_path.is_file() else (None, None)
    return train, validation if validation[1] is not None else None, {"train_split": train_source}


@user_errors(StoreError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, boxes_help="boxes.json (validation scores only)")
    parser.add_argument(
        "--settings",
        required=True,
        help='the run\'s settings as JSON (or a JSON file): {"method": "m2vsl", "model": {...}, '
        '"epochs": 10, ...}; training keys left out take the workflow schema\'s defaults',
    )
    parser.add_argument("--name", default="", help="run name in the tables (default: method)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation")
    args = parser.parse_args(argv)
    check_data_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = SpatialTrainConfig.from_settings(settings_argument(args.settings), args.seed)
    summary = run_training(
        index_path=args.index,
        boxes_path=args.boxes,
        annotations_path=args.annotations,
        set_dir=args.set_dir,
        cfg=cfg,
        out_dir=args.out,
        name=args.name,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "train_config"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
