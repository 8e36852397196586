"""The per-task comparison: rows, winners and margins computed by hand, and its CLI errors."""

import json
from pathlib import Path

import pytest

from pipeline import comparison


def _detection_run(
    folder: Path, name: str, model: dict, maps: dict[str, float], bootstrap: dict | None = None
) -> Path:
    folder.mkdir(parents=True)
    average = sum(maps.values()) / len(maps)
    metrics = {
        "mAP": maps,
        "average_mAP": average,
        "split": "test",
        "inference": {"snippets_per_s": 800.0},
    }
    if bootstrap is not None:
        metrics["bootstrap"] = bootstrap
    summary = {"name": name, "model": model, "num_parameters": 1000, "train_snippets_per_s": 50.0}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "train_summary.json").write_text(json.dumps(summary))
    return folder


FUSION = {"name": "actionformer", "modalities": ["audio", "visual"]}
MRAVFF = {"name": "actionformer", "modalities": ["visual"], "neck": {"name": "mravff"}}
LOCO = {"name": "loco", "modalities": ["audio", "visual"], "cross_attention": "cdp"}


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    thresholds = ("0.5", "0.6", "0.7", "0.8", "0.9")
    fusion = dict(zip(thresholds, (0.6, 0.5, 0.4, 0.3, 0.2), strict=True))
    loco = dict(zip(thresholds, (0.7, 0.5, 0.3, 0.2, 0.1), strict=True))
    return [
        _detection_run(tmp_path / "fusion", "fusion", FUSION, fusion),
        _detection_run(tmp_path / "loco", "loco", LOCO, loco),
    ]


SEGMENTS = {
    "rows": [
        {
            "name": "AV-BT audio",
            "test_accuracy": 0.58,
            "classifier_parameters": 100,
            "encoder_parameters": 900,
            "train_segments_per_s": 2000.0,
        },
        {
            "name": "AV-BT + TACMA",
            "test_accuracy": 0.75,
            "classifier_parameters": 300,
            "encoder_parameters": 1800,
            "train_segments_per_s": 1000.0,
        },
    ],
    "majority_baseline": {"label_id": 10, "test_accuracy": 0.5},
    "num_segments": {"train": 100, "validation": 20, "test": 40},
    "num_classes": 10,
}


def _spatial_stats(method: str, ciou: float) -> dict:
    """pipeline.spatial.table's per-method statistics: families as in metrics.json."""
    values = {
        "ezvsl": {"ciou": ciou, "auc": 0.5, "mean_ciou": 0.45},
        "slavc": {"ap": 0.3, "max_f1": 0.4, "precision": ciou},
        "avsbench": {"miou": 0.4, "fscore": 0.5},
    }
    return {
        "method": method,
        "seeds": [0, 1],
        "num_parameters": 500,
        "mean": {**values, "train_cpu_seconds": 3.0, "throughput_frames_per_s": 900.0},
        "std": {family: {key: 0.01 for key in metrics} for family, metrics in values.items()},
    }


SPATIAL = {
    "verdict": "M2VSL does not beat the similarity-map baseline on any headline metric; is "
    "within noise on CIoU (EZ-VSL) (Welch's t-test, p >= 0.05).",
    "num_frames": 120,
    "methods": {
        "m2vsl": _spatial_stats("m2vsl", 0.70),
        "similarity": _spatial_stats("similarity", 0.65),
    },
}


def test_detectors_are_named_from_their_model_config() -> None:
    assert comparison.describe_detector(FUSION) == "ActionFormer, early fusion (audio + visual)"
    assert comparison.describe_detector(MRAVFF) == "ActionFormer + MRAV-FF (gated)"
    assert comparison.describe_detector({**LOCO, "lcc_weight": 0.0}) == (
        "LoCo (cdp cross-attention, no LCC)"
    )
    assert comparison.describe_detector(None) == "–"


def test_detector_names_take_the_models_own_defaults() -> None:
    """Keys left out resolve to the models' defaults (models.check_detector_config)."""
    assert comparison.describe_detector({"name": "actionformer"}) == (
        "ActionFormer, early fusion (audio + visual)"
    )
    assert comparison.describe_detector({"name": "loco"}) == "LoCo (cdp cross-attention, LCC)"
    no_gate = {**MRAVFF, "neck": {"name": "mravff", "gate": False}}
    assert comparison.describe_detector(no_gate) == "ActionFormer + MRAV-FF (no gate)"
    with pytest.raises(ValueError, match=r"unknown key 'loco\.lcc_wieght'"):
        comparison.describe_detector({**LOCO, "lcc_wieght": 0.0})


def test_winners_and_margins_by_hand(runs: list[Path]) -> None:
    text, numbers = comparison.build_comparison("t", runs, SEGMENTS, SPATIAL)
    detection = numbers["tasks"]["detection"]["winners"]
    # averages over the five thresholds: fusion 0.40, loco 0.36
    assert detection["average"]["winners"] == ["fusion"]
    assert detection["average"]["value"] == pytest.approx(0.4)
    assert detection["0.5"]["winners"] == ["loco"] and detection["0.5"]["runner_up"] == "fusion"
    assert detection["0.6"]["winners"] == ["fusion", "loco"]  # a tie at 0.5
    # no bootstrap in these metrics.json: the margin, and that the noise is unknown
    assert (
        "- Temporal detection, average mAP: **fusion** 40.00 %, 4.00 above loco (36.00 %); "
        "noise unknown (loco: no bootstrap in metrics.json)." in text
    )
    assert "- Temporal detection, mAP@0.5: **loco** 70.00 %, 10.00 above fusion (60.00 %); " in text
    assert "mAP@0.6: **fusion** and **loco** 50.00 % (tie)." in text
    assert (
        "- Segment classification, test accuracy: **AV-BT + TACMA** 75.00 %, 17.00 above "
        "AV-BT audio (58.00 %); majority class 50.00 %." in text
    )
    assert "- Spatial localisation, CIoU (EZ-VSL): **M2VSL** 0.700, 0.050 above" in text
    assert "- Spatial localisation, AP (SLAVC): **M2VSL** and **Similarity map (baseline)**" in text
    spatial = numbers["tasks"]["spatial"]
    assert spatial["rows"][0]["ezvsl.ciou"] == 0.70 and spatial["rows"][0]["ezvsl.ciou_std"] == 0.01
    assert spatial["winners"]["avsbench.fscore"]["winners"] == [
        "M2VSL",
        "Similarity map (baseline)",
    ]
    assert "| M2VSL | 2 | **0.700** ± 0.010 | **0.500** ± 0.010 | **0.300** ± 0.010 |" in text
    assert "| AV-BT + TACMA | **75.0** | 2,100 | 1,000 |" in text
    assert "| loco | LoCo (cdp cross-attention, LCC) | 1 | **70.00** |" in text  # one seed


