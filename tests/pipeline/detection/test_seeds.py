"""A detection run over its seeds: means, spreads and intervals computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.detection import seeds
from pipeline.detection.bootstrap import Z_SCORE
from pipeline.detection.report import best_run_sentence, load_run


def _metrics(map_05: float, map_07: float, average_resamples: list[float]) -> dict:
    """One seed's metrics.json at tIoU 0.5 and 0.7, with three bootstrap resamples."""
    return {
        "split": "test",
        "tiou_thresholds": [0.5, 0.7],
        "num_videos": 4,
        "num_events": 6,
        "num_ground_truth": 6,
        "num_predictions": 10,
        "mAP": {"0.5": map_05, "0.7": map_07},
        "average_mAP": (map_05 + map_07) / 2,
        "recall_1x": {"0.5": 0.5, "0.7": 0.25},
        "recall_5x": {"0.5": 1.0, "0.7": 0.5},
        "ap_per_class": {"dog": {"0.5": map_05, "0.7": map_07}},
        "inference": {"snippets_per_s": 100.0, "device": "cpu"},
        "plots": ["plots/per_class_ap.png"],
        "bootstrap": {
            "resamples": 3,
            "seed": 0,
            "num_videos": 4,
            "videos_digest": "abc",
            "average_mAP": average_resamples,
            "mAP": {"0.5": average_resamples, "0.7": average_resamples},
        },
    }


SEED_A = _metrics(0.4, 0.2, [0.2, 0.3, 0.4])  # average 0.3
SEED_B = _metrics(0.6, 0.4, [0.4, 0.5, 0.6])  # average 0.5


def test_mean_spread_and_interval_of_the_mean_over_seeds() -> None:
    combined = seeds.combine_seeds({0: SEED_A, 3: SEED_B}, {0: "seed0", 3: "seed3"})
    assert combined["seeds"] == [0, 3]
    assert combined["mAP"] == pytest.approx({"0.5": 0.5, "0.7": 0.3})
    assert combined["average_mAP"] == pytest.approx(0.4)
    # sample standard deviation of (0.3, 0.5): sqrt(2 * 0.1^2 / 1)
    assert combined["average_mAP_std"] == pytest.approx(math.sqrt(0.02))
    assert combined["mAP_std"]["0.5"] == pytest.approx(math.sqrt(0.02))
    # resamples of the mean: (0.3, 0.4, 0.5), standard deviation 0.1
    assert combined["bootstrap"]["average_mAP"] == pytest.approx([0.3, 0.4, 0.5])
    low, high = combined["average_mAP_ci95"]
    assert (low, high) == pytest.approx((0.4 - Z_SCORE * 0.1, 0.4 + Z_SCORE * 0.1))
    assert combined["ap_per_class"]["dog"] == pytest.approx({"0.5": 0.5, "0.7": 0.3})
    assert combined["per_seed"]["3"]["average_mAP"] == pytest.approx(0.5)
    assert combined["plots"] == ["seed0/plots/per_class_ap.png"]  # the first seed's


def test_one_seed_has_no_spread_and_keeps_its_interval() -> None:
    combined = seeds.combine_seeds({5: SEED_A})
    assert combined["average_mAP_std"] is None and combined["mAP_std"]["0.7"] is None
    assert combined["average_mAP"] == pytest.approx(0.3)
    assert seeds.seed_variance(combined, "average") == 0.0


def test_seeds_evaluated_on_different_test_sets_are_refused() -> None:
    other = {**SEED_B, "num_videos": 5}
    with pytest.raises(ValueError, match="num_videos"):
        seeds.combine_seeds({0: SEED_A, 1: other})
    rebooted = {**SEED_B, "bootstrap": {**SEED_B["bootstrap"], "videos_digest": "xyz"}}
    with pytest.raises(ValueError, match="different videos digest"):
        seeds.combine_seeds({0: SEED_A, 1: rebooted})


def test_difference_interval_adds_the_video_and_the_seed_variances() -> None:
    two_seeds = seeds.combine_seeds({0: SEED_A, 1: SEED_B})  # 0.4 +- 0.1414 over 2 seeds
    one_seed = seeds.combine_seeds({0: _metrics(0.2, 0.0, [0.05, 0.1, 0.15])})  # 0.1
    low, high = seeds.difference_interval(two_seeds, one_seed, "average")
    # paired differences per resample: (0.25, 0.3, 0.35), variance 0.0025; seeds: 0.02 / 2
    spread = Z_SCORE * math.sqrt(0.0025 + 0.01)
    assert (low, high) == pytest.approx((0.3 - spread, 0.3 + spread))
    unpaired = {**one_seed, "bootstrap": {**one_seed["bootstrap"], "seed": 9}}
    assert seeds.difference_interval(two_seeds, unpaired, "average") is None


def _seed_folder(run: Path, seed: int, metrics: dict, epoch: int) -> Path:
    folder = run / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    summary = {
        "name": run.name,
        "seed": seed,
        "model": {"name": "actionformer"},
        "epochs": 10,
        "best_epoch": epoch,
        "best_val_average_map": 0.25 + 0.1 * seed,
        "train_snippets_per_s": 50.0 * (seed + 1),
        "num_parameters": 1234,
        "device": "cpu",
    }
    (folder / "train_summary.json").write_text(json.dumps(summary))
    return folder


def test_the_run_folder_is_written_and_read_by_the_report(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "fusion"
    folders = [_seed_folder(run, 0, SEED_A, 7), _seed_folder(run, 1, SEED_B, 9)]
    assert seeds.main(["--seeds", *map(str, folders), "--out", str(run)]) == 0
    assert "average mAP 40.00 ± 14.14 over seeds 0, 1" in capsys.readouterr().out
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["best_epochs"] == {"0": 7, "1": 9}
    assert summary["train_snippets_per_s"] == pytest.approx(75.0)
    record = load_run(run)
    assert record.name == "fusion" and record.metrics["seeds"] == [0, 1]
    # the same seed twice is refused, naming the folder
    with pytest.raises(ValueError, match="seed 0 is given twice"):
        seeds.write_run([folders[0], folders[0]], tmp_path / "twice")


def test_report_calls_a_tie_when_the_seeds_spread_covers_the_gap(tmp_path: Path) -> None:
    """Over the videos alone the 0.3-point gap is beyond the noise; the seeds' spread makes it a
    tie."""
    runs = []
    for name, members in (
        ("wide", [SEED_A, SEED_B]),
        ("narrow", [_metrics(0.2, 0.0, [0.05, 0.1, 0.15])]),
    ):
        run = tmp_path / name
        folders = [_seed_folder(run, seed, m, 1) for seed, m in enumerate(members)]
        seeds.write_run(folders, run)
        runs.append(load_run(run))
    sentence = best_run_sentence(runs)
    assert "beyond the noise" in sentence  # 0.3 +- 1.96 * 0.112: (0.08, 0.52)
    wide = json.loads((tmp_path / "wide" / "metrics.json").read_text())
    wide["average_mAP_std"] = 0.3  # seeds far apart: variance 0.09 / 2
    (tmp_path / "wide" / "metrics.json").write_text(json.dumps(wide))
    sentence = best_run_sentence([load_run(tmp_path / "wide"), runs[1]])
    assert "a tie within noise" in sentence
