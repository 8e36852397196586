"""ActionFormer-format import with audio from the benchmark's own videos, on the released grid.

The known-time tests write videos whose sound is a tone only during known seconds, fake visual
features of the release's width on the release's grid, import them with audio, and check that
exactly the rows whose windows overlap the tone, worked out by hand from the grid, hear it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.importers.actionformer import RELEASES, import_actionformer, main
from pipeline.importers.common import (
    FeatureImportError,
    MissingFeaturesError,
    VideoExtractionError,
)
from pipeline.importers.grid_audio import GridMismatchError
from pipeline.store import read_store
from tests import media
from tests.pipeline.importers.sound_media import make_video_with_sound, tone_between

SAMPLE_RATE = 16000
CLASSIC = {"name": "classic"}
# The classic encoder's columns: 64 log-mel means, 64 stds, then the means of centroid,
# bandwidth, roll-off, flatness, zero-crossing rate and RMS amplitude, then their stds.
RMS_MEAN = 2 * 64 + 5

# EPIC-Kitchens-100: 32-frame windows every 16 frames at 30 fps, whatever the video's rate.
# Row i covers [16 i / 30, 16 i / 30 + 32 / 30] s. An 8 s video gives (240 - 32) // 16 + 1 = 14
# rows. A tone in [3.0, 4.0] s is heard by rows with 16 i / 30 < 4.0 (i <= 7) and
# 16 i / 30 + 32 / 30 > 3.0 (i >= 4): rows 4..7; row 3 ends 0.33 s before it, row 8 starts
# 0.27 s after it.
EPIC_VIDEOS = {  # id: (subset, video fps, duration_s, tone span, rows, rows hearing it)
    "P01_01": ("training", 50, 8.0, (3.0, 4.0), 14, [4, 5, 6, 7]),
    "P01_02": ("validation", 60, 8.0, (0.0, 0.5), 14, [0]),  # row 1 starts at 0.53 s
}
# THUMOS14: 16-frame windows every 4 frames at each video's own fps (the JSON's).
# 25 fps: row i covers [0.16 i, 0.16 i + 0.64] s; 4 s give (100 - 16) // 4 + 1 = 22 rows; a tone
# in [2.0, 2.5] s: 0.16 i < 2.5 (i <= 15) and 0.16 i + 0.64 > 2.0 (i >= 9): rows 9..15.
# 30 fps: row i covers [4 i / 30, 4 i / 30 + 16 / 30] s; 4 s give (120 - 16) // 4 + 1 = 27 rows; a
# tone in [1.0, 1.5] s: 4 i / 30 < 1.5 (i <= 11) and 4 i / 30 + 16 / 30 > 1.0 (i >= 4): rows 4..11.
THUMOS_VIDEOS = {
    "video_validation_1": ("Validation", 25, 4.0, (2.0, 2.5), 22, list(range(9, 16))),
    "video_test_1": ("Test", 30, 4.0, (1.0, 1.5), 27, list(range(4, 12))),
}


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> Path:
    """Every test video once (lossless PCM sound in Matroska, so the tone's edges are exact)."""
    folder = tmp_path_factory.mktemp("sounds")
    for video_id, (_, fps, duration_s, span, _, _) in {**EPIC_VIDEOS, **THUMOS_VIDEOS}.items():
        sound = tone_between(duration_s, [span], SAMPLE_RATE)
        make_video_with_sound(folder / f"{video_id}.mkv", sound, fps=fps)
    return folder


def _release(tmp_path: Path, sounds: Path, kind: str) -> dict:
    """The release's JSON, features and a videos folder; import_actionformer's arguments."""
    videos = EPIC_VIDEOS if kind == "epic_kitchens" else THUMOS_VIDEOS
    spec = RELEASES[kind]
    features, videos_dir = tmp_path / "features", tmp_path / "videos"
    features.mkdir()
    rng = np.random.default_rng(0)
    database = {}
    for video_id, (subset, fps, duration_s, _, rows, _) in videos.items():
        visual = rng.normal(size=(rows, spec.input_dim)).astype(np.float32)
        if kind == "epic_kitchens":  # EPIC-Kitchens-100's layout: P01/videos/P01_01.MP4
            np.savez(features / f"{video_id}.npz", feats=visual)
            target = videos_dir / video_id.split("_")[0] / "videos" / f"{video_id}.mkv"
        else:
            np.save(features / f"{video_id}.npy", visual)
            target = videos_dir / f"{video_id}.mkv"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sounds / f"{video_id}.mkv", target)
        event = {"segment": [0.5, 1.5], "label": "open", "label_id": 3}
        database[video_id] = {
            "subset": subset,
            "duration": duration_s,
            "fps": fps,
            "annotations": [event],
        }
    annotations = tmp_path / "release.json"
    annotations.write_text(json.dumps({"database": database}))
    return {
        "annotations_path": annotations,
        "features_dir": features,
        "out_dir": tmp_path / "out",
        "release": replace(spec, validation_fraction=0.0),
        "annotations_out": tmp_path / "annotations.json",
        "videos_dir": videos_dir,
        "video_pattern": "*/videos/{vid}.mkv" if kind == "epic_kitchens" else None,
        "audio_encoder": CLASSIC,
    }


