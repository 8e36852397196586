"""Tests of pipeline.detection.train on a tiny planted-signal feature set and ActionFormer."""

from __future__ import annotations

import copy
import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from models import build_detector
from pipeline.annotations import load_annotations
from pipeline.detection.data import FeatureDataset, collate_videos
from pipeline.detection.schedule import WarmupCosine, WarmupEMA
from pipeline.detection.synthetic import SyntheticFeatureSet, write_synthetic_features
from pipeline.detection.train import TrainResult, main, resolve_run_config, train_run
from tests.pipeline.detection.helpers import TINY_RUN

# The shared tiny ActionFormer, with dropout: it draws from the global generator, so resuming
# must restore it.
TINY_MODEL = {**TINY_RUN["model"], "dropout": 0.1, "path_drop": 0.1}
RUN_CONFIG = {
    "name": "tiny",
    "model": TINY_MODEL,
    "training": {
        "epochs": 4,
        "batch_size": 2,
        "learning_rate": 0.01,
        "warmup_epochs": 1,
        "max_seq_len": 32,
        "ema_decay": 0.9,
        "device": "cpu",
        "keep_epoch_checkpoints": True,
    },
    "seed": 7,
    "tiou_thresholds": [0.3, 0.5, 0.7],
}


@pytest.fixture(scope="module")
def feature_set(tmp_path_factory: pytest.TempPathFactory) -> SyntheticFeatureSet:
    features = write_synthetic_features(tmp_path_factory.mktemp("features"), seed=0)
    # a test video without any store: training must never look at the test split
    annotations = json.loads(features.annotations_path.read_text())
    annotations["database"]["test_ghost"] = {
        "duration": 5.0,
        "subset": "test",
        "annotations": [{"segment": [1.0, 2.0], "label": "class_0", "label_id": 0}],
    }
    features.annotations_path.write_text(json.dumps(annotations))
    return features


def _paths(features: SyntheticFeatureSet) -> dict[str, Path]:
    return {
        "index_path": features.index_path,
        "stats_path": features.stats_path,
        "annotations_path": features.annotations_path,
    }


