"""The shipped configuration files: valid against the schema, and every run's model builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from models import build_detector
from models.m2vsl import build_localiser
from pipeline.comparison import describe_detector
from pipeline.config import load_config, run_config, task_enabled
from pipeline.detection.run_config import detector_config

ROOT = Path(__file__).resolve().parents[1]
EXTRA_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _merged(extra: Path) -> dict:
    """The main config with ``extra`` merged in, as ``--configfile A B`` merges them; a config
    with a data set of its own (``dataset.source``) stands alone, as it is run."""
    overrides = yaml.safe_load(extra.read_text())
    if "source" in overrides.get("dataset", {}):
        return load_config(extra)
    return load_config(ROOT / "workflow_config.yaml", overrides=overrides)


def test_there_are_extra_configs():
    names = {path.name for path in EXTRA_CONFIGS}
    assert {"mravff_ablations.yaml", "loco_table2.yaml", "loco_table3.yaml", "m2vsl_ablations.yaml",
            "avbt_table2.yaml", "avbt_table3.yaml", "avbt_table4.yaml", "avbt_table5.yaml",
            "tacma_fig6.yaml", "ave_videos.yaml", "ave_released.yaml"} <= names  # fmt: skip


DETECTION_CONFIGS = [path for path in EXTRA_CONFIGS if "runs" in yaml.safe_load(path.read_text())]
SPATIAL_CONFIGS = [path for path in EXTRA_CONFIGS if "spatial" in yaml.safe_load(path.read_text())]


@pytest.mark.parametrize("extra", EXTRA_CONFIGS, ids=lambda path: path.name)
def test_every_extra_config_is_valid_and_its_stages_run(extra: Path):
    config = _merged(extra)  # schema, segment settings and pre-training names checked here
    dataset = config["dataset"]
    # a detection benchmark's features (UnAV-100, Perception Test) come without segment labels
    detection_only = dataset["source"] == "import" and dataset["import"]["format"] != "ave"
    assert task_enabled(config, "segments") != detection_only
    if config["dataset"]["source"] == "synth":
        assert task_enabled(config, "spatial")


def test_the_demo_config_compares_all_five_detectors():
    config = load_config(ROOT / "workflow_config.yaml")
    kinds = {describe_detector(config["runs"][name]["model"]) for name in config["runs"]}
    assert kinds == {
        "ActionFormer, audio only",
        "ActionFormer, visual only",
        "ActionFormer, early fusion (audio + visual)",
        "ActionFormer + MRAV-FF (gated)",
        "LoCo (cdp cross-attention, LCC)",
    }


@pytest.mark.parametrize("extra", SPATIAL_CONFIGS, ids=lambda path: path.name)
def test_every_localiser_builds_and_trains_a_step(extra: Path):
    config = _merged(extra)
    torch.manual_seed(0)
    grid = {"grid_dim": 5, "grid_shape": (8, 8)}  # a one-level grid (classic, CLIP)
    if config["extraction"]["visual"]["name"] == "resnet":  # a packed three-level pyramid
        grid = {"grid_dim": 3 * 16 + 4 * 4 + 5, "grid_shape": (2, 2)}
        grid["grid_levels"] = ((3, 4), (4, 2), (5, 1))
    for name, run in config["spatial"]["runs"].items():
        model = build_localiser(
            {"name": run["method"], **run["model"]}, audio_dim=6, num_classes=3, **grid
        )
        labels = torch.eye(3)[torch.tensor([0, 1, 2, 0])]
        grids = torch.randn(4, *grid["grid_shape"], grid["grid_dim"])
        losses = model.losses(grids, torch.randn(4, 6), labels)
        losses["loss"].backward()
        assert torch.isfinite(losses["loss"]), name


@pytest.mark.parametrize("extra", DETECTION_CONFIGS, ids=lambda path: path.name)
def test_every_run_builds_and_runs_a_forward_pass(extra: Path):
    config = _merged(extra)
    added = yaml.safe_load(extra.read_text())["runs"]
    assert set(added) <= set(config["runs"])
    torch.manual_seed(0)
    for name in added:
        run = run_config(config, name)
        # the paper configs' 512-wide models, narrowed: the same structure, a fraction of the time
        model = {**run["model"], "embed_dim": 32, "head_dim": 32}
        detector = build_detector(
            detector_config(model, {"audio": 6, "visual": 5}, 3, window_s=0.96, stride_s=0.32)
        )
        length = detector.max_stride * 2
        inputs = {m: torch.randn(1, length, 6 if m == "audio" else 5) for m in ("audio", "visual")}
        output = detector(inputs, torch.ones(1, length, dtype=torch.bool))
        assert output.cls_logits[0].shape == (1, length, 3), name
