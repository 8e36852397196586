"""Stage 2 training: one detection run on the feature stores, resumable at every epoch.

AdamW with a per-step linear warm-up and cosine decay (:mod:`pipeline.detection.schedule`),
gradient clipping and an exponential moving average (EMA, with a warm-up of its decay:
:class:`~pipeline.detection.schedule.WarmupEMA`) of the weights; validation and model
selection use the EMA weights and the validation split's average mAP only; the test split is never
read. Every epoch ends with ``{out}/checkpoints/last.pt``; a run started again with the same config
resumes from it and ends with the same weights as an uninterrupted run (crop positions and data
order are functions of ``(seed, epoch)``, the global generators are saved and restored).
"""

# Over 400 lines on purpose: the resumable loop and what it checkpoints (state, EMA, RNGs, the
# data's fingerprint) stay in one module, so a resumed run provably replays an uninterrupted one.

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from models import build_detector, count_parameters
from pipeline.annotations import AnnotationError, AnnotationSet, load_annotations
from pipeline.cli import user_errors
from pipeline.config import settings_argument
from pipeline.detection.data import (
    EpochSampler,
    FeatureDataset,
    FeatureIndex,
    FeatureStats,
    collate_videos,
    load_index,
    load_stats,
)
from pipeline.detection.epoch_log import report_epoch, tensorboard_writer, write_log_csv
from pipeline.detection.infer import predict_dataset
from pipeline.detection.metrics import Prediction, evaluate_detection
from pipeline.detection.run_config import detector_config, resolve_run_config
from pipeline.detection.schedule import WarmupEMA, build_optimizer, build_scheduler
from pipeline.io import stable_hash
from pipeline.packed import PackedFeatures
from pipeline.runtime import (
    deterministic_algorithms,
    load_checkpoint,
    resolve_device,
    resume_run_state,
    save_checkpoint,
    save_run_state,
    seed_everything,
)
from pipeline.store import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    out_dir: Path  # the run folder
    model_path: Path | None  # model.pt; None when stopped before the last epoch
    epochs_completed: int  # epochs trained, resumed ones included
    best_epoch: int  # epoch whose EMA weights scored the best validation average mAP
    best_metrics: dict[str, Any]  # validation metrics of that epoch (DetectionMetrics.to_dict)
    last_metrics: dict[str, Any]  # validation metrics of the last evaluated epoch
    train_snippets_per_s: float  # training throughput over all epochs
    num_parameters: int  # parameters of the detector
    log: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch


def _validate(
    ema_model: torch.nn.Module,
    dataset: FeatureDataset,
    ground_truth: AnnotationSet,
    tiou_thresholds: list[float],
    device: torch.device,
) -> dict[str, Any]:
    """Validation metrics of the EMA weights (``DetectionMetrics.to_dict``)."""
    events, _ = predict_dataset(ema_model, dataset, device=device)
    predictions = [
        Prediction(video_id, *event["segment"], event["label_id"], event["score"])
        for video_id, video_events in events.items()
        for event in video_events
    ]
    return evaluate_detection(ground_truth, predictions, tiou_thresholds).to_dict()


