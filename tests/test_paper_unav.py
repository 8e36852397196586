"""LoCo's UnAV-100 configs (configs/papers/unav100_*.yaml) run end to end on fakes of the two
feature releases, in their exact shapes (few videos, few rows): import, train, infer, evaluate,
down to the paper table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.paper_configs import paper_config, shrink_runs
from tests.test_workflow import check_ok, snakemake, write_config

pytestmark = pytest.mark.slow

# (file suffix, width) per release; rows on the release's grid
RELEASES = {
    "unav100_i3d_vggish.yaml": ((("rgb", 1024), ("flow", 1024), ("vggish", 128)), 40, 13.0),
    "unav100_one_peace.yaml": (
        (("one_peace_video_finetune", 1536), ("one_peace_audio", 1536)),
        40,  # 1 s windows every 0.25 s: 10.75 s
        11.0,
    ),
}
TINY = {
    "training": {"epochs": 1, "batch_size": 2, "max_seq_len": 16, "warmup_epochs": 0},
}


def fake_release(folder: Path, files, rows: int, duration_s: float) -> Path:
    """Random features in the release's file layout and a six-video annotation file."""
    features = folder / "release"
    features.mkdir(parents=True)
    rng = np.random.default_rng(0)
    database = {}
    for number, subset in enumerate(["train", "train", "train", "validation", "test", "test"]):
        video_id = f"-vid{number}"  # YouTube-style ids may start with '-'
        for suffix, width in files:
            values = rng.normal(size=(rows, width)).astype(np.float32)
            np.save(features / f"{video_id}_{suffix}.npy", values)
        database[video_id] = {
            "duration": duration_s,
            "subset": subset,
            "annotations": [{"segment": [2.0, 5.0], "label": "dog barking", "label_id": 0}],
        }
    annotations = folder / "unav100_annotations.json"
    annotations.write_text(json.dumps({"version": "test", "database": database}))
    return annotations


@pytest.mark.parametrize("paper", sorted(RELEASES))
def test_unav100_paper_config_reaches_its_table(tmp_path, paper):
    files, rows, duration_s = RELEASES[paper]
    annotations = fake_release(tmp_path, files, rows, duration_s)
    paths = {"annotations": str(annotations), "features_dir": str(tmp_path / "release")}
    config = paper_config(paper, overrides={**TINY, "dataset": {"import": paths}})
    config = shrink_runs(config, embed_dim=32, head_dim=32, num_pyramid_blocks=2)
    write_config(tmp_path, config)
    check_ok(snakemake(tmp_path))
    dataset, encoder_set = config["dataset"]["name"], config["extraction"]["encoder_set"]
    results = tmp_path / "results" / dataset
    index = json.loads((results / "features" / encoder_set / "index.json").read_text())
    widths = {"visual": 0, "audio": 0}
    for suffix, width in files:
        widths["audio" if "audio" in suffix or suffix == "vggish" else "visual"] += width
    assert index["dims"] == widths
    table = (results / "table.md").read_text()
    assert "ours: loco" in table and "ours: actionformer" in table
    assert "UnAV baseline" in table  # the published rows, found or marked not found
    comparison = json.loads((results / "comparison.json").read_text())
    assert set(comparison["tasks"]) == {"detection"}  # no segment labels or boxes to compare