def _rows_hearing_the_tone(audio: np.ndarray) -> list[int]:
    """Rows whose mean RMS amplitude (an energy-like component) is not that of digital silence."""
    rms = audio[:, RMS_MEAN]  # (T,)
    silent = rms == 0.0
    assert np.all(silent | (rms > 1e-3)), rms  # each row hears the tone, or pure silence
    return np.flatnonzero(~silent).tolist()


@pytest.mark.parametrize(
    ("kind", "videos"), [("epic_kitchens", EPIC_VIDEOS), ("thumos14", THUMOS_VIDEOS)]
)
def test_audio_rows_hear_exactly_their_seconds(tmp_path, sounds, kind, videos) -> None:
    arguments = _release(tmp_path, sounds, kind)
    report, _ = import_actionformer(**arguments)
    assert sorted(report.written) == sorted(videos) and not report.failed
    spec = RELEASES[kind]
    for video_id, (_, fps, _, _, rows, heard) in videos.items():
        store = read_store(arguments["out_dir"] / f"{video_id}.zarr")
        grid_fps = spec.default_fps or fps  # EPIC: 30 whatever the video's rate
        assert store.audio.shape[0] == store.visual.shape[0] == rows
        assert _rows_hearing_the_tone(store.audio) == heard, video_id
        starts = np.arange(rows) * spec.feat_stride / grid_fps
        np.testing.assert_allclose(store.timestamps[:, 0], starts)
        np.testing.assert_allclose(store.timestamps[:, 1], starts + spec.num_frames / grid_fps)
        attrs = store.attrs
        assert attrs["audio_present"] is True and attrs["sample_rate"] == SAMPLE_RATE
        assert attrs["encoders"]["audio"]["name"] == "classic"
        assert attrs["encoders"]["audio"]["dim"] == store.audio.shape[1] == 140
        assert attrs["grid"] == {
            "fps": grid_fps,
            "feat_stride": spec.feat_stride,
            "num_frames": spec.num_frames,
        }
        assert attrs["source"].endswith(f"{video_id}.mkv")
    index = json.loads((arguments["out_dir"] / "index.json").read_text())
    assert index["dims"] == {"visual": spec.input_dim, "audio": 140}
    again, _ = import_actionformer(**arguments)  # same settings: the finished stores are kept
    assert sorted(again.kept) == sorted(videos) and not again.written


def _replace_video(arguments: dict, video_id: str, make) -> Path:
    path = arguments["videos_dir"] / f"{video_id}.mkv"
    path.unlink()
    make(path)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (
            lambda path: media.make_video(path, duration_s=4.0, fps=30, audio=False),
            "no audio stream",
        ),
        (media.make_garbage, "cannot read"),
    ],
    ids=["no_audio_stream", "unreadable"],
)
def test_video_without_sound_fails_or_is_skipped(tmp_path, sounds, make, why) -> None:
    arguments = _release(tmp_path, sounds, "thumos14")
    path = _replace_video(arguments, "video_test_1", make)
    with pytest.raises(VideoExtractionError, match=rf"video video_test_1: .*{why}") as raised:
        import_actionformer(**arguments)
    assert str(path) in str(raised.value) and "extraction.on_error: skip" in str(raised.value)
    assert not (arguments["out_dir"] / "index.json").exists()
    report, _ = import_actionformer(**arguments, on_error="skip")
    assert list(report.failed) == ["video_test_1"] and str(path) in report.failed["video_test_1"]
    index = json.loads((arguments["out_dir"] / "index.json").read_text())
    assert list(index["videos"]) == ["video_validation_1"]
    assert list(index["failed"]) == ["video_test_1"]


