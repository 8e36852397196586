"""The spatial table's published block on fake run folders: the rows of a localisation
benchmark on our scale, the rows of another test set apart, none for the synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.published import PUBLISHED_PATH
from pipeline.spatial import table

OVERALL = {
    "ezvsl": {"ciou": 0.5, "auc": 0.4, "mean_ciou": 0.45},
    "slavc": {"ap": 0.3, "max_f1": 0.35, "precision": 0.5},
    "avsbench": {"miou": 0.6, "fscore": 0.55},
    "ours": {
        "ciou_gt_area": 0.7,
        "mean_ciou_gt_area": 0.6,
        "pointing_accuracy": 0.8,
        "peak_on_silent_rate": None,
    },
}


def fake_run(root: Path, name: str, method: str, seed: int, ciou: float) -> Path:
    """A run folder as pipeline.spatial.evaluate and train write it (the keys the table reads)."""
    run = root / name / f"seed{seed}"
    run.mkdir(parents=True)
    overall = {**OVERALL, "ezvsl": {**OVERALL["ezvsl"], "ciou": ciou}}
    metrics = {
        "method": method,
        "split": "test",
        "num_snippets": 249,
        "num_frames": 249,
        "num_negatives": 0,
        "num_frames_with_silent_distractor": 0,
        "overall": overall,
        "with_silent_distractor": None,
        "grid_oracle": OVERALL,
        "num_parameters": 1234,
        "throughput_frames_per_s": 500.0,
        "torch_threads": 1,
    }
    summary = {
        "name": name,
        "train_config": {"seed": seed},
        "train_seconds": 3.0,
        "train_cpu_seconds": 2.5,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "train_summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[str]:
    return [
        str(fake_run(tmp_path / "spatial", name, method, seed, ciou))
        for name, method, seed, ciou in (
            ("similarity", "similarity", 0, 0.60),
            ("similarity", "similarity", 1, 0.62),
            ("m2vsl", "m2vsl", 0, 0.50),
        )
    ]


def write(tmp_path: Path, runs: list[str], *extra: str) -> tuple[str, dict]:
    out, merged = tmp_path / "table.md", tmp_path / "metrics.json"
    args = ["--runs", *runs, "--out", str(out), "--json", str(merged), *extra]
    assert table.main([*args, "--title", "flickr_soundnet"]) == 0
    return out.read_text(), json.loads(merged.read_text())


def test_flickr_runs_beside_the_published_rows(tmp_path: Path, runs: list[str]) -> None:
    text, merged = write(tmp_path, runs, "--published", "flickr_soundnet")
    ours, published = text.split("## Published: Flickr-SoundNet test", 1)
    assert "| Similarity map (baseline) | 2 | 0.610 ± 0.014 |" in ours
    # EZ-VSL's README percentages / 100, every digit; the columns it does not report: "–"
    comparable, other = published.split("On another test set, not comparable with our rows:")
    assert (
        "| EZ-VSL (train=Flickr 10k) | verified | 0.8193 | 0.6258 | – | – | – | – | – | "
        "ResNet-18 image (ImageNet init) and audio encoders, trained | [1] |"
    ) in comparable
    assert "| EZ-VSL (train=VGG-Sound 144k) | verified | 0.8394 | 0.6360 |" in comparable
    assert "| SLAVC" not in comparable  # Extended Flickr-SoundNet, with negatives: apart
    assert "| SLAVC (train=VGG-Sound 144k) | verified | – | – | 0.5163 | 0.5910 | 0.8360 |" in (
        other
    )
    assert "- SLAVC (train=VGG-Sound 144k): Extended Flickr-SoundNet:" in other
    assert '1. "Localizing Visual Sounds the Easy Way", Mo, Morgado, arXiv 2203.09324' in other
    assert '2. "A Closer Look at Weakly-Supervised Audio-Visual Source Localization"' in other
    assert "Published percentages divided by 100, to the scale of our rows" in comparable
    assert "ours train only a localiser on fixed, pre-extracted features" in comparable
    # the JSON: every published row, on our scale under our families, and as published
    block = merged["published"]
    assert block["benchmark"] == "flickr_soundnet" and "249 annotated" in block["test_set"]
    first = block["entries"][0]
    assert first["values"]["ezvsl"] == {"ciou": pytest.approx(0.8193), "auc": 0.6258}
    assert first["values"]["slavc"] == {"ap": None, "max_f1": None, "precision": None}
    assert first["percent"]["ciou"] == 81.93 and first["comparable"] is True
    slavc = block["entries"][-1]
    assert slavc["comparable"] is False and slavc["test_set"].startswith("Extended Flickr")
    assert slavc["values"]["slavc"]["precision"] == pytest.approx(0.836)


def test_not_found_and_not_reported_columns(tmp_path: Path, runs: list[str]) -> None:
    text, merged = write(tmp_path, runs, "--published", "avsbench_s4")
    # M2VSL's mIoU and F-score: not found (n/a); the columns AVSBench S4 does not have: "–"
    assert "| M2VSL | not found | – | – | – | – | – | n/a | n/a |" in text
    assert (
        "| WS-AVS (train=AVSBench S4 train) | verified | – | – | – | – | – | 0.3413 | 0.5176 |"
        in (text)
    )
    assert "not comparable" not in text
    m2vsl = merged["published"]["entries"][0]
    assert m2vsl["status"] == "not found" and m2vsl["values"] == {
        "avsbench": {"miou": None, "fscore": None}
    }


def test_no_published_numbers_for_the_synthetic_data(tmp_path: Path, runs: list[str]) -> None:
    text, merged = write(tmp_path, runs)
    assert "No published numbers for this data set." in text and "## Published" not in text
    assert merged["published"] is None


def test_a_key_that_is_not_a_localisation_benchmark_is_refused(
    tmp_path: Path, runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "table.md"
    args = ["--runs", *runs, "--out", str(out), "--json", str(tmp_path / "m.json")]
    assert table.main([*args, "--published", "ave"]) == 1
    assert "benchmark 'ave' has metric 'accuracy', not 'localisation'" in capsys.readouterr().err
    assert not out.exists()
    # another published-results file: its own rows
    content = yaml.safe_load(PUBLISHED_PATH.read_text())
    content["benchmarks"]["flickr_soundnet"]["entries"][0]["values"]["ciou"] = 50.0
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(content))
    text, _ = write(tmp_path, runs, "--published", "flickr_soundnet", "--published-results",
                    str(path))  # fmt: skip
    assert "| EZ-VSL (train=Flickr 10k) | verified | 0.5000 | 0.6258 |" in text