def _train_epoch(
    detector: torch.nn.Module,
    ema: AveragedModel,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    grad_clip: float,
    device: torch.device,
    description: str,
) -> dict[str, Any]:
    """One pass over the training crops; returns mean losses, snippets and seconds."""
    detector.train()
    sums: dict[str, float] = {}
    num_steps, num_snippets, started = 0, 0, time.perf_counter()
    # disable=None: a bar on a terminal; logs (not a TTY) keep only the per-epoch lines
    progress = tqdm(
        loader, desc=description, unit="batch", leave=False, dynamic_ncols=True, disable=None
    )
    for batch in progress:
        inputs = {name: tensor.to(device) for name, tensor in batch["inputs"].items()}
        losses = detector.loss(
            detector(inputs, batch["mask"].to(device)), batch["gt_segments"], batch["gt_labels"]
        )
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"{description}: the loss is {losses['loss'].item()} on videos "
                f"{batch['video_ids']}; lower training.learning_rate or check the features"
            )
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(detector.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        ema.update_parameters(detector)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        num_steps += 1
        num_snippets += int(batch["mask"].sum())
        progress.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
    seconds = time.perf_counter() - started
    return {
        "losses": {key: value / max(num_steps, 1) for key, value in sums.items()},
        "snippets": num_snippets,
        "seconds": round(seconds, 4),
        "snippets_per_s": round(num_snippets / max(seconds, 1e-9), 2),
    }


def _datasets(
    annotations: AnnotationSet,
    annotations_path: str | Path,
    index: FeatureIndex,
    stats: FeatureStats,
    modalities: Sequence[str],
    training: dict[str, Any],
    packed: PackedFeatures | None,
) -> tuple[FeatureDataset, FeatureDataset, AnnotationSet]:
    """The training crops, the validation videos and the validation ground truth."""
    shared = {"index": index, "stats": stats, "modalities": modalities, "packed": packed}
    shared["missing"] = training["missing"]
    train_set = FeatureDataset(
        annotations,
        "train",
        **shared,
        training=True,
        max_seq_len=training["max_seq_len"],
        min_kept_fraction=training["crop_min_kept_fraction"],
        seed=training["seed"],
    )
    try:
        val_truth = annotations.subset("validation")
    except AnnotationError as err:  # its message names the file already
        raise AnnotationError(
            f"{err.problem}; model selection needs a validation split", source=err.source
        ) from err
    val_set = FeatureDataset(annotations, "validation", **shared, training=False)
    for split, dataset in (("train", train_set), ("validation", val_set)):
        if len(dataset) == 0:
            raise ValueError(
                f"no {split} video of {annotations_path} has a feature store in {index.path}"
            )
    return train_set, val_set, val_truth


def _optimisation(
    detector: torch.nn.Module, steps_per_epoch: int, training: dict[str, Any]
) -> tuple[torch.optim.Optimizer, Any, AveragedModel]:
    """AdamW, its warm-up + cosine schedule and the EMA of the weights (ActionFormer Sec. 4)."""
    optimizer = build_optimizer(
        detector,
        learning_rate=training["learning_rate"],
        weight_decay=training["weight_decay"],
    )
    scheduler = build_scheduler(
        optimizer,
        warmup_steps=round(training["warmup_epochs"] * steps_per_epoch),
        total_steps=training["epochs"] * steps_per_epoch,
    )
    ema = AveragedModel(detector, multi_avg_fn=WarmupEMA(training["ema_decay"]), use_buffers=True)
    return optimizer, scheduler, ema


def _initial_state(
    checkpoints: Path,
    run_cfg: dict[str, Any],
    fingerprint: dict[str, str],
    modules: tuple[Any, ...],
) -> dict[str, Any]:
    """A fresh training state, or the one of ``checkpoints/last.pt`` loaded into ``modules``
    (detector, EMA, optimizer, scheduler) when it holds the same run config and data."""
    state = {"epoch": 0, "best": {"epoch": 0, "average_map": -1.0, "metrics": {}}}
    state.update({"last_metrics": {}, "log": [], "data": fingerprint})
    if (checkpoints / "last.pt").exists():
        try:
            state = resume_run_state(checkpoints / "last.pt", run_cfg, fingerprint, *modules)
            print(f"resuming {run_cfg['name']} after epoch {state['epoch']}")
        except ValueError as err:
            # Checkpoints of another config or other data (the DAG re-runs training when
            # either changed) or an unreadable one: nothing is loaded; start afresh.
            print(f"not resuming {run_cfg['name']}: {err}; starting afresh")
            shutil.rmtree(checkpoints)
            checkpoints.mkdir(parents=True)
    return state


def train_run(
    run_cfg: dict[str, Any],
    *,
    index_path: str | Path,
    stats_path: str | Path,
    annotations_path: str | Path,
    out_dir: str | Path,
    packed_dir: str | Path | None = None,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train one run into ``out_dir`` (``model.pt``, ``train_log.csv``, ``checkpoints/``).

    ``packed_dir``: read the features from this packed copy of the index's stores
    (:mod:`pipeline.packed`, refused when packed from another index); the same values as the
    stores, read faster.

    Resumes from ``out_dir/checkpoints/last.pt`` when it exists (it must hold the same run
    config). ``stop_after_epoch`` ends the call after that epoch's checkpoint, as a killed job
    would (a hook for tests); the returned result then has no ``model_path``.
    """
    run_cfg = resolve_run_config(run_cfg)
    training = run_cfg["training"]
    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    index, stats = load_index(index_path), load_stats(stats_path)
    packed = None
    if packed_dir is not None:
        packed = PackedFeatures(packed_dir, index.content)
        log.info("reading the features from the packed copy %s", packed.folder)
    annotations = load_annotations(annotations_path)
    device = resolve_device(training["device"])
    model_cfg = detector_config(
        run_cfg["model"],
        index.dims,
        len(annotations.labels),
        window_s=index.content["window_s"],
        stride_s=index.content["stride_s"],
    )
    with deterministic_algorithms(device.type == "cpu"):
        seed_everything(training["seed"])
        detector = build_detector(model_cfg).to(device)
        max_stride = int(detector.max_stride)
        if training["max_seq_len"] % max_stride:
            raise ValueError(
                f"run {run_cfg['name']!r}: training.max_seq_len {training['max_seq_len']} must be "
                f"a multiple of the detector's max_stride {max_stride}"
            )
        train_set, val_set, val_truth = _datasets(
            annotations,
            annotations_path,
            index,
            stats,
            detector.input_modalities,
            training,
            packed,
        )
        sampler = EpochSampler(len(train_set), training["seed"])
        loader = DataLoader(
            train_set,
            batch_size=training["batch_size"],
            sampler=sampler,
            num_workers=training["num_workers"],
            collate_fn=partial(
                collate_videos, pad_multiple=max_stride, min_length=training["max_seq_len"]
            ),
        )
        optimizer, scheduler, ema = _optimisation(detector, len(loader), training)
        fingerprint = {  # a resumed run must see the same data
            "features": stable_hash([index.content.get("config_hash"), index.videos]),
            "stats": stable_hash(stats.content),
            "annotations": stable_hash(annotations.to_json()),
        }
        state = _initial_state(
            checkpoints, run_cfg, fingerprint, (detector, ema, optimizer, scheduler)
        )
        writer = tensorboard_writer(out_dir)
        for epoch in range(state["epoch"] + 1, training["epochs"] + 1):
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            row = _train_epoch(
                detector,
                ema,
                loader,
                optimizer,
                scheduler,
                grad_clip=training["grad_clip"],
                device=device,
                description=f"{run_cfg['name']} epoch {epoch}/{training['epochs']}",
            )
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **row}
            row["val_average_map"] = None
            if epoch % training["eval_every"] == 0 or epoch == training["epochs"]:
                metrics = _validate(
                    ema.module, val_set, val_truth, run_cfg["tiou_thresholds"], device
                )
                row["val_average_map"] = metrics["average_mAP"]
                state["last_metrics"] = metrics
                if metrics["average_mAP"] > state["best"]["average_map"]:
                    state["best"] = {"epoch": epoch, "average_map": metrics["average_mAP"]}
                    state["best"]["metrics"] = metrics
                    save_checkpoint(
                        checkpoints / "best.pt",
                        {"epoch": epoch, "metrics": metrics, "state_dict": ema.module.state_dict()},
                    )
            state["log"].append(row)
            state["epoch"] = epoch
            save_run_state(checkpoints, state, run_cfg, detector, ema, optimizer, scheduler)
            write_log_csv(out_dir / "train_log.csv", state["log"])
            report_epoch(row, training["epochs"], writer)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
        if writer is not None:
            writer.close()
    # Written again here: a run resumed after its last epoch trains nothing, but Snakemake has
    # deleted the log before the job started.
    write_log_csv(out_dir / "train_log.csv", state["log"])
    finished = state["epoch"] >= training["epochs"]
    num_parameters = count_parameters(detector)
    snippets = sum(row["snippets"] for row in state["log"])
    seconds = sum(row["seconds"] for row in state["log"])
    result = TrainResult(
        out_dir=out_dir,
        model_path=out_dir / "model.pt" if finished else None,
        epochs_completed=state["epoch"],
        best_epoch=state["best"]["epoch"],
        best_metrics=state["best"]["metrics"],
        last_metrics=state["last_metrics"],
        train_snippets_per_s=round(snippets / max(seconds, 1e-9), 2),
        num_parameters=num_parameters,
        log=state["log"],
    )
    if finished:
        _write_model(
            result,
            run_cfg,
            model_cfg,
            annotations=annotations,
            stats=stats,
            index=index,
            device=device,
            datasets=(train_set, val_set),
        )
    return result


def _write_model(
    result: TrainResult,
    run_cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    *,
    annotations: AnnotationSet,
    stats: FeatureStats,
    index: FeatureIndex,
    device: torch.device,
    datasets: tuple[FeatureDataset, FeatureDataset],
) -> None:
    """Write ``model.pt`` (best EMA weights and all a later stage needs) and the summary JSON."""
    train_set, val_set = datasets
    best = load_checkpoint(result.out_dir / "checkpoints" / "best.pt")
    summary = {
        "name": run_cfg["name"],
        "seed": run_cfg["training"]["seed"],
        "model": run_cfg["model"],
        "epochs": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "best_val_average_map": result.best_metrics["average_mAP"],
        "best_val_metrics": result.best_metrics,
        "train_snippets_per_s": result.train_snippets_per_s,
        "num_parameters": result.num_parameters,
        "device": str(device),
        "num_train_videos": len(train_set),
        "num_validation_videos": len(val_set),
        "skipped_videos": {"train": train_set.skipped, "validation": val_set.skipped},
    }
    bundle = {
        "run_config": run_cfg,
        "model_config": model_cfg,
        "labels": list(annotations.labels),
        "state_dict": best["state_dict"],
        "stats": stats.content,
        "extraction": index.extraction_record(),
        "train_summary": summary,
    }
    save_checkpoint(result.out_dir / "model.pt", bundle)
    (result.out_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"{run_cfg['name']}: best validation average mAP "
        f"{100 * summary['best_val_average_map']:.2f} at epoch {result.best_epoch}; "
        f"{result.train_snippets_per_s:.0f} snippets/s; "
        f"{result.num_parameters} parameters -> {result.out_dir / 'model.pt'}"
    )


@user_errors(FloatingPointError, StoreError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings",
        required=True,
        help="the run's resolved settings (pipeline.config.run_config) as JSON, or a JSON file",
    )
    parser.add_argument("--index", required=True, help="index.json of the feature stores")
    parser.add_argument("--stats", required=True, help="stats.json of the train split")
    parser.add_argument("--annotations", required=True, help="UnAV-100-format annotation file")
    parser.add_argument("--out", required=True, help="run folder (model.pt, train_log.csv)")
    parser.add_argument(
        "--packed", help="packed copy of the index's stores to read instead (pipeline.packed)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train_run(
        settings_argument(args.settings),
        index_path=args.index,
        stats_path=args.stats,
        annotations_path=args.annotations,
        out_dir=args.out,
        packed_dir=args.packed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