@pytest.fixture(scope="module")
def uninterrupted(
    feature_set: SyntheticFeatureSet, tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    return train_run(copy.deepcopy(RUN_CONFIG), out_dir=out_dir, **_paths(feature_set))


def test_resumed_run_ends_like_an_uninterrupted_one(
    uninterrupted: TrainResult, feature_set: SyntheticFeatureSet, tmp_path: Path
) -> None:
    first = train_run(
        copy.deepcopy(RUN_CONFIG), out_dir=tmp_path, stop_after_epoch=2, **_paths(feature_set)
    )
    assert first.model_path is None and first.epochs_completed == 2
    assert not (tmp_path / "model.pt").exists()
    # a new process would start from other generator states: the checkpoint must restore them
    torch.manual_seed(12345)
    np.random.seed(54321)
    random.seed(999)
    resumed = train_run(copy.deepcopy(RUN_CONFIG), out_dir=tmp_path, **_paths(feature_set))
    assert resumed.epochs_completed == 4 and resumed.model_path == tmp_path / "model.pt"
    ema_a = torch.load(uninterrupted.out_dir / "checkpoints" / "last.pt", weights_only=True)
    ema_b = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ema_a["ema"].keys() == ema_b["ema"].keys()
    for key in ema_a["ema"]:
        assert torch.equal(ema_a["ema"][key], ema_b["ema"][key]), key
    for key in ema_a["model"]:
        assert torch.equal(ema_a["model"][key], ema_b["model"][key]), key
    assert resumed.last_metrics == uninterrupted.last_metrics
    assert resumed.best_metrics == uninterrupted.best_metrics
    assert resumed.best_epoch == uninterrupted.best_epoch
    losses = [[row["losses"] for row in run.log] for run in (uninterrupted, resumed)]
    assert losses[0] == losses[1]
    model_a = torch.load(uninterrupted.model_path, weights_only=True)["state_dict"]
    model_b = torch.load(resumed.model_path, weights_only=True)["state_dict"]
    assert all(torch.equal(model_a[key], model_b[key]) for key in model_a)


def test_finished_run_rewrites_outputs_deleted_before_a_rerun(
    uninterrupted: TrainResult, feature_set: SyntheticFeatureSet, tmp_path: Path
) -> None:
    # Snakemake deletes a job's outputs before re-running it (e.g. after an upstream file's
    # timestamp changed): the run resumes after its last epoch and must write them again.
    first = train_run(copy.deepcopy(RUN_CONFIG), out_dir=tmp_path, **_paths(feature_set))
    for name in ("model.pt", "train_log.csv", "train_summary.json"):
        (tmp_path / name).unlink()
    again = train_run(copy.deepcopy(RUN_CONFIG), out_dir=tmp_path, **_paths(feature_set))
    assert again.epochs_completed == first.epochs_completed == 4
    for name in ("model.pt", "train_log.csv", "train_summary.json"):
        assert (tmp_path / name).exists(), name
    with (tmp_path / "train_log.csv").open() as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3", "4"]


def test_checkpoints_load_with_weights_only(uninterrupted: TrainResult) -> None:
    checkpoints = uninterrupted.out_dir / "checkpoints"
    assert sorted(path.name for path in checkpoints.glob("epoch_*.pt")) == [
        f"epoch_00{epoch}.pt" for epoch in (1, 2, 3, 4)
    ]
    assert torch.load(checkpoints / "epoch_002.pt", weights_only=True)["epoch"] == 2
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    assert last["epoch"] == 4 and last["data_rng"] == {"seed": 7, "next_epoch": 5}
    assert {"model", "ema", "optimizer", "scheduler", "rng", "best", "log"} <= set(last)
    best = torch.load(uninterrupted.out_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == uninterrupted.best_epoch
    bundle = torch.load(uninterrupted.model_path, weights_only=True)
    assert bundle["model_config"]["input_dims"] == {"visual": 16, "audio": 8}
    assert bundle["model_config"]["num_classes"] == 3
    assert bundle["labels"] == ["class_0", "class_1", "class_2"]
    assert bundle["extraction"]["window_s"] == 0.96 and bundle["extraction"]["stride_s"] == 0.32
    assert bundle["extraction"]["settings"]["stride_s"] == 0.32
    assert bundle["stats"]["split"] == "train" and len(bundle["stats"]["audio"]["mean"]) == 8
    assert all(torch.equal(bundle["state_dict"][k], v) for k, v in best["state_dict"].items())
    summary = json.loads((uninterrupted.out_dir / "train_summary.json").read_text())
    assert summary["best_val_average_map"] == uninterrupted.best_metrics["average_mAP"]
    assert summary["num_parameters"] == uninterrupted.num_parameters > 0
    assert summary["train_snippets_per_s"] > 0


def test_train_log_has_one_row_per_epoch(uninterrupted: TrainResult) -> None:
    with (uninterrupted.out_dir / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert {"lr", "loss", "cls", "reg", "val_average_map", "snippets_per_s"} <= set(rows[0])
    assert float(rows[-1]["val_average_map"]) == pytest.approx(
        uninterrupted.last_metrics["average_mAP"]
    )
    # the schedule ends at zero after the last step
    assert float(rows[-1]["lr"]) == pytest.approx(0.0, abs=1e-12)
    assert max(uninterrupted.best_metrics["average_mAP"], 0) == max(
        row["val_average_map"] for row in uninterrupted.log
    )


def test_training_lowers_the_loss_on_planted_signal(
    uninterrupted: TrainResult, feature_set: SyntheticFeatureSet
) -> None:
    annotations = load_annotations(feature_set.annotations_path)
    dataset = FeatureDataset(
        annotations, "train", feature_set.index_path, feature_set.stats_path, training=False
    )
    bundle = torch.load(uninterrupted.model_path, weights_only=True)
    batch = collate_videos([dataset[i] for i in range(len(dataset))], pad_multiple=4)
    losses = {}
    for name, state_dict in (("initial", None), ("trained", bundle["state_dict"])):
        torch.manual_seed(RUN_CONFIG["seed"])
        detector = build_detector(bundle["model_config"])
        if state_dict is not None:
            detector.load_state_dict(state_dict)
        detector.eval()
        detector.loss_normalizer.fill_(1.0)  # same normaliser for both: raw summed losses
        with torch.no_grad():
            output = detector(batch["inputs"], batch["mask"])
            losses[name] = float(
                detector.loss(output, batch["gt_segments"], batch["gt_labels"])["loss"]
            )
    assert losses["trained"] < 0.75 * losses["initial"]


def test_warmup_cosine_factors() -> None:
    schedule = WarmupCosine(warmup_steps=2, total_steps=10)
    factors = [schedule(step) for step in range(11)]
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(9)]
    assert factors == pytest.approx(expected)
    assert factors[6] == pytest.approx(0.5) and factors[10] == pytest.approx(0.0)


def test_warmup_ema_weights_by_hand() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(model, multi_avg_fn=WarmupEMA(0.9), use_buffers=True)
    expected = None
    for n, value in enumerate([2.0, 4.0, 8.0, 0.0] + [1.0] * 40):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
        # update n (0-based) follows n others: the first copies, later ones use this decay
        decay = min(0.9, (1 + n) / (10 + n))
        expected = value if expected is None else decay * expected + (1 - decay) * value
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert WarmupEMA(0.9).decay_after(1) == pytest.approx(2 / 11)
    assert WarmupEMA(0.9).decay_after(1000) == 0.9


def test_run_config_checks() -> None:
    resolved = resolve_run_config(copy.deepcopy(RUN_CONFIG))
    assert resolved["training"]["grad_clip"] == 1.0  # schema default
    assert resolved["training"]["crop_min_kept_fraction"] == 0.5
    # one training: the job's seed replaces the run's list of seeds
    assert resolved["training"]["seed"] == 7 and "seeds" not in resolved["training"]
    without_seed = {key: value for key, value in RUN_CONFIG.items() if key != "seed"}
    without_seed["training"] = {**RUN_CONFIG["training"], "seeds": [4, 5]}
    assert resolve_run_config(without_seed)["training"]["seed"] == 4  # the first seed
    bad = copy.deepcopy(RUN_CONFIG)
    bad["model"]["num_classes"] = 5
    with pytest.raises(ValueError, match=r"model\.num_classes is read from"):
        resolve_run_config(bad)
    bad = copy.deepcopy(RUN_CONFIG)
    bad["training"]["epoch"] = 5
    with pytest.raises(ValueError, match="epoch"):
        resolve_run_config(bad)


def test_checkpoints_of_another_config_or_data_are_not_resumed(
    uninterrupted: TrainResult,
    feature_set: SyntheticFeatureSet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    source = uninterrupted.out_dir / "checkpoints" / "last.pt"
    (run_dir / "checkpoints" / "last.pt").write_bytes(source.read_bytes())
    other = copy.deepcopy(RUN_CONFIG)
    other["training"]["learning_rate"] = 0.001
    other["training"]["epochs"] = 1
    fresh = train_run(other, out_dir=run_dir, **_paths(feature_set))
    assert "another config" in capsys.readouterr().out
    # trained from scratch: one epoch of its own, not the finished run's four
    assert [row["epoch"] for row in fresh.log] == [1]
    assert fresh.log[0]["losses"] != uninterrupted.log[0]["losses"]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_001.pt", "last.pt"]
    # the same with the finished run's checkpoint and changed annotations
    (run_dir / "checkpoints" / "last.pt").write_bytes(source.read_bytes())
    annotations = json.loads(feature_set.annotations_path.read_text())
    annotations["database"]["train_000"]["annotations"][0]["segment"][1] += 0.5
    changed = tmp_path / "annotations.json"
    changed.write_text(json.dumps(annotations))
    paths = {**_paths(feature_set), "annotations_path": changed}
    retrained = train_run(copy.deepcopy(RUN_CONFIG), out_dir=run_dir, **paths)
    assert "other features, statistics or annotations" in capsys.readouterr().out
    assert retrained.log[0]["losses"] != uninterrupted.log[0]["losses"]


def test_cli_rejects_max_seq_len_off_the_stride(
    feature_set: SyntheticFeatureSet, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = copy.deepcopy(RUN_CONFIG)
    config["training"]["max_seq_len"] = 30  # the tiny model's max_stride is 4
    paths = _paths(feature_set)
    code = main(
        [
            "--settings",
            json.dumps(config),
            "--index",
            str(paths["index_path"]),
            "--stats",
            str(paths["stats_path"]),
            "--annotations",
            str(paths["annotations_path"]),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 1
    assert "multiple of the detector's max_stride 4" in capsys.readouterr().err


def test_cli_names_the_annotation_file_once_without_a_validation_split(
    feature_set: SyntheticFeatureSet, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    annotations = json.loads(feature_set.annotations_path.read_text())
    for video in annotations["database"].values():
        if video["subset"] == "validation":
            video["subset"] = "train"
    no_validation = tmp_path / "no_validation.json"
    no_validation.write_text(json.dumps(annotations))
    paths = {**_paths(feature_set), "annotations_path": no_validation}
    arguments = ["--settings", json.dumps(RUN_CONFIG), "--out", str(tmp_path / "run")]
    for flag, key in (("--index", "index_path"), ("--stats", "stats_path")):
        arguments += [flag, str(paths[key])]
    code = main([*arguments, "--annotations", str(no_validation)])
    error = capsys.readouterr().err
    assert code == 1
    assert f"{no_validation}: no video has subset 'validation'" in error
    assert "model selection needs a validation split" in error
    assert error.count(str(no_validation)) == 1
