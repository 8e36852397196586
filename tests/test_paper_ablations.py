"""The ablation configs of configs/papers (LoCo Tables 2 and 3, the MRAV-FF rows) end to end on a
fake UnAV-100 I3D-VGGish release: every row is resolved from the merged config as the DAG
resolves it, then trained, run on the test split, scored and tabled by the stages' own command
lines, called in this process (26 rows: one process per job, as snakemake starts them, would
spend minutes importing torch; the DAG around these stages is run by the data set configs'
tests). The models are narrowed, their structure kept."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.config import load_config, run_config
from pipeline.detection import evaluate, infer, table, train
from pipeline.importers import unav100
from tests.paper_configs import PAPERS, deep_merge, paper_config, shrink_runs
from tests.test_paper_unav import RELEASES, fake_release

pytestmark = pytest.mark.slow

OVERLAYS = ("loco_table2.yaml", "loco_table3.yaml", "mravff_ablations.yaml")
NARROW = {"embed_dim": 16, "head_dim": 16}
TINY = {"training": {"epochs": 1, "batch_size": 2, "max_seq_len": 32, "warmup_epochs": 0}}


@pytest.fixture
def one_thread():
    """One torch thread while the rows train (the suite runs two workers on two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_every_ablation_row_reaches_the_table(tmp_path):
    files, rows, duration_s = RELEASES["unav100_i3d_vggish.yaml"]
    annotations = fake_release(tmp_path, files, rows, duration_s)
    features = tmp_path / "features"
    release = ["--annotations", str(annotations), "--features-dir", str(tmp_path / "release")]
    names = ["--dataset", "unav", "--encoder-set", "i3d_vggish"]
    assert unav100.main([*release, "--out", str(features), *names]) == 0
    rows_config = paper_config(*OVERLAYS, overrides={})
    narrowed = shrink_runs(rows_config, **NARROW)["runs"]
    paths = {"annotations": str(annotations), "features_dir": str(tmp_path / "release")}
    dataset = {"import": paths}  # the data set config's paths pointed at the fakes
    config = load_config(
        PAPERS / "unav100_i3d_vggish.yaml",
        overrides=deep_merge({**TINY, "dataset": dataset}, {"runs": narrowed}),
    )
    run_dirs = []
    for name in narrowed:
        out = tmp_path / "runs" / name
        settings = json.dumps(run_config(config, name), sort_keys=True)
        common = ["--index", str(features / "index.json"), "--stats", str(features / "stats.json")]
        common += ["--annotations", str(annotations)]
        assert train.main(["--settings", settings, *common, "--out", str(out)]) == 0, name
        events = out / "events" / "test.json"
        assert infer.main(["--model", str(out / "model.pt"), *common, "--out", str(events)]) == 0
        metrics = out / "metrics.json"
        args = ["--annotations", str(annotations), "--events", str(events), "--out", str(metrics)]
        assert evaluate.main(args) == 0, name
        assert 0.0 <= json.loads(metrics.read_text())["average_mAP"] <= 1.0, name
        run_dirs.append(str(out))
    markdown = tmp_path / "table.md"
    assert table.main(["--benchmark", "unav100", "--runs", *run_dirs, "--out", str(markdown)]) == 0
    text = markdown.read_text()
    for name in narrowed:
        assert f"ours: {name}" in text, name
