"""Tests for pipeline.decode on tiny synthetic files written by tests/media.py."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from pipeline import decode, decode_audio
from pipeline.decode import (
    DecodeError,
    NoAudioStream,
    StreamDamage,
    ffmpeg_executable,
    frame_indices,
    iter_audio,
    iter_frames,
    probe,
    read_audio,
    snippet_grid,
)
from tests import media


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test file, written once per module (each takes a few tens of ms)."""
    folder = tmp_path_factory.mktemp("media")
    paths = {
        name: folder / filename
        for name, filename in {
            "cfr": "cfr.mp4",
            "vfr": "vfr.mp4",
            "vfr_mkv": "vfr.mkv",
            "avi": "mpeg4.avi",
            "odd_mp4": "odd_444.mp4",
            "odd_mkv": "odd_ffv1.mkv",
            "stereo_mkv": "stereo.mkv",
            "no_audio": "no_audio.mp4",
            "audio_only": "audio_only.m4a",
            "empty": "empty.mp4",
            "zero_bytes": "zero_bytes.mp4",
            "garbage": "garbage.mp4",
            "text": "annotations.txt",
            "faststart": "faststart.mp4",
            "truncated": "truncated.mp4",
            "truncated_faststart": "truncated_faststart.mp4",
        }.items()
    }
    media.make_video(paths["cfr"])
    media.make_video(paths["vfr"], vfr=True)
    media.make_video(paths["vfr_mkv"], vfr=True)
    media.make_video(paths["avi"], codec="mpeg4", audio_codec="pcm_s16le")
    media.make_video(paths["odd_mp4"], size=(33, 17), pix_fmt="yuv444p")
    media.make_video(paths["odd_mkv"], size=(33, 17), pix_fmt="yuv444p", codec="ffv1")
    media.make_video(paths["stereo_mkv"], audio_channels=2)
    media.make_video(paths["no_audio"], audio=False)
    media.make_audio_only(paths["audio_only"])
    media.make_empty_video(paths["empty"])
    paths["zero_bytes"].write_bytes(b"")
    media.make_garbage(paths["garbage"])
    media.make_text_file(paths["text"])
    media.make_video(paths["faststart"], faststart=True)
    media.make_truncated_copy(paths["cfr"], paths["truncated"])
    media.make_truncated_copy(paths["faststart"], paths["truncated_faststart"])
    return paths


def expected_indices(source_times: np.ndarray, fps: float, count: int) -> list[int]:
    """Source frame shown at output time i / fps: the latest with pts <= it (wrapped index)."""
    output_times = np.arange(count) / fps
    latest = np.searchsorted(source_times, output_times + 1e-6, side="right") - 1
    return [int(k) % media.INDEX_PERIOD for k in np.maximum(latest, 0)]


# --- snippet_grid -------------------------------------------------------------------------


def test_snippet_grid_hand_computed() -> None:
    grid = snippet_grid(10.0, 2.0, 1.0)
    assert grid.dtype == np.float64
    assert grid.shape == (9, 2)  # floor((10 - 2) / 1) + 1
    np.testing.assert_array_equal(grid[0], [0.0, 2.0])
    np.testing.assert_array_equal(grid[-1], [8.0, 10.0])
    np.testing.assert_array_equal(grid[:, 1] - grid[:, 0], np.full(9, 2.0))


def test_snippet_grid_survives_float_rounding() -> None:
    # (2.0 - 1.0) / 0.1 is 9.999999999999998 in floating point: still 11 snippets.
    grid = snippet_grid(2.0, 1.0, 0.1)
    assert grid.shape == (11, 2)
    np.testing.assert_allclose(grid[-1], [1.0, 2.0])
    assert snippet_grid(1.95, 1.0, 0.1).shape == (10, 2)  # floor(9.5) + 1
    assert snippet_grid(1.0, 1.0, 0.5).shape == (1, 2)  # exactly one window


def test_snippet_grid_video_shorter_than_window() -> None:
    np.testing.assert_array_equal(snippet_grid(0.4, 1.0, 0.5), [[0.0, 1.0]])


