"""Tests of the detection evaluation CLI, its plots and pipeline.detection.report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from pipeline.detection.evaluate import main as evaluate_main
from pipeline.detection.report import build_report
from pipeline.detection.report import main as report_main

# Two test videos, classes "dog" (2 events) and "car" (1 event); one training video.
DATABASE = {
    "v1": {
        "duration": 10.0,
        "subset": "test",
        "annotations": [
            {"segment": [1.0, 3.0], "label": "dog", "label_id": 0},
            {"segment": [5.0, 8.0], "label": "car", "label_id": 1},
        ],
    },
    "v2": {
        "duration": 6.0,
        "subset": "test",
        "annotations": [{"segment": [2.0, 4.0], "label": "dog", "label_id": 0}],
    },
    "t1": {
        "duration": 6.0,
        "subset": "train",
        "annotations": [{"segment": [2.0, 4.0], "label": "car", "label_id": 1}],
    },
}
# Finds both dog events exactly, misses the car: AP dog 1, AP car 0 -> mAP 0.5 everywhere.
DOGS_ONLY = {
    "v1": [{"segment": [1.0, 3.0], "label": "dog", "score": 0.9}],
    "v2": [{"segment": [2.0, 4.0], "label": "dog", "score": 0.8}],
}
# Finds all three events exactly: mAP 1 everywhere.
PERFECT = {
    "v1": [
        {"segment": [1.0, 3.0], "label": "dog", "score": 0.9},
        {"segment": [5.0, 8.0], "label": "car", "score": 0.7},
    ],
    "v2": [{"segment": [2.0, 4.0], "label": "dog", "score": 0.8}],
}


def _write_run(
    folder: Path, name: str, results: dict, annotations: Path, resamples: int = 0
) -> Path:
    """A run folder as the stages leave it: events, throughput sidecar, summary, then metrics
    (with ``resamples`` bootstrap resamples of the test videos; 0: none)."""
    run = folder / name
    (run / "events").mkdir(parents=True)
    payload = {"version": "t", "results": results, "external_data": {}}
    (run / "events" / "test.json").write_text(json.dumps(payload))
    sidecar = {"split": "test", "device": "cpu", "num_snippets": 50, "snippets_per_s": 1234.0}
    (run / "events" / "test.throughput.json").write_text(json.dumps(sidecar))
    summary = {
        "name": name,
        "epochs": 4,
        "best_epoch": 3,
        "best_val_average_map": 0.25,
        "num_parameters": 13640,
        "train_snippets_per_s": 2100.0,
        "device": "cpu",
    }
    (run / "train_summary.json").write_text(json.dumps(summary))
    code = evaluate_main(
        [
            "--annotations",
            str(annotations),
            "--split",
            "test",
            "--events",
            str(run / "events" / "test.json"),
            "--tiou",
            "0.3",
            "0.5",
            "0.7",
            "--out",
            str(run / "metrics.json"),
            "--plots",
            str(run / "plots"),
            "--bootstrap-resamples",
            str(resamples),
        ]
    )
    assert code == 0
    return run


@pytest.fixture
def annotations(tmp_path: Path) -> Path:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"version": "t", "database": DATABASE}))
    return path


def test_evaluate_writes_metrics_and_plots(tmp_path: Path, annotations: Path) -> None:
    run = _write_run(tmp_path, "dogs", DOGS_ONLY, annotations)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mAP"] == pytest.approx({"0.3": 0.5, "0.5": 0.5, "0.7": 0.5})
    assert metrics["average_mAP"] == pytest.approx(0.5)
    assert metrics["ap_per_class"]["dog"]["0.5"] == pytest.approx(1.0)
    assert metrics["ap_per_class"]["car"]["0.5"] == pytest.approx(0.0)
    assert metrics["recall_1x"]["0.5"] == pytest.approx(0.5)  # mean of dog 1 and car 0
    assert (metrics["num_videos"], metrics["num_events"], metrics["num_predictions"]) == (2, 3, 2)
    assert metrics["inference"]["snippets_per_s"] == 1234.0
    assert sorted(metrics["plots"]) == [
        "plots/per_class_ap.png",
        "plots/timeline_v1.png",
        "plots/timeline_v2.png",
    ]
    for relative in metrics["plots"]:
        image = imread(run / relative)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
        assert image[..., :3].std() > 0.01  # something was drawn


def test_evaluate_reports_a_bad_events_file(
    tmp_path: Path, annotations: Path, capsys: pytest.CaptureFixture
) -> None:
    events = tmp_path / "events.json"
    bad = {"results": {"v1": [{"segment": [1.0, 2.0], "label": "cat", "score": 0.5}]}}
    events.write_text(json.dumps(bad))
    code = evaluate_main(
        ["--annotations", str(annotations), "--events", str(events), "--out", str(tmp_path / "m")]
    )
    assert code == 1
    assert "events.json" in capsys.readouterr().err


def test_report_compares_runs(tmp_path: Path, annotations: Path) -> None:
    runs = [
        _write_run(tmp_path / "runs", "dogs", DOGS_ONLY, annotations),
        _write_run(tmp_path / "runs", "perfect", PERFECT, annotations),
    ]
    index = {
        "window_s": 0.96,
        "stride_s": 0.32,
        "encoder_set": "classic",
        "encoders": {"visual": {"name": "classic", "dim": 16}, "audio": {"name": "mel", "dim": 8}},
        "videos": {"v1": {}, "v2": {}, "t1": {}},
        "failed": {"v3": "no video stream"},
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    out = tmp_path / "results" / "demo" / "report.md"
    arguments = ["--title", "demo", "--runs", *map(str, runs), "--out", str(out)]
    assert report_main([*arguments, "--index", str(tmp_path / "index.json")]) == 0
    text = out.read_text()
    assert text.startswith("# demo\n")
    assert "| run | mAP@0.3 | mAP@0.5 | mAP@0.7 | average |" in text
    assert "| dogs | 50.00 | 50.00 | 50.00 | 50.00 |" in text
    assert "| perfect | **100.00** | **100.00** | **100.00** | **100.00** |" in text
    assert (
        "**perfect** has the best average mAP (100.00 %), 50.00 points above the next best run, "
        "dogs (50.00 %, +100% relative)." in text
    )
    assert "| **average** | **50.00** | | |" in text  # the per-run table of dogs
    assert "- parameters: 13,640" in text and "1,234 snippets/s on cpu" in text
    assert "- videos extracted: 3; failed: 1" in text and "failed `v3`: no video stream" in text
    link = "../../runs/perfect/plots/per_class_ap.png"
    assert f"[per_class_ap]({link})" in text and (out.parent / link).exists()


def test_report_tie_and_missing_metrics(tmp_path: Path, annotations: Path) -> None:
    runs = [
        _write_run(tmp_path, "a", PERFECT, annotations),
        _write_run(tmp_path, "b", PERFECT, annotations),
    ]
    text = build_report("tie", runs, out_path=tmp_path / "report.md")
    assert "Runs **a**, **b** tie for the best average mAP (100.00 %)." in text
    with pytest.raises(FileNotFoundError, match=r"empty[/\\]metrics\.json does not exist"):
        build_report("x", [tmp_path / "empty"], out_path=tmp_path / "r.md")
