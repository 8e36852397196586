"""Perception Test importer: µs annotations checked against the video, any feature widths on
configurable grids, video resampled in time onto the audio grid, submissions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.annotations import load_annotations
from pipeline.config import load_schema
from pipeline.importers.common import FeatureImportError
from pipeline.importers.perception_test import (
    AUDIO_FEATURES,
    TIOU_THRESHOLDS,
    VIDEO_FEATURES,
    FeatureRelease,
    import_perception_test,
    main,
    submission,
    write_submission,
)
from pipeline.store import read_store
from tests.pipeline.importers.helpers import read_back


def _video(split: str, num_frames: int, events: list[tuple[int, int, str, int]]) -> dict:
    return {
        "metadata": {"split": split, "frame_rate": 30, "num_frames": num_frames},
        "sound_localisation": [
            {"label": label, "label_id": label_id, "timestamps": [start_us, end_us]}
            for start_us, end_us, label, label_id in events
        ],
        "action_localisation": [],
    }


def _write_set(tmp_path: Path) -> tuple[Path, Path, Path]:
    train = {
        "video_1": _video("train", 300, [(1_000_000, 2_500_000, "Human speech", 2)]),
        "video_2": _video("train", 240, [(0, 1_066_667, "Background noise", 0)]),
    }
    valid = {"video_3": _video("valid", 300, [(4_200_000, 6_000_000, "Human speech", 2)])}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "valid.json").write_text(json.dumps(valid))
    audio_dir, video_dir = tmp_path / "audio", tmp_path / "video"
    audio_dir.mkdir()
    video_dir.mkdir()
    for video_id, seconds in (("video_1", 10.0), ("video_2", 8.0), ("video_3", 10.0)):
        audio_rows = int(seconds * 30 / 16)  # 0.533 s rows
        video_rows = int(seconds * 15 / 16)  # 1.067 s rows
        np.save(audio_dir / f"{video_id}.npy", np.ones((audio_rows, 256), np.float32))
        # video feature value = the centre time of its row, so a time interpolation is exact
        centres = (16 * np.arange(video_rows) + 8) / 15
        np.save(video_dir / f"{video_id}.npy", np.repeat(centres[:, None], 512, 1))
    return tmp_path / "train.json", tmp_path / "valid.json", tmp_path


def _import(tmp_path: Path, *, write: bool = True, **kwargs):
    """Import the test set (written first unless ``write`` is false)."""
    if write:
        _write_set(tmp_path)
    out = tmp_path / "results" / "perception_test" / "features" / "mmv_tsp"
    report, counts = import_perception_test(
        [tmp_path / "train.json", tmp_path / "valid.json"],
        tmp_path / "audio",
        tmp_path / "video",
        out,
        annotations_out=tmp_path / "ann.json",
        validation_fraction=0.0,
        **kwargs,
    )
    return report, counts, out


def test_audio_grid_and_video_resampled_in_time(tmp_path: Path) -> None:
    report, _, out = _import(tmp_path)
    assert sorted(report.written) == ["video_1", "video_2", "video_3"]
    store = read_store(out / "video_1.zarr")
    assert store.audio.shape == (18, 256) and store.visual.shape == (18, 512)
    # audio row i covers [16i / 30, (16i + 16) / 30]
    np.testing.assert_allclose(store.timestamps[3], [48 / 30, 64 / 30])
    audio_centres = (16 * np.arange(18) + 8) / 30
    video_centres = (16 * np.arange(9) + 8) / 15
    # visual holds the video row centre times, interpolated to the audio centres, held at the ends
    expected = np.clip(audio_centres, video_centres[0], video_centres[-1])
    np.testing.assert_allclose(store.visual[:, 7], expected, rtol=1e-6)
    assert store.attrs["source_rows"] == {"audio": 18, "video": 9}
    assert store.attrs["video"]["duration_s"] == 10.0  # 300 frames / 30 fps
    np.testing.assert_allclose(TIOU_THRESHOLDS, [0.1, 0.2, 0.3, 0.4, 0.5])


def test_annotations_in_seconds_and_subsets(tmp_path: Path) -> None:
    _import(tmp_path)
    annotations = load_annotations(tmp_path / "ann.json")
    assert {vid: v.subset for vid, v in annotations.videos.items()} == {
        "video_1": "train",
        "video_2": "train",
        "video_3": "test",
    }
    event = annotations.videos["video_1"].events[0]
    assert (event.start_s, event.end_s, event.label) == (1.0, 2.5, "Human speech")
    assert annotations.labels == ("Background noise", "Human speech")  # ids 0, 2 -> 0, 1
    dataset = read_back(
        tmp_path / "ann.json", tmp_path / "results/perception_test/features/mmv_tsp", "test"
    )
    # centres (16i + 8) / 30: 4.2 s -> (4.2 * 30 - 8) / 16 = 7.375, 6.0 s -> 10.75
    np.testing.assert_allclose(dataset[0]["segments"].numpy(), [[7.375, 10.75]], rtol=1e-6)


def _import_raises(tmp_path: Path, match: str, **kwargs) -> None:
    train, valid, folder = tmp_path / "train.json", tmp_path / "valid.json", tmp_path
    with pytest.raises(FeatureImportError, match=match):
        import_perception_test(
            [train, valid], folder / "audio", folder / "video", tmp_path / "o",
            annotations_out=tmp_path / "a.json", validation_fraction=0.0, **kwargs,
        )  # fmt: skip


def test_a_width_differing_from_the_set_names_the_file_and_video(tmp_path: Path) -> None:
    _write_set(tmp_path)
    np.save(tmp_path / "audio" / "video_2.npy", np.ones((15, 128), np.float32))
    _import_raises(
        tmp_path,
        r"audio/video_2\.npy \(video video_2\): audio features have 128 dims but "
        r"\S+audio/video_1\.npy has 256",
    )


def test_an_expected_width_is_checked(tmp_path: Path) -> None:
    _write_set(tmp_path)
    videomae = FeatureRelease(encoder="videomae_v2_g", dim=1408, fps=15.0)
    _import_raises(
        tmp_path,
        r"video/video_1\.npy \(video video_1\): video features have 512 dims but "
        r"dataset\.import\.video_features\.dim has 1408",
        video_features=videomae,
    )


def test_videomae_widths_on_their_own_grid(tmp_path: Path) -> None:
    """VideoMAE V2 ViT-g (1408-d) on a 30 fps grid: width from the files, grid from the release."""
    train, valid, folder = _write_set(tmp_path)
    for video_id, rows in (("video_1", 18), ("video_2", 15), ("video_3", 18)):
        # one 16-frame clip every 16 frames at 30 fps: the audio rows' grid; value = row index
        np.save(folder / "video" / f"{video_id}.npy", np.repeat(np.arange(rows)[:, None], 1408, 1))
    videomae = FeatureRelease(encoder="videomae_v2_g", fps=30.0, feat_stride=16, num_frames=16)
    out = tmp_path / "results" / "perception_test" / "features" / "mmv_videomae_v2"
    report, counts = import_perception_test(
        [train, valid], folder / "audio", folder / "video", out,
        annotations_out=tmp_path / "ann.json", video_features=videomae, validation_fraction=0.0,
    )  # fmt: skip
    assert sorted(report.written) == ["video_1", "video_2", "video_3"]
    store = read_store(out / "video_2.zarr")
    assert store.visual.shape == (15, 1408) and store.audio.shape == (15, 256)
    np.testing.assert_allclose(store.visual[:, 0], np.arange(15))  # same grid: rows kept
    assert store.attrs["encoders"]["visual"] == {"name": "videomae_v2_g", "dim": 1408}
    assert store.attrs["encoders"]["audio"] == {"name": "mmv", "dim": 256}
    assert store.attrs["import"]["video_features"] == {
        "encoder": "videomae_v2_g", "dim": None, "fps": 30.0, "feat_stride": 16, "num_frames": 16,
    }  # fmt: skip
    assert json.loads(report.index_path.read_text())["dims"] == {"visual": 1408, "audio": 256}
    assert counts["classes"] == 2


def test_the_schema_defaults_are_the_modules() -> None:
    properties = load_schema()["properties"]["dataset"]["properties"]["import"]["properties"]
    for key, release in (("audio_features", AUDIO_FEATURES), ("video_features", VIDEO_FEATURES)):
        defaults = {k: spec["default"] for k, spec in properties[key]["properties"].items()}
        assert defaults == release.describe()
    with pytest.raises(ValueError, match=r"unknown key 'video_features\.stride'"):
        FeatureRelease.from_config({"stride": 4}, VIDEO_FEATURES, "video_features")
    with pytest.raises(ValueError, match=r"video_features: feature grid 'fps' must be"):
        FeatureRelease.from_config({"fps": 0}, VIDEO_FEATURES, "video_features")


def _with_event(tmp_path: Path, timestamps, num_frames: int = 300, **item) -> None:
    """The test set with one more sound event on video_1 (300 frames at 30 fps: 10 s)."""
    _write_set(tmp_path)
    train = json.loads((tmp_path / "train.json").read_text())
    train["video_1"]["metadata"]["num_frames"] = num_frames
    event = {"label": "Dog", "label_id": 5, "timestamps": timestamps, **item}
    train["video_1"]["sound_localisation"].append(event)
    (tmp_path / "train.json").write_text(json.dumps(train))


@pytest.mark.parametrize(
    ("timestamps", "problem"),
    [
        ([9_000_000, 10_100_000], r"\[9\.000000, 10\.100000\] s lies outside the video \[0, "
         r"10\.000000\] s .* by more than one frame \(0\.033333 s\)"),
        ([-100_000, 1_000_000], "lies outside the video"),
        ([10_010_000, 10_020_000], "lies outside the video"),  # wholly in the last frame's margin
        ([2_000_000, 2_000_000], r"start 2\.000000 s is not before end 2\.000000 s"),
        ([3_000_000, 1_000_000], "is not before end"),
        ([1_000_000], r"'timestamps' must be \[start_us, end_us\]"),
        ([None, 1_000_000], r"'timestamps' must be \[start_us, end_us\]"),
    ],
)  # fmt: skip
def test_timestamps_outside_the_video_name_file_video_and_event(
    tmp_path: Path, timestamps, problem: str
) -> None:
    _with_event(tmp_path, timestamps)
    _import_raises(tmp_path, rf"train\.json: video 'video_1', sound_localisation\[1\]: .*{problem}")


def test_an_overshoot_within_one_frame_is_clipped(tmp_path: Path) -> None:
    _with_event(tmp_path, [9_000_000, 10_030_000])  # 0.03 s past the end: under 1 / 30 s
    _, counts, _ = _import(tmp_path, write=False)
    event = load_annotations(tmp_path / "ann.json").videos["video_1"].events[1]
    assert (event.start_s, event.end_s, event.label) == (9.0, 10.0, "Dog")
    assert counts == {"classes": 3, "duplicates": 0, "empty": 0, "clipped": 1}


def test_bad_metadata_labels_and_repeated_videos(tmp_path: Path) -> None:
    _with_event(tmp_path, [1_000_000, 2_000_000], num_frames=0)
    _import_raises(tmp_path, r"train\.json: video 'video_1' has metadata num_frames 0")
    _with_event(tmp_path / "b", [1_000_000, 2_000_000], label_id="5")
    _import_raises(tmp_path / "b", r"sound_localisation\[1\]: needs .* an integer 'label_id'")
    _write_set(tmp_path / "c")
    (tmp_path / "c" / "valid.json").write_text((tmp_path / "c" / "train.json").read_text())
    _import_raises(tmp_path / "c", r"video 'video_1' is in both \S+train\.json and")


def test_the_class_count_is_read_from_the_annotations(tmp_path: Path) -> None:
    """Labels with events in the files, renumbered 0..C-1 in source id order; ids kept."""
    _with_event(tmp_path, [1_000_000, 2_000_000])
    _, counts, _ = _import(tmp_path, write=False)
    written = json.loads((tmp_path / "ann.json").read_text())
    assert counts["classes"] == 3
    assert load_annotations(tmp_path / "ann.json").labels == (
        "Background noise", "Human speech", "Dog",
    )  # fmt: skip
    assert written["source_label_ids"] == {"Human speech": 2, "Background noise": 0, "Dog": 5}


def test_submission_format(tmp_path: Path) -> None:
    _import(tmp_path)
    results = {
        "results": {
            "video_3": [
                {"segment": [4.0, 6.5], "label": "Human speech", "score": 0.9},
                {"segment": [0.5, 1.0], "label": "Background noise", "score": 0.25},
            ]
        }
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    path = write_submission(
        tmp_path / "results.json",
        tmp_path / "ann.json",
        tmp_path / "sub.json",
        "sound_localisation",
    )
    written = json.loads(path.read_text())
    assert written == {
        "video_3": {
            "sound_localisation": [
                {"label": "2", "score": "0.9", "timestamps": [4.0, 6.5]},
                {"label": "0", "score": "0.25", "timestamps": [0.5, 1.0]},
            ]
        }
    }
    with pytest.raises(FeatureImportError, match="label 'Dog' is not in the annotations"):
        submission({"results": {"v": [{"segment": [0, 1], "label": "Dog", "score": 1}]}}, {}, "x")


def test_cli_import_and_submit(tmp_path: Path, capsys) -> None:
    train, valid, folder = _write_set(tmp_path)
    out = tmp_path / "results" / "perception_test" / "features" / "mmv_tsp"
    code = main(
        [
            "--annotations", str(train), "--extra-annotations", str(valid),
            "--features-dir", str(folder / "audio"), "--video-features-dir", str(folder / "video"),
            "--out", str(out), "--annotations-out", str(tmp_path / "ann.json"),
            "--validation-fraction", "0", "--video-features", '{"encoder": "tsp", "dim": 512}',
        ]
    )  # fmt: skip
    assert code == 0 and "imported 3 videos" in capsys.readouterr().out
    assert read_store(out / "video_1.zarr").attrs["import"]["video_features"]["dim"] == 512
    (tmp_path / "r.json").write_text(json.dumps({"results": {}}))
    args = ["submit", "--results", str(tmp_path / "r.json"), "--annotations"]
    assert main([*args, str(tmp_path / "ann.json"), "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == {}
    assert main([*args, str(train), "--out", str(tmp_path / "t.json")]) == 1
    assert "has no 'source_label_ids'" in capsys.readouterr().err
    bad_grid = ["--audio-features", '{"feat_stride": -1}', "--annotations", str(train)]
    assert main([*bad_grid, "--features-dir", "a", "--video-features-dir", "v", "--out", "o",
                 "--annotations-out", "x.json"]) == 1  # fmt: skip
    assert "audio_features: feature grid 'feat_stride' must be a number > 0" in (
        capsys.readouterr().err
    )