@pytest.mark.parametrize(
    ("duration_s", "window_s", "stride_s", "message"),
    [
        (0.0, 1.0, 0.5, "duration_s"),
        (-2.0, 1.0, 0.5, "duration_s"),
        (float("nan"), 1.0, 0.5, "duration_s"),
        (5.0, 0.0, 0.5, "window_s"),
        (5.0, 1.0, -0.5, "stride_s"),
    ],
)
def test_snippet_grid_rejects_bad_arguments(
    duration_s: float, window_s: float, stride_s: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        snippet_grid(duration_s, window_s, stride_s)


# --- frame_indices -----------------------------------------------------------------------------


def test_frame_indices_hand_computed_grid():
    timestamps = snippet_grid(2.0, 0.96, 0.32)  # starts 0, 0.32, 0.64, 0.96
    indices = frame_indices(timestamps, 4, 8.0)
    # snippet 0 samples 0.12, 0.36, 0.60, 0.84 s -> x8 = 0.96, 2.88, 4.8, 6.72
    # snippet 1 samples 0.44, 0.68, 0.92, 1.16 s -> 3.52, 5.44, 7.36, 9.28
    # snippet 2 samples 0.76, 1.00, 1.24, 1.48 s -> 6.08, 8.0 (exactly), 9.92, 11.84
    # snippet 3 samples 1.08, 1.32, 1.56, 1.80 s -> 8.64, 10.56, 12.48, 14.4
    expected = [[0, 2, 4, 6], [3, 5, 7, 9], [6, 8, 9, 11], [8, 10, 12, 14]]
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected)


