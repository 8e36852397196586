"""The bootstrap over test videos: its resamples, its fast weighted AP against the evaluator run on
explicitly resampled sets, its intervals, and what evaluate and the report write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.annotations import AnnotationSet, Event, VideoAnnotation
from pipeline.detection.bootstrap import (
    Z_SCORE,
    normal_interval,
    paired_interval,
    resample_counts,
    videos_digest,
)
from pipeline.detection.metrics import Predictions, evaluate_detection
from pipeline.detection.report import build_report
from pipeline.detection.table import write_table
from tests.pipeline.detection.test_report import DATABASE, DOGS_ONLY, PERFECT, _write_run

LABELS = ("dog", "cat", "bird", "car")
THRESHOLDS = [0.3, 0.5, 0.7]


def random_problem(seed: int) -> tuple[AnnotationSet, Predictions]:
    """12 videos (two without events; "car" in one video only, so some resamples lose it),
    predictions jittered from the events plus random ones (some of "bird", which has no ground
    truth, and some on a video outside it); continuous scores, so no two videos tie."""
    rng = np.random.default_rng(seed)
    videos, rows = {}, []
    for v in range(12):
        vid = f"v{v:02d}"
        events = []
        for _ in range(0 if v in (3, 7) else int(rng.integers(1, 4))):
            start = float(rng.uniform(0, 80))
            label_id = int(rng.choice([0, 1]))
            events.append(
                Event(start, start + float(rng.uniform(2, 15)), LABELS[label_id], label_id)
            )
        if v == 5:
            events.append(Event(10.0, 20.0, "car", 3))
        videos[vid] = VideoAnnotation(vid, 100.0, "test", tuple(events))
        for event in events:
            for _ in range(3):
                jitter = rng.normal(0, 2, 2)
                start, end = sorted((event.start_s + jitter[0], event.end_s + jitter[1]))
                rows.append((vid, start, end, event.label_id))
        for _ in range(4):
            start = float(rng.uniform(0, 90))
            rows.append((vid, start, start + float(rng.uniform(1, 10)), int(rng.integers(4))))
    rows.append(("elsewhere", 0.0, 5.0, 0))
    predictions = Predictions(
        video_ids=[row[0] for row in rows],
        segments=[row[1:3] for row in rows],
        label_ids=[row[3] for row in rows],
        scores=rng.random(len(rows)),
    )
    return AnnotationSet("t", videos, LABELS), predictions


def explicit_resample(
    truth: AnnotationSet, predictions: Predictions, counts: np.ndarray
) -> tuple[AnnotationSet, Predictions]:
    """The data set the resample stands for: video i (sorted by id) copied counts[i] times under
    new ids, with its predictions; predictions outside the ground truth kept once."""
    videos, keep, names = {}, [], []
    for video_id, copies in zip(sorted(truth.videos), counts.tolist(), strict=True):
        rows = np.flatnonzero(predictions.video_ids == video_id)
        for copy in range(copies):
            name = f"{video_id}#{copy}"
            videos[name] = VideoAnnotation(name, 100.0, "test", truth.videos[video_id].events)
            keep += rows.tolist()
            names += [name] * len(rows)
    outside = np.flatnonzero(~np.isin(predictions.video_ids, list(truth.videos)))
    keep += outside.tolist()
    names += predictions.video_ids[outside].tolist()
    resampled = Predictions(
        names, predictions.segments[keep], predictions.label_ids[keep], predictions.scores[keep]
    )
    return AnnotationSet("t", videos, truth.labels), resampled


def test_resamples_are_numpys_generator_draws_over_sorted_videos() -> None:
    counts = resample_counts(num_videos=7, resamples=5, seed=3)
    draws = np.random.default_rng(3).integers(0, 7, size=(5, 7))
    assert counts.shape == (5, 7) and (counts.sum(axis=1) == 7).all()
    for row, drawn in zip(counts, draws, strict=True):
        np.testing.assert_array_equal(row, np.bincount(drawn, minlength=7))
    assert not np.array_equal(counts, resample_counts(7, 5, seed=4))
    assert videos_digest(["b", "a"]) == videos_digest(["a", "b"]) != videos_digest(["a", "c"])


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_weighted_map_equals_the_evaluator_on_the_resampled_sets(seed: int) -> None:
    truth, predictions = random_problem(seed)
    metrics = evaluate_detection(
        truth,
        predictions,
        THRESHOLDS,
        allow_unknown_videos=True,
        bootstrap_resamples=12,
        bootstrap_seed=seed,
    )
    counts = resample_counts(len(truth.videos), 12, seed)
    lost_car = 0
    for counts_b, fast in zip(counts, metrics.bootstrap.map_per_tiou, strict=True):
        lost_car += counts_b[5] == 0
        slow = evaluate_detection(
            *explicit_resample(truth, predictions, counts_b), THRESHOLDS, allow_unknown_videos=True
        )
        np.testing.assert_allclose(fast, slow.map_per_tiou, rtol=0, atol=1e-12)
    assert 0 < lost_car < 12  # both kinds of resample were checked
    assert metrics.bootstrap.map_per_tiou.std(axis=0).min() > 0


def test_identical_videos_give_a_zero_width_interval() -> None:
    """Every resample of identical videos is the same set: mAP@0.5 0.75 (dog 0.5: all false
    positives at 0.95 outrank the true positives at 0.9; cat 1), mAP@0.9 0.25 (cat's 0.8 tIoU
    misses)."""
    events = (Event(0.0, 10.0, "dog", 0), Event(20.0, 30.0, "cat", 1))
    videos = {f"v{i}": VideoAnnotation(f"v{i}", 100.0, "test", events) for i in range(6)}
    rows = [(0.0, 10.0, 0, 0.9), (50.0, 60.0, 0, 0.95), (20.0, 28.0, 1, 0.7)]
    predictions = Predictions(
        [vid for vid in videos for _ in rows],
        [row[:2] for _ in videos for row in rows],
        [row[2] for _ in videos for row in rows],
        [row[3] for _ in videos for row in rows],
    )
    metrics = evaluate_detection(
        AnnotationSet("t", videos, LABELS), predictions, [0.5, 0.9], bootstrap_resamples=50
    )
    np.testing.assert_allclose(metrics.map_per_tiou, [0.75, 0.25])
    np.testing.assert_allclose(metrics.bootstrap.map_per_tiou, [[0.75, 0.25]] * 50)
    result = metrics.to_dict()
    assert result["mAP_ci95"] == pytest.approx({"0.5": [0.75, 0.75], "0.9": [0.25, 0.25]})
    assert result["average_mAP_ci95"] == pytest.approx([0.5, 0.5])
    record = result["bootstrap"]
    assert (record["resamples"], record["seed"], record["num_videos"]) == (50, 0, 6)
    assert record["videos_digest"] == videos_digest(videos)
    assert record["average_mAP"] == pytest.approx([0.5] * 50)
    assert record["mAP"]["0.9"] == pytest.approx([0.25] * 50)


def test_the_bootstrap_leaves_the_point_estimates_alone() -> None:
    truth, predictions = random_problem(2)
    plain = evaluate_detection(truth, predictions, THRESHOLDS, allow_unknown_videos=True)
    assert plain.bootstrap is None and "mAP_ci95" not in plain.to_dict()
    with_bootstrap = evaluate_detection(
        truth, predictions, THRESHOLDS, allow_unknown_videos=True, bootstrap_resamples=20
    ).to_dict()
    for key in ("mAP_ci95", "average_mAP_ci95", "bootstrap"):
        with_bootstrap.pop(key)
    assert with_bootstrap == plain.to_dict()
    with pytest.raises(ValueError, match="bootstrap_resamples must be >= 0"):
        evaluate_detection(truth, predictions, THRESHOLDS, bootstrap_resamples=-1)


def test_intervals_by_hand() -> None:
    # standard deviation (ddof 1) of [0.4, 0.6] is 0.1 * sqrt(2)
    spread = Z_SCORE * 0.1 * np.sqrt(2)
    assert round(Z_SCORE, 6) == 1.959964
    np.testing.assert_allclose(normal_interval(0.5, [0.4, 0.6]), [0.5 - spread, 0.5 + spread])
    np.testing.assert_allclose(normal_interval(0.95, [0.9, 1.0]), [0.95 - spread / 2, 1.0])
    np.testing.assert_allclose(
        normal_interval(0.5, [0.4, np.nan, 0.6]), normal_interval(0.5, [0.4, 0.6])
    )
    # paired: a constant difference has no spread, whatever each run's own spread
    assert paired_interval(0.6, 0.5, [0.2, 0.9, 0.5], [0.1, 0.8, 0.4]) == pytest.approx((0.1, 0.1))
    low, high = paired_interval(0.6, 0.5, [0.5, 0.7], [0.5, 0.5])
    assert (low, high) == pytest.approx((0.1 - spread, 0.1 + spread))


def test_evaluate_and_report_show_the_intervals(tmp_path: Path) -> None:
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"version": "t", "database": DATABASE}))
    runs = [
        _write_run(tmp_path / "runs", name, results, annotations, resamples=200)
        for name, results in (("dogs", DOGS_ONLY), ("perfect", PERFECT))
    ]
    dogs, perfect = (json.loads((run / "metrics.json").read_text()) for run in runs)
    assert list(dogs)[-1] == "bootstrap" and dogs["bootstrap"]["resamples"] == 200
    assert dogs["mAP"] == pytest.approx({"0.3": 0.5, "0.5": 0.5, "0.7": 0.5})  # unchanged
    # two test videos: a resample of v2 twice has no car, so its mAP is 1 instead of 0.5
    assert set(dogs["bootstrap"]["average_mAP"]) == {0.5, 1.0}
    low, high = dogs["average_mAP_ci95"]
    assert low == pytest.approx(1 - high) and 0.5 < high < 1
    assert perfect["average_mAP_ci95"] == [1.0, 1.0]
    text = build_report("demo", runs, out_path=tmp_path / "report.md")
    interval = f"[{100 * low:.1f}, {100 * high:.1f}]"
    assert f"| dogs | 50.00 {interval} | 50.00 " in text
    assert "| perfect | **100.00** [100.0, 100.0] |" in text
    assert f"| **average** | **50.00** {interval} | | |" in text
    difference = np.subtract(perfect["bootstrap"]["average_mAP"], dogs["bootstrap"]["average_mAP"])
    spread = 100 * Z_SCORE * difference.std(ddof=1)
    verdict = "a tie within noise" if spread >= 50 else "beyond the noise"
    assert (
        "**perfect** has the best average mAP (100.00 %), 50.00 points above the next best run, "
        f"dogs (50.00 %, +100% relative); 95 % interval of the difference over the same "
        f"test-video resamples and the seeds [{50 - spread:.2f}, {50 + spread:.2f}]: {verdict}."
        in text
    )


def test_paper_table_shows_our_intervals(tmp_path: Path) -> None:
    """THUMOS14's average is over tIoU 0.3 to 0.7: its interval comes from the mean of the
    per-resample mAP of those thresholds; a run without a bootstrap shows none."""
    keys = ("0.3", "0.4", "0.5", "0.6", "0.7")
    points = dict(zip(keys, (0.80, 0.75, 0.70, 0.60, 0.45), strict=True))
    resampled = {key: [value - 0.02, value + 0.02, value] for key, value in points.items()}
    ours = {"mAP": points, "average_mAP": 0.66, "bootstrap": {"mAP": resampled}}
    text = write_table("thumos14", {"ours": ours, "plain": {"mAP": points}}, tmp_path / "t.md")
    spread = Z_SCORE * 0.02 * 100  # every threshold's (and the average's) sd is 0.02
    row = next(line for line in text.splitlines() if "ours: ours" in line)
    assert f"| 80.00 [{80 - spread:.1f}, {80 + spread:.1f}] (" in row
    assert f"| 66.00 [{66 - spread:.1f}, {66 + spread:.1f}] (-0.83) |" in row
    plain = next(line for line in text.splitlines() if "ours: plain" in line)
    assert "[" not in plain and plain.endswith("| 66.00 (-0.83) |")
    assert "In brackets: the 95 % interval of our mAP over test videos" in text
