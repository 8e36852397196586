"""ActionFormer-format importer: feature rows -> seconds, visual-only stores, annotation fixes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.annotations import load_annotations
from pipeline.detection.data import seconds_to_grid
from pipeline.importers.actionformer import RELEASES, import_actionformer, main
from pipeline.importers.common import FeatureImportError
from pipeline.store import read_store
from tests.pipeline.importers.helpers import read_back

THUMOS = replace(RELEASES["thumos14"], validation_fraction=0.5)  # 1 of the 2 train videos


def _event(start: float, end: float, label: str, label_id: int) -> dict:
    return {"segment": [start, end], "label": label, "label_id": label_id}


def _thumos(tmp_path: Path) -> tuple[Path, Path]:
    database = {
        "video_validation_1": {
            "subset": "Validation",
            "duration": 20.0,
            "fps": 30.0,
            "annotations": [
                _event(2.0, 4.0, "BaseballPitch", 0),
                _event(2.0, 4.0, "BaseballPitch", 0),  # exact duplicate
                _event(5.0, 5.0, "BaseballPitch", 0),  # zero length
            ],
        },
        "video_validation_2": {
            "subset": "Validation",
            "duration": 12.0,
            "fps": 25.0,
            "annotations": [_event(10.0, 13.5, "Diving", 7)],  # past the end: clipped
        },
        "video_test_1": {
            "subset": "Test",
            "duration": 20.0,
            "fps": 30.0,
            "annotations": [_event(1.0, 3.0, "Diving", 7)],
        },
        "video_other": {"subset": "Background", "duration": 5.0, "fps": 30, "annotations": []},
    }
    path = tmp_path / "thumos14.json"
    path.write_text(json.dumps({"database": database}))
    features = tmp_path / "i3d_features"
    features.mkdir()
    for video_id, rows in (("video_validation_1", 146), ("video_validation_2", 72)):
        np.save(features / f"{video_id}.npy", np.random.default_rng(0).random((rows, 2048)))
    np.save(features / "video_test_1.npy", np.ones((146, 2048), np.float32))
    return path, features


def _run(tmp_path: Path, release=THUMOS, **kwargs):
    path, features = _thumos(tmp_path)
    out = tmp_path / "results" / "thumos14" / "features" / "i3d"
    report, counts = import_actionformer(
        path, features, out, release=release, annotations_out=tmp_path / "ann.json", **kwargs
    )
    return report, counts, out


def test_timestamps_follow_the_actionformer_convention(tmp_path: Path) -> None:
    report, _, out = _run(tmp_path)
    assert sorted(report.written) == ["video_test_1", "video_validation_1", "video_validation_2"]
    at30, at25 = (
        read_store(out / "video_validation_1.zarr"),
        read_store(out / "video_validation_2.zarr"),
    )
    # feature i covers [4i / fps, (4i + 16) / fps]
    np.testing.assert_allclose(at30.timestamps[10], [40 / 30, 56 / 30])
    np.testing.assert_allclose(at25.timestamps[10], [40 / 25, 56 / 25])
    assert at25.attrs["stride_s"] == pytest.approx(4 / 25) and at25.attrs["fps"] == 25.0
    assert at30.attrs["window_s"] == pytest.approx(16 / 30)
    # ActionFormer maps t to (t * fps - 0.5 * num_frames) / feat_stride; the stores agree
    times = np.array([0.7, 3.3, 9.1])
    expected = (times * 25.0 - 8) / 4
    np.testing.assert_allclose(
        seconds_to_grid(times, at25.timestamps.mean(axis=1), at25.attrs["stride_s"]), expected
    )


def test_visual_only_stores_have_zero_width_audio(tmp_path: Path) -> None:
    _, _, out = _run(tmp_path)
    store = read_store(out / "video_test_1.zarr")
    assert store.audio.shape == (146, 0) and store.attrs["audio_present"] is False
    assert store.attrs["encoders"]["audio"] == {"name": "none", "dim": 0}
    index = json.loads((out / "index.json").read_text())
    assert index["dims"] == {"visual": 2048, "audio": 0}
    dataset = read_back(tmp_path / "ann.json", out, "test", modalities=("visual",))
    item = dataset[0]
    # Diving [1, 3] s at 30 fps: (30 - 8) / 4 = 5.5 and (90 - 8) / 4 = 20.5
    np.testing.assert_allclose(item["segments"].numpy(), [[5.5, 20.5]], rtol=1e-6)
    assert item["features"]["visual"].shape == (146, 2048) and "audio" not in item["features"]


def test_annotations_are_mapped_and_cleaned(tmp_path: Path) -> None:
    _, counts, _ = _run(tmp_path)
    assert counts == {"duplicates": 1, "empty": 1, "clipped": 1}
    annotations = load_annotations(tmp_path / "ann.json")
    subsets = {vid: video.subset for vid, video in annotations.videos.items()}
    assert "video_other" not in subsets  # subset Background is not mapped
    assert subsets["video_test_1"] == "test"
    assert sorted(subsets[v] for v in ("video_validation_1", "video_validation_2")) == [
        "train",
        "validation",
    ]
    assert annotations.labels == ("BaseballPitch", "Diving")  # ids 0 and 7 renumbered 0, 1
    raw = json.loads((tmp_path / "ann.json").read_text())
    assert raw["source_label_ids"] == {"BaseballPitch": 0, "Diving": 7}
    event = annotations.videos["video_validation_2"].events[0]
    assert (event.start_s, event.end_s) == (10.0, 12.0)


def test_epic_npz_features_and_missing_key(tmp_path: Path) -> None:
    path, features = _thumos(tmp_path)
    for video_id, rows in (  # 30 fps, 32-frame windows every 16 frames: 20 s, 12 s, 20 s
        ("video_validation_1", 36),
        ("video_validation_2", 21),
        ("video_test_1", 36),
    ):
        np.savez(features / f"{video_id}.npz", feats=np.ones((rows, 2304), np.float32))
    epic = replace(RELEASES["epic_kitchens"], subset_map={"validation": "train", "test": "test"})
    out = tmp_path / "epic"
    import_actionformer(path, features, out, release=epic, annotations_out=tmp_path / "e.json")
    store = read_store(out / "video_test_1.zarr")
    # default_fps 30, stride 16, window 32: row 2 covers [32 / 30, 64 / 30]
    np.testing.assert_allclose(store.timestamps[2], [32 / 30, 64 / 30])
    np.savez(features / "video_test_1.npz", other=np.ones((5, 2304), np.float32))
    with pytest.raises(FeatureImportError, match=r"video_test_1\.npz has no array 'feats'"):
        import_actionformer(
            path, features, tmp_path / "epic2", release=epic, annotations_out=tmp_path / "f.json"
        )


def test_missing_feature_file(tmp_path: Path) -> None:
    path, features = _thumos(tmp_path)
    (features / "video_test_1.npy").unlink()
    with pytest.raises(FeatureImportError, match=r"video_test_1\.npy does not exist"):
        import_actionformer(
            path, features, tmp_path / "o", release=THUMOS, annotations_out=tmp_path / "a.json"
        )


def test_cli_with_overrides(tmp_path: Path, capsys) -> None:
    path, features = _thumos(tmp_path)
    (features / "video_test_1.npy").unlink()
    out = tmp_path / "results" / "thumos14" / "features" / "i3d"
    code = main(
        [
            "--annotations", str(path), "--features-dir", str(features), "--out", str(out),
            "--release", "thumos14", "--annotations-out", str(tmp_path / "a.json"),
            "--missing", "skip", "--validation-fraction", "0.5",
            "--subset-map", "Validation=train", "Test=test",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "imported 2 videos" in printed and "1 without features" in printed
    assert "'duplicates': 1" in printed
    index = json.loads((out / "index.json").read_text())
    assert list(index["failed"]) == ["video_test_1"]