def test_frame_indices_one_frame_takes_the_window_centre():
    timestamps = np.array([[0.0, 1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(frame_indices(timestamps, 1, 10.0), [[5], [15]])


# --- ffmpeg_executable ----------------------------------------------------------------------


def test_ffmpeg_executable_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    result = subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("ffmpeg version")
    monkeypatch.setattr(decode.shutil, "which", lambda name: None)
    assert ffmpeg_executable() == imageio_ffmpeg.get_ffmpeg_exe()


# --- iter_frames ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cfr", "avi", "odd_mkv"])
def test_iter_frames_at_source_rate(files: dict[str, Path], name: str) -> None:
    frames = list(iter_frames(files[name], 10, (64, 48)))
    assert len(frames) == 20  # 2 s at 10 fps; the Matroska AAC priming adds no frame
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert [media.frame_index(f) for f in frames] == list(range(20))
    levels = [float(f[:10].mean()) for f in frames]  # colour range kept: grey in == grey out
    np.testing.assert_allclose(levels, [media.index_level(k) for k in range(20)], atol=3)


@pytest.mark.parametrize(("fps", "count"), [(4, 8), (3, 6), (25, 50), (7.5, 15)])
def test_iter_frames_resamples_to_grid(files: dict[str, Path], fps: float, count: int) -> None:
    frames = list(iter_frames(files["cfr"], fps, (32, 24)))
    assert len(frames) == count  # i / fps < 2.0 s
    source_times = media.frame_times(2.0, 10)
    assert [media.frame_index(f) for f in frames] == expected_indices(source_times, fps, count)


@pytest.mark.parametrize("name", ["vfr", "vfr_mkv"])
@pytest.mark.parametrize("fps", [10, 20, 6])
def test_iter_frames_vfr(files: dict[str, Path], name: str, fps: int) -> None:
    source_times = media.frame_times(2.0, 10, vfr=True)
    assert len(np.unique(np.round(np.diff(source_times), 3))) == 3  # 50, 150, 100 ms gaps
    frames = list(iter_frames(files[name], fps, (32, 24)))
    assert len(frames) == 2 * fps
    indices = [media.frame_index(f) for f in frames]
    assert indices == expected_indices(source_times, fps, 2 * fps)
    if fps == 20:  # the 150 ms gaps repeat a frame and the 50 ms gaps skip one
        assert len(set(indices)) < len(indices) and max(indices) == 19


def test_iter_frames_ntsc_rate_with_millisecond_timestamps(tmp_path: Path) -> None:
    """Matroska rounds 29.97 fps pts to whole ms (0, 33, 67, ...): 67 ms is after the
    output time 66.73 ms, and only the one-tick tolerance keeps every frame exactly once."""
    path = tmp_path / "ntsc.mkv"
    media.make_video(path, fps=30000 / 1001, duration_s=1.0, audio=False)
    info = probe(path)
    assert info.fps == pytest.approx(29.97003) and not info.variable_frame_rate
    frames = list(iter_frames(path, 30000 / 1001, (16, 16)))
    assert [media.frame_index(f) for f in frames] == list(range(30))


@pytest.mark.parametrize("name", ["odd_mp4", "odd_mkv"])
@pytest.mark.parametrize("size", [(33, 17), (64, 48), (7, 5), (224, 224)])
def test_iter_frames_odd_resolution(
    files: dict[str, Path], name: str, size: tuple[int, int]
) -> None:
    frames = list(iter_frames(files[name], 10, size))
    assert len(frames) == 20
    assert {f.shape for f in frames} == {(size[1], size[0], 3)}
    assert [media.frame_index(f) for f in frames] == list(range(20))


def test_iter_frames_returns_fresh_arrays(files: dict[str, Path]) -> None:
    frames = list(iter_frames(files["cfr"], 30, (16, 16)))  # each source frame shown 3 times
    assert len(frames) == 60
    frames[0][:] = 0
    assert media.frame_index(frames[1]) == 0 and frames[1].mean() == pytest.approx(16, abs=3)


def test_iter_frames_stops_early_without_error(files: dict[str, Path]) -> None:
    frames = iter_frames(files["cfr"], 10, (32, 24))
    first = list(itertools.islice(frames, 3))
    frames.close()
    assert [media.frame_index(f) for f in first] == [0, 1, 2]


def _process_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_iter_frames_decodes_with_the_threads_it_is_given(files: dict[str, Path]) -> None:
    """An extraction job decodes with the threads Snakemake gave it, not one per core; the
    frames are the same whatever the number."""
    counts, frames = {}, {}
    for threads in (1, 4, 0):
        stream = iter_frames(files["cfr"], 10, (32, 24), threads=threads)
        first = next(stream)  # the decoder and its threads are running
        counts[threads] = _process_threads()
        frames[threads] = [first, *stream]
    assert counts[4] - counts[1] >= 3  # libavcodec's worker threads, none with 1
    for threads in (4, 0):
        assert len(frames[threads]) == len(frames[1]) == 20
        for ours, reference in zip(frames[threads], frames[1], strict=True):
            np.testing.assert_array_equal(ours, reference)
    with pytest.raises(ValueError, match="threads >= 0"):
        next(iter_frames(files["cfr"], 10, (32, 24), threads=-1))


@pytest.mark.parametrize(
    ("fps", "size"), [(0, (32, 24)), (-5, (32, 24)), (10, (0, 24)), (10, (32, -1))]
)
def test_iter_frames_rejects_bad_arguments(files: dict[str, Path], fps: float, size) -> None:
    with pytest.raises(ValueError, match="fps > 0 and a positive size"):
        next(iter_frames(files["cfr"], fps, size))


# --- read_audio -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cfr", "avi", "odd_mkv", "audio_only"])
@pytest.mark.parametrize("sample_rate", [16000, 8000, 22050])
def test_read_audio_is_the_tone_on_the_time_axis(
    files: dict[str, Path], name: str, sample_rate: int
) -> None:
    audio = read_audio(files[name], sample_rate)
    assert audio.dtype == np.float32 and audio.shape == (2 * sample_rate,)
    assert np.abs(audio).max() <= 1.0
    reference = media.tone(2.0, sample_rate, 440.0)
    inner = slice(sample_rate // 100, -sample_rate // 100)  # AAC edges aside
    shifts = {
        lag: np.corrcoef(np.roll(audio, lag)[inner], reference[inner])[0, 1] for lag in (-1, 0, 1)
    }
    assert shifts[0] > 0.999 and shifts[0] > max(shifts[-1], shifts[1])  # aligned to a sample
    error = audio[inner] - reference[inner]
    if name == "avi":  # 16-bit PCM: only quantisation and resampling error
        assert np.abs(error).max() < 1e-3
    else:  # AAC; one sample of misalignment alone would be an RMS error of 0.06 at 16 kHz
        assert np.sqrt(np.mean(error**2)) < 0.02


def test_read_audio_downmixes_stereo(files: dict[str, Path]) -> None:
    audio = read_audio(files["stereo_mkv"], 16000)
    assert audio.shape == (32000,)
    # libswresample mixes each channel in at -3 dB: the 0.5 tone on both becomes 0.5 * sqrt(2)
    reference = np.sqrt(2.0) * media.tone(2.0, 16000, 440.0)
    error = audio[160:-160] - reference[160:-160]
    assert np.sqrt(np.mean(error**2)) < 0.02  # AAC coding error; a lost channel gives 0.25


def test_read_audio_without_audio_stream(files: dict[str, Path]) -> None:
    assert probe(files["no_audio"]).has_audio is False
    with pytest.raises(NoAudioStream, match=re.escape("no_audio.mp4 has no audio stream")):
        read_audio(files["no_audio"], 16000)
    assert issubclass(NoAudioStream, DecodeError)


def test_read_audio_rejects_bad_sample_rate(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        read_audio(files["cfr"], 0)


@pytest.fixture(scope="module")
def shifted(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cfr.mp4 with its audio stream moved 0.5 s later ("late") and 0.3 s earlier ("early")."""
    folder = tmp_path_factory.mktemp("shifted")
    paths = {"late": folder / "late.mkv", "early": folder / "early.mkv"}
    for name, offset_s in (("late", 0.5), ("early", -0.3)):
        command = [ffmpeg_executable(), "-v", "error", "-i", str(files["cfr"])]
        command += ["-itsoffset", str(offset_s), "-i", str(files["cfr"])]
        command += ["-map", "0:v", "-map", "1:a", "-c", "copy", str(paths[name])]
        subprocess.run(command, check=True)
    return paths


@pytest.mark.parametrize(("name", "offset_s"), [("late", 0.5), ("early", -0.3)])
def test_read_audio_places_a_shifted_stream_on_the_time_axis(
    shifted: dict[str, Path], name: str, offset_s: float
) -> None:
    sample_rate = 16000
    audio = read_audio(shifted[name], sample_rate)
    assert audio.shape == (round(probe(shifted[name]).duration_s * sample_rate),)
    reference = media.tone(2.0, sample_rate, 440.0)
    shift, edge = round(offset_s * sample_rate), sample_rate // 100  # AAC edges aside
    if shift > 0:  # leading silence, then the tone
        assert not audio[: shift - 10 * edge].any()
        placed = audio[shift + edge : shift + 2 * sample_rate - edge]
        expected = reference[edge:-edge]
    else:  # the tone's first 0.3 s fall before time zero
        placed = audio[edge : 2 * sample_rate + shift - edge]
        expected = reference[-shift + edge : -edge]
    # one sample of misalignment alone would be an RMS error of 0.06
    assert np.sqrt(np.mean((placed - expected) ** 2)) < 0.02


def test_iter_audio_streams_read_audio_in_blocks_as_it_decodes(
    files: dict[str, Path], shifted: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 s streams: by default the resampler's 1 s frames make a few blocks
    assert len(list(iter_audio(files["cfr"], 16000))) <= 3
    monkeypatch.setattr(decode_audio, "AUDIO_BLOCK_S", 0.01)  # leading silence in blocks of 160
    monkeypatch.setattr(decode_audio, "RESAMPLED_FRAME_S", 0.02)  # 320 samples < a packet (341)
    for path in (files["cfr"], files["stereo_mkv"], shifted["late"], shifted["early"]):
        blocks = list(iter_audio(path, 16000))
        assert all(block.dtype == np.float32 and len(block) <= 1024 for block in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), read_audio(path, 16000))
    damage = StreamDamage()
    blocks = iter_audio(files["cfr"], 16000, damage=damage)
    next(blocks)
    read_for_the_first_block = damage.packets_read
    assert sum(1 for _ in blocks) > 20
    assert read_for_the_first_block <= 3 < 20 < damage.packets_read  # 2 s: about 32 packets
    with pytest.raises(NoAudioStream):
        next(iter_audio(files["no_audio"], 16000))


# --- bad inputs -----------------------------------------------------------------------------

READERS = {
    "probe": probe,
    "iter_frames": lambda path: list(iter_frames(path, 10, (32, 24))),
    "read_audio": lambda path: read_audio(path, 16000),
}


@pytest.mark.parametrize("reader", READERS)
def test_missing_file(tmp_path: Path, reader: str) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere.mp4")):
        READERS[reader](tmp_path / "nowhere.mp4")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", ["garbage", "text"])
def test_not_a_media_file(files: dict[str, Path], reader: str, name: str) -> None:
    with pytest.raises(
        DecodeError, match=re.escape(f"{files[name].name} is not a readable media file")
    ):
        READERS[reader](files[name])


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", ["empty", "zero_bytes"])
def test_empty_video_has_zero_duration(files: dict[str, Path], reader: str, name: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(files[name].name) + " .*zero duration"):
        READERS[reader](files[name])


def test_audio_only_file_has_no_frames(files: dict[str, Path]) -> None:
    with pytest.raises(DecodeError, match=re.escape("audio_only.m4a has no video stream")):
        next(iter_frames(files["audio_only"], 10, (32, 24)))


@pytest.mark.parametrize("reader", READERS)
def test_truncated_mp4_with_index_at_end(files: dict[str, Path], reader: str) -> None:
    """Half an MP4 whose index (moov) was to be written last cannot be opened at all."""
    with pytest.raises(DecodeError, match=re.escape("truncated.mp4 is not a readable media file")):
        READERS[reader](files["truncated"])


def test_truncated_faststart_mp4_yields_what_decodes_then_raises(files: dict[str, Path]) -> None:
    """Half an MP4 with its index first: the decodable frames come out, padded ones never."""
    path = files["truncated_faststart"]
    assert probe(path).duration_s == 2.0  # the index still declares the full length
    yielded = []
    with pytest.raises(DecodeError, match=re.escape("truncated_faststart.mp4") + ".*truncated"):
        for frame in iter_frames(path, 10, (32, 24)):
            yielded.append(media.frame_index(frame))
    assert 0 < len(yielded) < 20
    assert yielded[:5] == [0, 1, 2, 3, 4]
    with pytest.raises(DecodeError, match=re.escape("truncated_faststart.mp4")):
        read_audio(path, 16000)


def test_intact_faststart_mp4_is_not_truncated(files: dict[str, Path]) -> None:
    assert len(list(iter_frames(files["faststart"], 10, (32, 24)))) == 20
    assert read_audio(files["faststart"], 16000).shape == (32000,)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX system")
def test_bad_inputs_do_not_crash_the_interpreter(files: dict[str, Path]) -> None:
    """Decode every bad file in a child process: a segfault or a hang fails this test."""
    names = ["garbage", "text", "empty", "zero_bytes", "truncated", "truncated_faststart"]
    script = (
        "import sys\nfrom pipeline.decode import DecodeError, iter_frames, read_audio\n"
        "for path in sys.argv[1:]:\n"
        "    for read in (lambda: list(iter_frames(path, 10, (32, 24))),"
        " lambda: read_audio(path, 16000)):\n"
        "        try:\n            read()\n        except DecodeError:\n            pass\n"
        "print('survived')\n"
    )
    command = [sys.executable, "-c", script, *(str(files[name]) for name in names)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "survived"