def test_tasks_without_inputs_are_left_out(runs: list[Path]) -> None:
    text, numbers = comparison.build_comparison("t", runs)
    assert set(numbers["tasks"]) == {"detection"}
    assert "Segment classification" not in text and "Spatial" not in text
    with pytest.raises(ValueError, match="needs detection runs"):
        comparison.build_comparison("t", [])


def test_cli_names_a_missing_input(runs: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "comparison.md"
    args = ["--title", "t", "--runs", *map(str, runs), "--out", str(out)]
    missing = str(tmp_path / "segments.json")
    assert comparison.main([*args, "--json", str(tmp_path / "c.json"), "--segments", missing]) == 1
    assert f"segment metrics {missing} does not exist" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "segments.json").write_text(json.dumps({"rows": []}))
    assert comparison.main([*args, "--json", str(tmp_path / "c.json"), "--segments", missing]) == 1
    assert "lacks the key 'majority_baseline'" in capsys.readouterr().err
    assert comparison.main([*args, "--json", str(tmp_path / "c.json")]) == 0
    assert out.read_text().startswith("# Method comparison: t")


def _bootstrap(average: list[float], at_05: list[float], seed: int = 0) -> dict:
    """A metrics.json bootstrap record of four resamples; thresholds 0.6 to 0.9 as 0.5."""
    return {
        "resamples": 4,
        "seed": seed,
        "num_videos": 46,
        "videos_digest": "0123456789abcdef",
        "average_mAP": average,
        "mAP": {key: at_05 for key in ("0.5", "0.6", "0.7", "0.8", "0.9")},
    }


def test_a_winner_only_beyond_the_paired_noise(tmp_path: Path) -> None:
    """Differences on the four resamples, and their standard deviation (ddof 1) x 1.96 by hand:
    average, fusion - audio [0, 0.08, 0, 0.08]: 0.0462 x 1.96 = 0.0905 around 0.04, a tie;
    fusion - visual [0.19, 0.21, 0.19, 0.21]: 0.0115 x 1.96 = 0.0226 around 0.20, a win;
    mAP@0.5, fusion - audio and fusion - visual [0.09, 0.11, 0.09, 0.11] around 0.10 and 0.30."""
    thresholds = ("0.5", "0.6", "0.7", "0.8", "0.9")
    audio = [0.30, 0.40, 0.30, 0.40]
    fusion = [0.30, 0.48, 0.30, 0.48]
    visual = [0.11, 0.27, 0.11, 0.27]
    at_05 = {"audio": [0.5, 0.6, 0.5, 0.6], "fusion": [0.59, 0.71, 0.59, 0.71]}
    at_05["visual"] = [0.29, 0.41, 0.29, 0.41]
    runs = [
        _detection_run(
            tmp_path / name,
            name,
            FUSION,
            dict.fromkeys(thresholds, average),
            _bootstrap(resampled, at_05[name.split("_")[0]]),
        )
        for name, average, resampled in (
            ("fusion", 0.40, fusion),
            ("audio_only", 0.36, audio),
            ("visual_only", 0.20, visual),
        )
    ]
    for path, value in zip(runs, (0.6, 0.5, 0.3), strict=True):  # mAP@0.5 apart
        metrics = json.loads((path / "metrics.json").read_text())
        metrics["mAP"]["0.5"] = value
        (path / "metrics.json").write_text(json.dumps(metrics))
    text, numbers = comparison.build_comparison("t", runs)
    assert (
        "- Temporal detection, average mAP: tie within noise: fusion 40.00 %, audio_only "
        "36.00 % (difference 4.00 [-5.05, 13.05]); fusion beats visual_only beyond the noise."
        in text
    )
    assert (
        "- Temporal detection, mAP@0.5: **fusion** beats audio_only by 10.00 [7.74, 12.26] "
        "points (60.00 % vs 50.00 %); it beats visual_only beyond the noise too." in text
    )
    noise = numbers["tasks"]["detection"]["winners"]["average"]["noise"]["against"]
    assert [(row["run"], row["tie"]) for row in noise] == [
        ("audio_only", True),
        ("visual_only", False),
    ]
    assert noise[1]["ci95"] == pytest.approx([0.2 - 0.022632, 0.2 + 0.022632], abs=1e-6)
    # resampled with another seed: not paired, so no verdict
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    metrics["bootstrap"]["seed"] = 1
    (runs[1] / "metrics.json").write_text(json.dumps(metrics))
    text, _ = comparison.build_comparison("t", runs)
    assert (
        "- Temporal detection, average mAP: **fusion** 40.00 %, 4.00 above audio_only "
        "(36.00 %); noise unknown (audio_only: bootstrapped with different seed)." in text
    )
