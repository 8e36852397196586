"""Tests of pipeline.detection.infer: grid units to seconds, split and single-video inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.annotations import load_annotations
from pipeline.detection.data import FeatureDataset
from pipeline.detection.infer import detect_video, detections_to_events, main, predict_split
from pipeline.detection.metrics import read_results
from pipeline.detection.synthetic import SyntheticFeatureSet, write_synthetic_features
from pipeline.detection.train import TrainResult, train_run
from pipeline.extract import extract_video
from pipeline.store import read_store
from tests.pipeline.detection.helpers import TINY_RUN, train_on_videos


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticFeatureSet, TrainResult]:
    folder = tmp_path_factory.mktemp("infer")
    features = write_synthetic_features(
        folder / "features", videos_per_split={"train": 4, "validation": 2, "test": 3}
    )
    result = train_run(
        TINY_RUN,
        index_path=features.index_path,
        stats_path=features.stats_path,
        annotations_path=features.annotations_path,
        out_dir=folder / "run",
    )
    return features, result


def _detection(segments: list[list[float]], scores: list[float], labels: list[int]) -> dict:
    return {
        "segments": torch.tensor(segments, dtype=torch.float32).reshape(-1, 2),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
    }


def test_grid_segments_become_seconds_clipped_to_the_video() -> None:
    centres = 0.48 + 0.32 * np.arange(20)  # window 0.96 s, stride 0.32 s; covers [0, 7.04] s
    detection = _detection(
        [[1.0, 5.0], [-3.0, 0.5], [18.0, 25.0], [30.0, 31.0]], [0.2, 0.9, 0.5, 0.7], [1, 0, 2, 0]
    )
    events = detections_to_events(
        detection, centres=centres, stride_s=0.32, duration_s=7.0, labels=("a", "b", "c")
    )
    # grid 1 -> 0.48 + 0.32 = 0.80 s; 5 -> 2.08 s; -3 -> 0.48 - 0.96 < 0 -> clipped to 0;
    # 0.5 -> 0.64 s; 18 -> 6.24 s; 25 -> 8.48 s -> clipped to the 7 s duration;
    # [30, 31] lies after the video's end: dropped. Sorted by score.
    assert [event["label"] for event in events] == ["a", "c", "b"]
    assert [event["score"] for event in events] == pytest.approx([0.9, 0.5, 0.2])
    np.testing.assert_allclose(
        [event["segment"] for event in events], [[0.0, 0.64], [6.24, 7.0], [0.80, 2.08]], atol=1e-6
    )
    shifted = detections_to_events(
        _detection([[1.0, 5.0]], [0.2], [1]),
        centres=centres,
        stride_s=0.32,
        duration_s=7.0,
        labels=("a", "b", "c"),
        offset=4,  # the detector saw snippets 4.. of the video
    )
    np.testing.assert_allclose(shifted[0]["segment"], [0.48 + 0.32 * 5, 0.48 + 0.32 * 9])


def test_ground_truth_round_trips_through_grid_units(trained) -> None:
    features, _ = trained
    annotations = load_annotations(features.annotations_path)
    dataset = FeatureDataset(
        annotations, "test", features.index_path, features.stats_path, training=False
    )
    for item in (dataset[i] for i in range(len(dataset))):
        detection = {
            "segments": item["segments"],
            "scores": torch.linspace(1.0, 0.5, len(item["labels"])),
            "labels": item["labels"],
        }
        events = detections_to_events(
            detection,
            centres=item["centres"].numpy(),
            stride_s=item["stride_s"],
            duration_s=item["duration_s"],
            labels=dataset.labels,
        )
        truth = annotations.videos[item["video_id"]].events
        assert len(events) == len(truth) > 0
        for event, annotated in zip(events, truth, strict=True):
            assert event["label"] == annotated.label
            np.testing.assert_allclose(
                event["segment"], [annotated.start_s, annotated.end_s], atol=1e-5
            )


def test_predict_split_writes_results_and_throughput(trained, tmp_path: Path, capsys) -> None:
    features, result = trained
    out_path = tmp_path / "events" / "test.json"
    events = predict_split(
        result.model_path,
        index_path=features.index_path,
        stats_path=features.stats_path,
        annotations_path=features.annotations_path,
        split="test",
        out_path=out_path,
    )
    assert sorted(events) == ["test_000", "test_001", "test_002"]
    annotations = load_annotations(features.annotations_path)
    predictions = read_results(out_path, annotations.labels)
    assert len(predictions) == sum(len(video_events) for video_events in events.values()) > 0
    durations = np.array([annotations.videos[v].duration_s for v in predictions.video_ids])
    assert np.all(predictions.segments[:, 0] >= 0)
    assert np.all(predictions.segments[:, 1] <= durations + 1e-9)
    assert np.all(predictions.segments[:, 1] > predictions.segments[:, 0])
    throughput = json.loads((tmp_path / "events" / "test.throughput.json").read_text())
    index = json.loads(features.index_path.read_text())
    expected = sum(index["videos"][v]["num_snippets"] for v in events)
    assert throughput["num_snippets"] == expected and throughput["num_videos"] == 3
    assert throughput["snippets_per_s"] > 0 and throughput["split"] == "test"
    assert "snippets/s" in capsys.readouterr().out


def test_predict_split_refuses_other_statistics(trained, tmp_path: Path) -> None:
    features, result = trained
    stats = json.loads(features.stats_path.read_text())
    stats["audio"]["mean"] = [value + 1.0 for value in stats["audio"]["mean"]]
    other = tmp_path / "stats.json"
    other.write_text(json.dumps(stats))
    with pytest.raises(ValueError, match="audio statistics in the stats file differ"):
        predict_split(
            result.model_path,
            index_path=features.index_path,
            stats_path=other,
            annotations_path=features.annotations_path,
            split="test",
        )


def test_cli_split_mode(trained, tmp_path: Path) -> None:
    features, result = trained
    out_path = tmp_path / "validation.json"
    arguments = ["--model", str(result.model_path), "--index", str(features.index_path)]
    arguments += ["--stats", str(features.stats_path), "--split", "validation"]
    arguments += ["--annotations", str(features.annotations_path), "--out", str(out_path)]
    assert main(arguments) == 0
    results = json.loads(out_path.read_text())["results"]
    assert sorted(results) == ["validation_000", "validation_001"]


def test_detect_video_matches_split_inference(tmp_path: Path, capsys, monkeypatch) -> None:
    """Extract two tiny videos for real, train one epoch, then detect on one video file: the
    single-video path (re-extraction with the recorded settings) must give the events that
    split inference gives on the same video's store."""
    trained = train_on_videos(tmp_path)
    videos, paths, result = trained.videos, trained.paths, trained.result
    expected = predict_split(result.model_path, split="validation", **paths)["clip_b"]
    extracted = []

    def recording_extract_video(*args, **kwargs):
        extracted.append(extract_video(*args, **kwargs))
        return extracted[-1]

    monkeypatch.setattr("pipeline.extract.extract_video", recording_extract_video)
    events = detect_video(videos[1], result.model_path, device="cpu")
    # The stores hold the patch grid; the re-extraction leaves it out (the detector reads the
    # pooled rows only, which the grid does not change: the events below match).
    store = read_store(paths["index_path"].parent / "clip_b.zarr", with_grid=True)
    assert store.visual_grid is not None
    assert len(extracted) == 1 and extracted[0].visual_grid is None
    assert len(events) == len(expected) > 0
    for event, reference in zip(events, expected, strict=True):
        assert event["label"] == reference["label"] and event["label"] in ("beep", "boop")
        assert event["score"] == pytest.approx(reference["score"], rel=1e-4)
        np.testing.assert_allclose(event["segment"], reference["segment"], atol=1e-4)
        assert 0.0 <= event["segment"][0] < event["segment"][1] <= 3.0
    capsys.readouterr()  # drop what training printed
    assert main(["--model", str(result.model_path), "--video", str(videos[1]), "--top-k", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["video"] == str(videos[1])
    assert [event["label"] for event in printed["events"]] == [e["label"] for e in expected[:2]]