def test_skipped_audio_packets_are_recorded_in_the_store_and_the_index(tmp_path, sounds) -> None:
    # As extraction records them: an AC3 sound whose packets 0 and 30 no decoder accepts.
    arguments = _release(tmp_path, sounds, "thumos14")
    clean = tmp_path / "clean.mkv"
    media.make_video(
        clean, duration_s=4.0, fps=30, codec="mpeg4", audio_codec="ac3", sample_rate=48000
    )
    path = arguments["videos_dir"] / "video_test_1.mkv"
    path.unlink()
    media.make_damaged_copy(clean, path, kind="audio", packets={0, 30})
    report, _ = import_actionformer(**arguments)
    assert sorted(report.written) == sorted(THUMOS_VIDEOS) and not report.failed
    damaged = read_store(arguments["out_dir"] / "video_test_1.zarr").attrs["decode_errors"]
    assert list(damaged) == ["audio"] and damaged["audio"]["packets"] == 2
    assert damaged["audio"]["seconds"] == pytest.approx(2 * 1536 / 48000)  # AC3: 1,536 samples
    assert read_store(arguments["out_dir"] / "video_validation_1.zarr").attrs["decode_errors"] == {}
    index = json.loads((arguments["out_dir"] / "index.json").read_text())
    assert index["videos"]["video_test_1"]["decode_errors"] == damaged
    assert "decode_errors" not in index["videos"]["video_validation_1"]


def test_missing_video_file_follows_missing(tmp_path, sounds) -> None:
    arguments = _release(tmp_path, sounds, "thumos14")
    (arguments["videos_dir"] / "video_test_1.mkv").unlink()
    with pytest.raises(MissingFeaturesError, match=r"video video_test_1: no video file matches"):
        import_actionformer(**arguments)
    report, _ = import_actionformer(**arguments, missing="skip")
    assert list(report.failed) == ["video_test_1"]


def test_grid_longer_than_the_annotated_duration_is_refused(tmp_path, sounds) -> None:
    arguments = _release(tmp_path, sounds, "thumos14")
    features = arguments["features_dir"] / "video_test_1.npy"
    np.save(features, np.ones((40, 2048), np.float32))  # 40 * 4 / 30 = 5.33 s of a 4 s video
    with pytest.raises(GridMismatchError, match=r"video video_test_1: the 40 feature rows of "):
        import_actionformer(**arguments)
    with pytest.raises(GridMismatchError, match=r"4\.00 s by the annotations \(.*release\.json\)"):
        import_actionformer(**{**arguments, "videos_dir": None, "video_pattern": None,
                               "audio_encoder": None})  # fmt: skip


def test_grid_longer_than_the_video_file_is_refused(tmp_path, sounds) -> None:
    arguments = _release(tmp_path, sounds, "thumos14")
    short = tone_between(2.0, [(1.0, 1.5)], SAMPLE_RATE)  # a 2 s file where the JSON says 4 s
    path = _replace_video(
        arguments, "video_test_1", lambda p: make_video_with_sound(p, short, fps=30)
    )
    with pytest.raises(GridMismatchError, match=r"video video_test_1: .*video_test_1\.npy") as err:
        import_actionformer(**arguments)
    assert f"2.00 s by the video file {path} " in str(err.value)


def test_a_differing_width_is_refused_when_the_release_fixes_none(tmp_path, sounds) -> None:
    arguments = _release(tmp_path, sounds, "thumos14")
    arguments["release"] = replace(arguments["release"], input_dim=None)
    features = arguments["features_dir"] / "video_validation_1.npy"
    np.save(features, np.ones((22, 1024), np.float32))
    expected = (
        r"video video_validation_1: visual features of .*video_validation_1\.npy have 1024 dims "
        r"but this import's have 2048 \(set by video_test_1\)"
    )
    with pytest.raises(FeatureImportError, match=expected):
        import_actionformer(**arguments)


def test_cli_passes_the_audio_encoder_and_the_error_policy(tmp_path, sounds, capsys) -> None:
    arguments = _release(tmp_path, sounds, "thumos14")
    path = _replace_video(
        arguments, "video_test_1", lambda p: media.make_video(p, duration_s=4.0, audio=False)
    )
    out = tmp_path / "results" / "thumos14" / "features" / "i3d_classic"
    argv = [
        "--annotations", str(arguments["annotations_path"]),
        "--features-dir", str(arguments["features_dir"]), "--out", str(out),
        "--release", "thumos14", "--annotations-out", str(tmp_path / "a.json"),
        "--videos-dir", str(arguments["videos_dir"]),
        "--audio-encoder", '{"name": "classic", "n_mels": 16}',
    ]  # fmt: skip
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: video video_test_1: ") and str(path) in error
    assert main([*argv, "--on-error", "skip", "--validation-fraction", "0"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["dims"] == {"visual": 2048, "audio": 2 * (16 + 6)}  # the encoder's options
    assert list(index["failed"]) == ["video_test_1"]
