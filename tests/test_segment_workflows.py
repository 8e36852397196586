"""The AV-BT + TACMA paper configs end to end: on AVE's released features (fakes in the
release's exact shapes), on AVE's raw videos (tiny fake clips with AVE's annotation files),
and every paper-table config on the tiny synthetic data, each down to its segment table."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from pipeline.importers.ave import CATEGORIES
from tests import media
from tests.test_workflow import TINY_AVBT, check_ok, job_counts, snakemake, write_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "configs" / "papers"
TINY_PRETRAIN = TINY_AVBT
TINY_CLASSIFIER = {"hidden_dim": 8, "attention_dim": 4, "output_dim": 8, "epochs": 2}
TINY_CLIPS = {"frame_fps": 2, "frame_width": 24, "frame_height": 24}
# Rows of a fake Annotations.txt: (category index, YouTube id, start, end); two rows share vidA.
AVE_ROWS = [
    (0, "vidA", 0, 10), (2, "vidB", 2, 5), (1, "vidA", 6, 8), (3, "vidC", 1, 4),
    (0, "vidD", 3, 9), (2, "vidE", 0, 6), (1, "vidF", 4, 10), (3, "vidG", 2, 3),
]  # fmt: skip
AVE_SPLITS = {"train_order.h5": [0, 1, 3, 4], "val_order.h5": [5, 6], "test_order.h5": [2, 7]}


def _paper(name: str) -> dict:
    return yaml.safe_load((PAPERS / name).read_text())


def _merge(*configs: dict) -> dict:
    """Deep merge, as ``--configfile A B`` merges files."""
    merged: dict = {}
    for config in configs:
        for key, value in config.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _merge(merged[key], value)
            else:
                merged[key] = value
    return merged


def _write_ave_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    lines = [f"{CATEGORIES[c]}&{vid}&good&{start}&{end}" for c, vid, start, end in AVE_ROWS]
    (folder / "Annotations.txt").write_text("\n".join(lines) + "\n")
    for name, rows in AVE_SPLITS.items():
        with h5py.File(folder / name, "w") as handle:
            handle["order"] = np.array(rows, dtype=np.int64)


def _table(workdir: Path, dataset: str) -> tuple[str, dict]:
    results = workdir / "results" / dataset / "segments"
    return (results / "table.md").read_text(), json.loads((results / "metrics.json").read_text())


def _released_config(release: Path, table: str) -> dict:
    """ave_released.yaml with a paper-table config, on the fake release, tiny classifiers."""
    return _merge(
        _paper("ave_released.yaml"),
        _paper(table),
        {
            "dataset": {"import": {"annotations": str(release), "features_dir": str(release)}},
            "segments": {"classifier": {**TINY_CLASSIFIER, "input_projection_dim": 8}},
        },
    )


def test_ave_released_features_run_table3(tmp_path: Path) -> None:
    release = tmp_path / "AVE_Dataset"
    _write_ave_folder(release)
    rng = np.random.default_rng(0)
    rows = len(AVE_ROWS)
    with h5py.File(release / "visual_feature.h5", "w") as handle:
        handle["avadataset"] = rng.normal(size=(rows, 10, 7, 7, 512)).astype(np.float32)
    with h5py.File(release / "audio_feature.h5", "w") as handle:
        handle["avadataset"] = rng.normal(size=(rows, 10, 128)).astype(np.float32)
    with h5py.File(release / "labels.h5", "w") as handle:  # as released; not read
        handle["avadataset"] = np.zeros((rows, 10, 29), np.float32)
    config = _released_config(release, "avbt_table3.yaml")
    write_config(tmp_path, config)
    check_ok(snakemake(tmp_path, "results/ave/segments/table.md", timeout=300))
    text, summary = _table(tmp_path, "ave")
    rows = {row["run"]: row for row in summary["rows"]}
    assert {run: row["name"] for run, row in rows.items()} == {
        "audio": "Audio only", "visual": "Visual only", "sum": "Audio-visual (sum)",
        "tacma": "TACMA",
    }  # fmt: skip
    assert all(row["protocol"] == "released features" for row in summary["rows"])
    assert summary["num_segments"]["test"] == 20  # two test rows, ten segments each
    # The supervised AVEL rows of the paper's Table 2 sit beside ours; TACMA has none there.
    papers = {run: row["paper"]["accuracy"] if row["paper"] else None for run, row in rows.items()}
    assert papers == {"audio": 59.5, "visual": 55.3, "sum": 71.3, "tacma": None}
    assert "| AV-BT + TACMA | AV-BT Table 3 |  | 77.2 % |" in text
    assert "released `vgg19_vggish` features" in text
    # The classifier-only paper configs on the same import (the AV-BT pre-training ablations,
    # Tables 4 and 5, need the raw videos).
    for name in ("avbt_table2.yaml", "tacma_fig6.yaml"):
        config = _released_config(release, name)
        write_config(tmp_path, config, name=f"{name}.config.yaml")
        check_ok(
            snakemake(
                tmp_path, "results/ave/segments/table.md", config=f"{name}.config.yaml", timeout=300
            )
        )
        _, summary = _table(tmp_path, "ave")
        assert {row["run"] for row in summary["rows"]} == set(_paper(name)["segments"]["runs"])


def test_ave_raw_videos_run_table3(tmp_path: Path) -> None:
    folder = tmp_path / "AVE_Dataset"
    _write_ave_folder(folder)
    videos = folder / "AVE"
    videos.mkdir()
    for index, vid in enumerate(sorted({vid for _, vid, _, _ in AVE_ROWS})):
        media.make_video(
            videos / f"{vid}.mp4", duration_s=10.0, fps=4, size=(32, 24), tone_hz=300 + 50 * index
        )
    config = _merge(
        _paper("ave_videos.yaml"),
        _paper("avbt_table3.yaml"),
        {
            "dataset": {"videos_dir": str(videos), "segment_labels": str(folder)},
            "segments": {
                "clips": TINY_CLIPS,
                "pretrain": TINY_PRETRAIN,
                "classifier": TINY_CLASSIFIER,
            },
        },
    )
    write_config(tmp_path, config)
    check_ok(snakemake(tmp_path, "results/ave_videos/segments/table.md", timeout=300))
    _, summary = _table(tmp_path, "ave_videos")
    rows = {row["run"]: row for row in summary["rows"]}
    assert {run: row["name"] for run, row in rows.items()} == {
        "audio": "AV-BT audio only", "visual": "AV-BT visual only",
        "sum": "AV-BT audio-visual (sum)", "tacma": "AV-BT + TACMA",
    }  # fmt: skip
    papers = {run: row["paper"]["accuracy"] for run, row in rows.items()}
    # Table 2, and Fig. 6 at theta 0.03 (Table 3's number)
    assert papers == {"audio": 63.5, "visual": 61.0, "sum": 75.6, "tacma": 77.2}
    pretraining = json.loads(
        (tmp_path / "results/ave_videos/segments/pretrain/avbt/avbt.json").read_text()
    )
    assert pretraining["num_train_videos"] == 4  # AV-BT sees the train rows only
    labels = (tmp_path / "results/ave_videos/segments.csv").read_text().splitlines()
    assert len(labels) == 1 + 10 * len(AVE_ROWS)
    assert "0002_vidA,6,6,7," in "\n".join(labels)  # the second row of vidA: its own event


def test_ave_raw_videos_missing_clip_fails_before_any_job(tmp_path: Path) -> None:
    folder = tmp_path / "AVE_Dataset"
    _write_ave_folder(folder)
    videos = folder / "AVE"
    videos.mkdir()
    media.make_video(videos / "vidA.mp4", duration_s=10.0, fps=4, size=(32, 24))
    config = _merge(
        _paper("ave_videos.yaml"),
        {
            "dataset": {"videos_dir": str(videos), "segment_labels": str(folder)},
            "segments": {"pretrain": TINY_PRETRAIN},
        },
    )
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert "names video vidB, which is not in the videos folder" in result.stdout
    assert "train_order.h5: row 1" in result.stdout


def test_missing_backbone_weights_fail_at_dag_build(tmp_path: Path) -> None:
    config = {
        "dataset": {"name": "tiny", "source": "synth", "synth": {"size": "tiny", "num_classes": 3}},
        "segments": {"enabled": True},  # the paper's ResNet-50 and VGGish, no weights here
        "spatial": {"enabled": False},
    }
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert "VGGish (AudioSet) weights weights/vggish-10086976.pth do not exist" in result.stdout
    assert "segments.pretrainings.avbt.audio_weights" in result.stdout


PAPER_TABLES = ["avbt_table2.yaml", "avbt_table3.yaml", "avbt_table4.yaml",
                "avbt_table5.yaml", "tacma_fig6.yaml"]  # fmt: skip


# Rows run for real from the two long ablations; every row of every config is planned by a dry
# run. Table 5's rows differ only in AV-BT's augmentation flags and Fig. 6's in TACMA's theta:
# the rows left out run the same code with other values (each flag and theta has unit tests).
RUN_FOR_REAL = {
    "avbt_table5.yaml": ["sum_aug_crop_small_all", "sum_aug_none"],
    "tacma_fig6.yaml": ["sum", "tacma_theta0_0", "tacma"],
}


def _rows_run(config: dict, name: str) -> dict:
    """``config`` with only the rows of :data:`RUN_FOR_REAL` (and the pre-trainings they use)."""
    if name not in RUN_FOR_REAL:
        return config
    segments = config["segments"]
    runs = {run: segments["runs"][run] for run in RUN_FOR_REAL[name]}
    kept = {"segments": {**segments, "runs": runs}}
    if "pretrainings" in segments:
        used = {run.get("pretraining", "avbt") for run in runs.values()}
        kept["segments"]["pretrainings"] = {
            key: value for key, value in segments["pretrainings"].items() if key in used
        }
    return {**config, **kept}


def test_every_paper_table_config_runs_on_the_synthetic_data(tmp_path: Path) -> None:
    """One folder for all five: the clips (and the shared pre-training) are reused."""
    base = {
        "dataset": {"name": "tiny", "source": "synth", "synth": {"size": "tiny", "num_classes": 3}},
        "spatial": {"enabled": False},
        "segments": {"clips": TINY_CLIPS, "pretrain": TINY_PRETRAIN, "classifier": TINY_CLASSIFIER},
        "runs": {"fusion": {"model": {"name": "actionformer", "embed_dim": 16, "head_dim": 16}}},
    }
    for name in PAPER_TABLES:
        config = _merge(base, _paper(name))
        write_config(tmp_path, config, name=f"{name}.config.yaml")
        target = "results/tiny/segments/table.md"
        dry_run = snakemake(tmp_path, target, "-n", "--forceall", config=f"{name}.config.yaml")
        planned = job_counts(check_ok(dry_run))  # every job of the whole config
        runs = config["segments"]["runs"]
        assert planned["segments_train"] == len(runs), name
        used = {run.get("pretraining", "avbt") for run in runs.values()}
        assert planned["segments_pretrain"] == len(used), name
        write_config(tmp_path, _rows_run(config, name), name=f"{name}.run.yaml")
        check_ok(snakemake(tmp_path, target, config=f"{name}.run.yaml", timeout=400))
        _, summary = _table(tmp_path, "tiny")
        expected = set(_rows_run(config, name)["segments"]["runs"])
        assert {row["run"] for row in summary["rows"]} == expected, name
    thetas = {row["run"]: row["theta"] for row in summary["rows"]}  # the last one: Fig. 6
    assert thetas["tacma"] == 0.03 and thetas["tacma_theta0_0"] == 0.0
