"""Audio on a released visual grid: window seconds, the samples each row reads, the duration
check and finding a benchmark's video files."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.encoders import AudioEncoder
from pipeline.importers import grid_audio
from pipeline.importers.common import (
    FeatureImportError,
    FrameGrid,
    MissingFeaturesError,
    VideoExtractionError,
)
from pipeline.importers.grid_audio import (
    GridAudioExtractor,
    GridMismatchError,
    VideoFolder,
    check_grid_duration,
)
from tests.media import make_video

EPIC = FrameGrid(fps=30.0, stride_frames=16, window_frames=32)  # EPIC-Kitchens-100 SlowFast
THUMOS_25 = FrameGrid(fps=25.0, stride_frames=4, window_frames=16)  # I3D at a 25 fps video's rate


def test_window_seconds_follow_the_release_grid() -> None:
    # EPIC: row i covers frames [16 i, 16 i + 32) at 30 fps
    np.testing.assert_allclose(
        EPIC.timestamps(4), [[0, 32 / 30], [16 / 30, 48 / 30], [32 / 30, 64 / 30], [1.6, 80 / 30]]
    )
    # THUMOS at the video's own 25 fps: frames [4 i, 4 i + 16): 0.16 s stride, 0.64 s window
    np.testing.assert_allclose(THUMOS_25.timestamps(3), [[0, 0.64], [0.16, 0.8], [0.32, 0.96]])
    assert EPIC.stride_s == pytest.approx(16 / 30) and THUMOS_25.window_s == pytest.approx(0.64)


class FirstSampleEncoder(AudioEncoder):
    """Returns each window's first sample and its length: which samples a row read."""

    name = "first_sample"
    dim = 2
    sample_rate = 1000

    def encode(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        return np.stack([windows[:, 0], np.full(len(windows), windows.shape[1])], axis=1)

    def config(self) -> dict:
        return {"name": self.name}


def streamed(waveform: np.ndarray, block: int = 700):
    """A stand-in for ``iter_audio``: ``waveform`` in blocks of ``block`` samples."""

    def iter_audio(path, sample_rate, damage=None):
        for first in range(0, len(waveform), block):
            yield waveform[first : first + block]

    return iter_audio


@pytest.mark.parametrize("batch_size", [2, 64])
def test_each_row_reads_its_own_seconds(monkeypatch, batch_size: int) -> None:
    ramp = np.arange(3000, dtype=np.float32)  # sample n holds n: 3 s at 1 kHz
    monkeypatch.setattr(grid_audio, "iter_audio", streamed(ramp))
    extractor = GridAudioExtractor({"name": "classic"}, batch_size=batch_size)
    extractor.encoder = FirstSampleEncoder()
    audio = extractor.extract("P01_01", Path("P01_01.MP4"), EPIC.timestamps(6))
    # row i starts at sample round(1000 * 16 i / 30) and reads round(1000 * 32 / 30) samples;
    # rows starting past the sound read zeros (row 5 starts at 2667, within; all 1067 long)
    np.testing.assert_array_equal(audio[:, 0], [0, 533, 1067, 1600, 2133, 2667])
    np.testing.assert_array_equal(audio[:, 1], [1067] * 6)


def test_rows_past_the_sound_are_silent(monkeypatch) -> None:
    monkeypatch.setattr(grid_audio, "iter_audio", streamed(np.ones(1000, np.float32)))
    extractor = GridAudioExtractor({"name": "classic"}, batch_size=4)
    extractor.encoder = FirstSampleEncoder()
    audio = extractor.extract("v", Path("v.mp4"), THUMOS_25.timestamps(8))  # starts 0 .. 1.12 s
    np.testing.assert_array_equal(audio[:, 0], [1, 1, 1, 1, 1, 1, 1, 0])  # 1.12 s >= 1 s


def test_an_hour_of_sound_is_never_held_whole(monkeypatch) -> None:
    # An hour at 16 kHz is 230 MB of float32; the rows are cut as the blocks stream by, so at
    # most a batch of windows (64 x 1.07 s, 4.4 MB) and the samples it spans are held.
    rate, block = 16000, 1024

    def hour_of_blocks(path, sample_rate, damage=None):
        for first in range(0, 3600 * rate, block):
            yield np.full(block, first / (3600 * rate), dtype=np.float32)  # a slow ramp

    class FirstSample16k(FirstSampleEncoder):
        sample_rate = rate

    monkeypatch.setattr(grid_audio, "iter_audio", hour_of_blocks)
    extractor = GridAudioExtractor({"name": "classic"}, batch_size=64)
    extractor.encoder = FirstSample16k()
    rows = int(3600 / EPIC.stride_s) - 1
    tracemalloc.start()
    try:
        audio = extractor.extract("P01_01", Path("P01_01.MP4"), EPIC.timestamps(rows))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"held {peak / 2**20:.0f} MiB"
    starts = np.round(EPIC.timestamps(rows)[:, 0] * rate)
    expected = (starts // block * block / (3600 * rate)).astype(np.float32)  # each block's value
    np.testing.assert_array_equal(audio[:, 0], expected)
    assert audio.shape == (rows, 2) and (audio[:, 1] == round(32 / 30 * rate)).all()


def test_a_video_without_sound_names_the_video(tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    make_video(silent, duration_s=1.0, audio=False)
    extractor = GridAudioExtractor({"name": "classic"})
    with pytest.raises(VideoExtractionError, match=r"video v: .*silent\.mp4 has no audio stream"):
        extractor.extract("v", silent, THUMOS_25.timestamps(2))
    with pytest.raises(VideoExtractionError, match="video w: cannot read the sound of"):
        extractor.extract("w", tmp_path / "missing.mp4", THUMOS_25.timestamps(2))


@pytest.mark.parametrize(
    ("rows", "fits"),
    [
        (36, True),  # 20 s at 30 fps, whole 32-frame windows only: (600 - 32) // 16 + 1
        (38, True),  # padded last clips: rows start up to the end
        (39, True),  # one stride of slack beyond that
        (40, False),  # 21.33 s: more than two strides past the end
        (35, True),  # 18.67 s: less than a window + one stride of slack (18.4 s) short
        (34, False),  # 18.13 s: a truncated file
    ],
)
def test_grid_must_fit_the_duration(rows: int, fits: bool) -> None:
    def check() -> None:
        check_grid_duration(
            "P01_01",
            rows,
            EPIC,
            20.0,
            features_file="feats/P01_01.npz",
            duration_source="the annotations",
        )

    if fits:
        check()
    else:
        with pytest.raises(GridMismatchError, match=r"video P01_01: .*feats/P01_01\.npz"):
            check()


def test_long_videos_get_one_percent_slack() -> None:
    # THUMOS14 video_validation_0000051: 169.79 s, 1269 rows at 30 fps (5094 frames)
    grid = FrameGrid(30.0, 4, 16)
    check_grid_duration("v", 1269, grid, 169.79, features_file="v.npy", duration_source="json")
    # stored as 30 fps but really 29.97: 0.1 % drift over an hour stays inside 1 %
    check_grid_duration("v", 27000, grid, 3600.0 * 1.001, features_file="v", duration_source="j")
    with pytest.raises(GridMismatchError, match="past the end"):  # features at 30, json says 25
        check_grid_duration(
            "v", 1269, FrameGrid(25.0, 4, 16), 169.79, features_file="v", duration_source="j"
        )


def test_video_folder_finds_files_by_id(tmp_path: Path) -> None:
    (tmp_path / "video_test_1.MP4").touch()
    (tmp_path / "video_test_2.mkv").touch()
    (tmp_path / "video_test_2.txt").touch()
    folder = VideoFolder(tmp_path)
    assert folder.find("video_test_1") == tmp_path / "video_test_1.MP4"  # any letter case
    assert folder.find("video_test_2") == tmp_path / "video_test_2.mkv"
    with pytest.raises(MissingFeaturesError, match=r"video video_test_3: no video file"):
        folder.find("video_test_3")
    (tmp_path / "video_test_2.mp4").touch()
    with pytest.raises(FeatureImportError, match="2 video files match"):
        VideoFolder(tmp_path).find("video_test_2")


def test_video_folder_pattern_reads_the_epic_layout(tmp_path: Path) -> None:
    nested = tmp_path / "P01" / "videos"
    nested.mkdir(parents=True)
    (nested / "P01_01.MP4").touch()
    folder = VideoFolder(tmp_path, "*/videos/{vid}.MP4")
    assert folder.find("P01_01") == nested / "P01_01.MP4"
    with pytest.raises(MissingFeaturesError, match=r"P02_01\.MP4"):
        folder.find("P02_01")
    with pytest.raises(ValueError, match="lacks '\\{vid\\}'"):
        VideoFolder(tmp_path, "*/videos/*.MP4")
    with pytest.raises(FileNotFoundError, match="videos_dir"):
        VideoFolder(tmp_path / "absent")
