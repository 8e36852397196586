"""Stage 1 extraction: frame sampling, clip streaming, audio windows, videos and shards."""

from __future__ import annotations

import json
import logging
import os
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import decode_audio, video_extraction
from pipeline.config import extraction_settings, validate_config
from pipeline.decode import (
    MAX_DAMAGED_FRACTION,
    DecodeError,
    frame_indices,
    iter_audio,
    read_audio,
    snippet_grid,
)
from pipeline.encoders import (
    AudioEncoder,
    VisualEncoder,
    build_audio_encoder,
    build_visual_encoder,
)
from pipeline.extract import extract_shard, extract_video, extract_video_to_store
from pipeline.ids import check_video_id
from pipeline.index import build_index
from pipeline.sources import file_stamp
from pipeline.store import StoreWriter, is_complete, read_store
from pipeline.video_extraction import audio_windows, iter_clips, settings_hash
from tests import media


def _features_hash(settings: dict) -> str:
    """The hash extraction records for ``settings`` with its encoders built as a job builds them."""
    return settings_hash(
        settings,
        build_visual_encoder(settings["visual"], device="cpu"),
        build_audio_encoder(settings["audio"], device="cpu"),
    )


def _settings(**extraction: Any) -> dict[str, Any]:
    """Default extraction settings (classic encoders) with ``extraction`` overrides."""
    return extraction_settings(validate_config({"extraction": extraction}))


class FrameIndexEncoder(VisualEncoder):
    """Test encoder: for each sampled frame, the source index that :mod:`tests.media` drew in it.

    Args:
        frames_per_snippet: frames sampled per snippet.
    """

    name = "frame_index"

    def __init__(self, frames_per_snippet: int = 4) -> None:
        self.frames_per_snippet = frames_per_snippet
        self.frame_size = (32, 24)
        self.dim = frames_per_snippet

    def encode(self, clips: np.ndarray) -> np.ndarray:
        self.check_clips(clips)
        rows = [[media.frame_index(frame) for frame in clip] for clip in clips]
        return np.asarray(rows, dtype=np.float32)  # (B, F)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "frames_per_snippet": self.frames_per_snippet}


class WaveformEncoder(AudioEncoder):
    """Test encoder: returns each window's samples unchanged (at 1 kHz to keep rows short).

    Args:
        window_samples: samples per window (window_s * 1000).
    """

    name = "waveform"
    sample_rate = 1000

    def __init__(self, window_samples: int) -> None:
        self.dim = window_samples

    def encode(self, windows: np.ndarray) -> np.ndarray:
        return self.check_windows(windows).copy()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sample_rate": self.sample_rate}


# --- iter_clips --------------------------------------------------------------------------------


def _valued_frames(count: int) -> Iterator[np.ndarray]:
    for k in range(count):
        yield np.full((2, 2, 3), k, dtype=np.int64)


def test_iter_clips_takes_the_indexed_frames():
    indices = np.array([[0, 2, 4, 6], [3, 5, 7, 9], [6, 8, 9, 11]])
    clips = list(iter_clips(_valued_frames(12), indices))
    assert [snippet for snippet, _ in clips] == [0, 1, 2]
    for (_, clip), row in zip(clips, indices, strict=True):
        assert clip.shape == (4, 2, 2, 3)
        np.testing.assert_array_equal(clip[:, 0, 0, 0], row)


def test_iter_clips_pads_past_the_end_with_the_last_frame():
    # Frame 4 (the last) is not needed by any snippet, yet pads both tails.
    indices = np.array([[0, 1, 2, 3], [2, 3, 5, 6], [6, 7, 8, 9]])
    clips = list(iter_clips(_valued_frames(5), indices))
    assert [snippet for snippet, _ in clips] == [0, 1, 2]
    np.testing.assert_array_equal(clips[0][1][:, 0, 0, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(clips[1][1][:, 0, 0, 0], [2, 3, 4, 4])
    np.testing.assert_array_equal(clips[2][1][:, 0, 0, 0], [4, 4, 4, 4])
    assert all(clip.dtype == np.int64 for _, clip in clips)


def test_iter_clips_streams_with_a_bounded_buffer():
    fps, window_s, stride_s, num_frames = 8.0, 0.96, 0.32, 1000
    timestamps = snippet_grid(num_frames / fps, window_s, stride_s)
    indices = frame_indices(timestamps, 4, fps)
    alive = [0]  # frames created and not yet garbage-collected
    pulled = [0]  # frames taken from the stream
    peak_alive = [0]

    def counting_frames() -> Iterator[np.ndarray]:
        for k in range(num_frames):
            peak_alive[0] = max(peak_alive[0], alive[0])
            frame = np.full((1,), k, dtype=np.int64)
            alive[0] += 1
            weakref.finalize(frame, lambda: alive.__setitem__(0, alive[0] - 1))
            pulled[0] += 1
            yield frame
            del frame

    count = 0
    for snippet, clip in iter_clips(counting_frames(), indices):
        np.testing.assert_array_equal(clip[:, 0], indices[snippet])
        # A clip is yielded as soon as its last frame arrives, not later.
        assert pulled[0] == indices[snippet].max() + 1
        count += 1
    assert count == len(timestamps) == 388  # floor((125 - 0.96) / 0.32) + 1
    assert pulled[0] == num_frames
    # Frames held between snippets: one window's worth plus the newest frame.
    assert peak_alive[0] <= int(np.ceil(window_s * fps)) + 1


def test_iter_clips_empty_stream_raises():
    with pytest.raises(DecodeError, match="no frames"):
        list(iter_clips(iter([]), np.array([[0, 1]])))


# --- audio_windows -----------------------------------------------------------------------------


def test_audio_windows_on_a_ramp():
    sample_rate = 10
    waveform = np.arange(20, dtype=np.float32)  # 2 s ramp, sample i has value i
    timestamps = snippet_grid(2.0, 0.4, 0.5)  # starts 0, 0.5, 1.0, 1.5
    windows = audio_windows(waveform, timestamps, sample_rate)
    np.testing.assert_array_equal(
        windows,
        [[0, 1, 2, 3], [5, 6, 7, 8], [10, 11, 12, 13], [15, 16, 17, 18]],
    )


def test_audio_windows_zero_pad_past_the_end():
    sample_rate = 10
    waveform = np.arange(1, 8, dtype=np.float32)  # 0.7 s: values 1..7
    timestamps = np.array([[0.0, 0.5], [0.4, 0.9], [1.0, 1.5]])  # the last lies past the end
    windows = audio_windows(waveform, timestamps, sample_rate)
    assert windows.dtype == np.float32
    np.testing.assert_array_equal(windows, [[1, 2, 3, 4, 5], [5, 6, 7, 0, 0], [0, 0, 0, 0, 0]])


# --- check_video_id ----------------------------------------------------------------------------


@pytest.mark.parametrize("video_id", ["../x", "/abs", ".hidden", "a/b", "", "..", "a\\b", "a b"])
def test_check_video_id_refuses_escaping_names(video_id):
    with pytest.raises(ValueError, match="is not allowed"):
        check_video_id(video_id)


@pytest.mark.parametrize("video_id", ["-0vO0a0Lyvc", "abc_123.x", "tiny_s0_0001", "A", "a.b.c"])
def test_check_video_id_accepts_youtube_style_ids(video_id):
    assert check_video_id(video_id) == video_id


# --- extract_video -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Small test media written once for the module."""
    folder = tmp_path_factory.mktemp("media")
    paths = {
        name: folder / file
        for name, file in [
            ("clip", "clip.mp4"),
            ("long", "long.mp4"),
            ("silent", "silent.mp4"),
            ("vfr", "vfr.mkv"),
            ("odd", "odd.mkv"),
            ("short", "short.mp4"),
            ("garbage", "garbage.mp4"),
            ("empty_file", "empty_file.mp4"),
            ("audio_only", "audio_only.m4a"),
            ("no_frames", "no_frames.mp4"),
        ]
    }
    media.make_video(paths["clip"], duration_s=2.0, fps=10)
    media.make_video(paths["long"], duration_s=3.0, fps=10)
    media.make_video(paths["silent"], duration_s=2.0, fps=10, audio=False)
    media.make_video(paths["vfr"], duration_s=2.0, fps=10, vfr=True)
    media.make_video(paths["odd"], duration_s=2.0, fps=10, size=(63, 47), pix_fmt="yuv444p")
    media.make_video(paths["short"], duration_s=0.5, fps=10)
    media.make_garbage(paths["garbage"])
    paths["empty_file"].write_bytes(b"")
    media.make_audio_only(paths["audio_only"], duration_s=2.0)
    media.make_empty_video(paths["no_frames"])
    return paths


def _check_grid(features, settings):
    """Rows of both modalities sit on the snippet grid of the probed duration."""
    duration_s = features.attrs["video"]["duration_s"]
    grid = snippet_grid(duration_s, settings["window_s"], settings["stride_s"])
    np.testing.assert_allclose(features.timestamps, grid)
    assert features.visual.shape[0] == features.audio.shape[0] == len(grid)
    assert np.isfinite(features.visual).all() and np.isfinite(features.audio).all()


def test_extract_video_shapes_and_attributes(videos):
    settings = _settings()
    features = extract_video(videos["clip"], settings, device="cpu")
    attrs = features.attrs
    assert abs(attrs["video"]["duration_s"] - 2.0) < 0.1
    _check_grid(features, settings)
    assert features.num_snippets == 4  # floor((2.0 - 0.96) / 0.32) + 1
    visual_dim = attrs["encoders"]["visual"]["dim"]
    audio_dim = attrs["encoders"]["audio"]["dim"]
    assert features.visual.shape == (4, visual_dim) and features.visual.dtype == np.float32
    assert features.audio.shape == (4, audio_dim) and features.audio.dtype == np.float32
    assert features.visual_grid is None
    assert features.video_id == attrs["video_id"] == "clip"
    assert attrs["source"] == str(videos["clip"])
    assert (attrs["fps"], attrs["window_s"], attrs["stride_s"]) == (8.0, 0.96, 0.32)
    assert attrs["encoders"]["visual"]["name"] == attrs["encoders"]["audio"]["name"] == "classic"
    assert attrs["sample_rate"] == attrs["encoders"]["audio"]["sample_rate"] == 16000
    assert attrs["settings"] == settings
    assert attrs["config_hash"] == _features_hash(settings)
    assert (attrs["video"]["width"], attrs["video"]["height"]) == (64, 48)
    assert attrs["video"]["has_audio"] is True
    assert attrs["audio_present"] is True
    assert np.abs(features.audio).sum() > 0  # a tone, not silence
    json.dumps(attrs)  # the attributes go into the store as JSON


def test_extract_video_rows_sample_the_right_times(videos):
    """Visual rows see the frames of their window; audio rows the same window of sound."""
    settings = _settings()
    visual_encoder = FrameIndexEncoder()
    audio_encoder = WaveformEncoder(window_samples=960)
    features = extract_video(
        videos["long"],
        settings,
        visual_encoder=visual_encoder,
        audio_encoder=audio_encoder,
        batch_size=3,  # several batches, the last one short
    )
    _check_grid(features, settings)
    assert features.num_snippets == 7  # floor((3.0 - 0.96) / 0.32) + 1
    # Output frame i (8 fps) shows source frame floor(i * 10 / 8) of the 10 fps source.
    output_frames = frame_indices(features.timestamps, 4, 8.0)  # (T, 4)
    np.testing.assert_array_equal(features.visual, np.floor(output_frames * 10 / 8 + 1e-9))
    np.testing.assert_array_equal(features.visual[0], [0, 2, 5, 7])  # 0.12, 0.36, 0.60, 0.84 s
    waveform = read_audio(videos["long"], 1000)
    np.testing.assert_array_equal(
        features.audio, audio_windows(waveform, features.timestamps, 1000)
    )
    np.testing.assert_array_equal(features.audio[1], waveform[320:1280])


@pytest.mark.parametrize("concurrent", [False, True])
def test_extract_video_streams_audio_one_batch_of_windows_at_a_time(
    videos, monkeypatch, concurrent
):
    """The audio path holds one batch's windows of samples, never the whole waveform: each batch
    is encoded before the stream is read much past its last window (issue #13 item 7); decoding
    in its own thread, it runs at most three batches ahead (two queued, one being cut)."""
    pulled = [0]  # samples the decoder has handed out

    def counted_audio(*args, **kwargs):
        for block in iter_audio(*args, **kwargs):
            pulled[0] += len(block)
            yield block

    monkeypatch.setattr(video_extraction, "iter_audio", counted_audio)
    monkeypatch.setattr(decode_audio, "RESAMPLED_FRAME_S", 0.05)  # blocks of 50 samples at 1 kHz
    pulled_at_encode = []

    class RecordingEncoder(WaveformEncoder):
        def encode(self, windows: np.ndarray) -> np.ndarray:
            pulled_at_encode.append(pulled[0])
            return super().encode(windows)

    features = extract_video(
        videos["long"],
        _settings(),
        visual_encoder=FrameIndexEncoder(),
        audio_encoder=RecordingEncoder(window_samples=960),
        batch_size=1,
        concurrent=concurrent,
    )
    starts = np.round(features.timestamps[:, 0] * 1000).astype(int)  # (7,) at 1 kHz
    window_ends = starts + 960  # (7,) the last (only) window of each batch of 1
    ahead = 3 if concurrent else 0
    assert len(pulled_at_encode) == len(window_ends) == 7
    for batch, pulled_then in enumerate(pulled_at_encode):
        furthest = window_ends[min(batch + ahead, len(window_ends) - 1)]
        assert window_ends[batch] <= pulled_then < furthest + 200  # a few AAC packets' read-ahead
    assert pulled[0] == 3000  # the whole 3 s were read in the end


@pytest.mark.parametrize("name", ["long", "silent", "vfr"])
def test_concurrent_and_sequential_extraction_give_the_same_rows(videos, name):
    """Decoding in threads beside the encoders changes no value: visual, grid and audio rows
    (zeros without sound) and the attributes are those of the one-thread extraction."""
    settings = _settings(visual_grid=True)
    sequential, concurrent = (
        extract_video(videos[name], settings, device="cpu", batch_size=2, concurrent=flag)
        for flag in (False, True)
    )
    for array in ("visual", "visual_grid", "audio", "timestamps"):
        np.testing.assert_array_equal(getattr(concurrent, array), getattr(sequential, array))
    for attrs in (sequential.attrs, concurrent.attrs):
        del attrs["extraction_seconds"]
    assert concurrent.attrs == sequential.attrs
    assert concurrent.attrs["audio_present"] is (name != "silent")


@pytest.mark.parametrize(("cpus", "threaded"), [(1, False), (2, True)])
def test_extraction_decodes_in_threads_when_the_process_may_use_two_cpus(
    videos, monkeypatch, cpus, threaded
):
    started = []

    class RecordingBackground(video_extraction.Background):
        def __init__(self, items, *, depth, name):
            started.append(name)
            super().__init__(items, depth=depth, name=name)

    monkeypatch.setattr(video_extraction, "Background", RecordingBackground)
    monkeypatch.setattr(video_extraction, "usable_cpus", lambda: cpus)
    extract_video(videos["clip"], _settings(), device="cpu")
    assert started == (["decode-video", "decode-audio"] if threaded else [])


def test_extract_video_to_store_writes_batch_by_batch_what_extract_video_returns(
    videos, tmp_path, monkeypatch
):
    settings = _settings(visual_grid=True)
    features = extract_video(videos["long"], settings, device="cpu", batch_size=3)
    appended = []
    append = StoreWriter.append

    def recording_append(self, name, rows):
        appended.append((name, len(rows)))
        append(self, name, rows)

    monkeypatch.setattr(StoreWriter, "append", recording_append)
    path = extract_video_to_store(
        videos["long"], tmp_path / "long.zarr", settings, device="cpu", batch_size=3
    )
    assert [p.name for p in tmp_path.iterdir()] == ["long.zarr"]
    stored = read_store(path, with_grid=True)
    for name in ("visual", "audio", "timestamps", "visual_grid"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(features, name))
    written_only = {"num_snippets", "format_version", "has_visual_grid", "checksums", "complete"}
    stored_attrs = {k: v for k, v in stored.attrs.items() if k not in written_only}
    assert stored_attrs.pop("extraction_seconds") >= 0
    features_attrs = json.loads(json.dumps(features.attrs))
    del features_attrs["extraction_seconds"]
    assert stored_attrs == features_attrs
    # 7 snippets in batches of 3: the rows reached the store a batch at a time.
    for name in ("visual", "visual_grid", "audio"):
        assert [rows for array, rows in appended if array == name] == [3, 3, 1]


def test_extract_video_visual_grid(videos):
    settings = _settings(visual_grid=True)
    features = extract_video(videos["clip"], settings, device="cpu")
    grid_dim = features.attrs["encoders"]["visual"]["grid_dim"]
    assert features.visual_grid is not None
    assert features.visual_grid.shape == (features.num_snippets, 8, 8, grid_dim)
    assert np.isfinite(features.visual_grid).all()
    assert features.attrs["config_hash"] != _features_hash(_settings())


def test_extract_video_without_audio_gives_zero_audio(videos):
    settings = _settings()
    features = extract_video(videos["silent"], settings, device="cpu")
    _check_grid(features, settings)
    assert features.attrs["audio_present"] is False
    assert features.attrs["video"]["has_audio"] is False
    assert features.audio.shape == (
        features.num_snippets,
        features.attrs["encoders"]["audio"]["dim"],
    )
    assert not features.audio.any()
    assert features.visual.any()


@pytest.mark.parametrize("name", ["vfr", "odd"])
def test_extract_video_vfr_and_odd_resolution(videos, name):
    settings = _settings()
    features = extract_video(videos[name], settings, device="cpu")
    _check_grid(features, settings)
    assert features.num_snippets >= 3
    assert features.attrs["video"]["variable_frame_rate"] is (name == "vfr")


def test_extract_video_shorter_than_one_window(videos):
    """A 0.5 s video gets one snippet [0, 0.96]; frames past its end repeat the last one."""
    settings = _settings()
    features = extract_video(
        videos["short"],
        settings,
        visual_encoder=FrameIndexEncoder(),
        audio_encoder=WaveformEncoder(window_samples=960),
    )
    np.testing.assert_allclose(features.timestamps, [[0.0, 0.96]])
    # Times 0.12, 0.36, 0.60, 0.84 s -> output frames 0, 2, 4, 6 of 4 (0..3) -> source 0, 2, 3, 3
    # (output frame 3 at 0.375 s shows source frame 3 at 0.3 s).
    np.testing.assert_array_equal(features.visual, [[0, 2, 3, 3]])
    assert features.audio[0, :500].any() and not features.audio[0, 500:].any()


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("garbage", DecodeError, "not a readable media file"),
        ("empty_file", DecodeError, "empty"),
        ("audio_only", DecodeError, "no video stream"),
        ("no_frames", DecodeError, "zero duration"),
    ],
)
def test_extract_video_refuses_bad_files_naming_them(videos, name, error, message):
    with pytest.raises(error, match=message) as info:
        extract_video(videos[name], _settings(), device="cpu")
    assert str(videos[name]) in str(info.value)


def test_extract_video_missing_file(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError) as info:
        extract_video(missing, _settings(), device="cpu")
    assert str(missing) in str(info.value)


# --- extract_shard -----------------------------------------------------------------------------


def _mtimes(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")}


def test_extract_shard_skips_a_corrupt_video(videos, tmp_path):
    out_dir = tmp_path / "features"
    manifest_path = tmp_path / "shards" / "0.json"
    shard = [videos["clip"], videos["garbage"], videos["silent"]]
    manifest = extract_shard(
        shard,
        settings=_settings(),
        out_dir=out_dir,
        manifest_path=manifest_path,
        on_error="skip",
        device="cpu",
    )
    assert json.loads(manifest_path.read_text()) == manifest
    assert manifest["config_hash"] == _features_hash(_settings())
    assert manifest["videos"] == {
        "clip": {"store": "clip.zarr", "status": "extracted"},
        "silent": {"store": "silent.zarr", "status": "extracted"},
    }
    assert list(manifest["failed"]) == ["garbage"]
    assert str(videos["garbage"]) in manifest["failed"]["garbage"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip.zarr", "silent.zarr"]
    assert read_store(out_dir / "clip.zarr").attrs["audio_present"] is True
    assert read_store(out_dir / "silent.zarr").attrs["audio_present"] is False


def test_extract_shard_fails_naming_the_file_and_keeps_earlier_stores(videos, tmp_path):
    out_dir = tmp_path / "features"
    manifest_path = tmp_path / "shards" / "0.json"
    settings = _settings()
    with pytest.raises(DecodeError) as info:
        extract_shard(
            [videos["clip"], videos["garbage"], videos["silent"]],
            settings=settings,
            out_dir=out_dir,
            manifest_path=manifest_path,
            on_error="fail",
            device="cpu",
        )
    assert str(videos["garbage"]) in str(info.value)
    assert not manifest_path.exists()
    # The store written before the failure is whole; nothing half-written is left behind.
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip.zarr"]
    assert is_complete(out_dir / "clip.zarr", _features_hash(settings))
    assert read_store(out_dir / "clip.zarr").num_snippets == 4


def test_extract_shard_extracts_a_replaced_or_modified_video_again(videos, tmp_path):
    """A store is kept only when its video is the file it was extracted from (same size and
    modification time): a video replaced or modified in place is extracted again."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("clip", "silent"):
        shutil.copy2(videos[name], folder / f"{name}.mp4")
    shard = [folder / "clip.mp4", folder / "silent.mp4"]
    out_dir = tmp_path / "features"
    extract_shard(shard, settings=_settings(), out_dir=out_dir, manifest_path=tmp_path / "a.json")
    assert read_store(out_dir / "clip.zarr").attrs["source_file"] == file_stamp(shard[0])
    silent_before = _mtimes(out_dir / "silent.zarr")

    shutil.copy(videos["long"], folder / "clip.mp4")  # another video under the same name
    second = extract_shard(
        shard, settings=_settings(), out_dir=out_dir, manifest_path=tmp_path / "b.json"
    )
    assert second["videos"]["clip"]["status"] == "extracted"
    assert second["videos"]["silent"]["status"] == "cached"
    assert _mtimes(out_dir / "silent.zarr") == silent_before
    # the 3 s video's grid, floor((3 - 0.96) / 0.32) + 1 snippets, not the 2 s one's 4
    assert read_store(out_dir / "clip.zarr").num_snippets == 7

    stamp = file_stamp(folder / "silent.mp4")  # touched: same bytes, a newer time
    os.utime(folder / "silent.mp4", ns=(stamp["mtime_ns"] + 10**9, stamp["mtime_ns"] + 10**9))
    third = extract_shard(
        shard, settings=_settings(), out_dir=out_dir, manifest_path=tmp_path / "c.json"
    )
    assert third["videos"]["clip"]["status"] == "cached"
    assert third["videos"]["silent"]["status"] == "extracted"


def test_extract_shard_refuses_an_unknown_error_policy(videos, tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        extract_shard(
            [videos["clip"]],
            settings=_settings(),
            out_dir=tmp_path,
            manifest_path=tmp_path / "0.json",
            on_error="ignore",
        )


def test_extract_shard_resumes_and_reextracts_on_changed_settings(videos, tmp_path):
    out_dir = tmp_path / "features"
    shard = [videos["clip"], videos["silent"]]
    first = extract_shard(
        shard, settings=_settings(), out_dir=out_dir, manifest_path=tmp_path / "a.json"
    )
    assert {v["status"] for v in first["videos"].values()} == {"extracted"}
    # A killed job: only "clip" survived; "silent" must be extracted again, "clip" kept.
    before = _mtimes(out_dir / "clip.zarr")
    inode = (out_dir / "clip.zarr").stat().st_ino
    os.rename(out_dir / "silent.zarr", tmp_path / "moved.zarr")
    second = extract_shard(
        shard, settings=_settings(), out_dir=out_dir, manifest_path=tmp_path / "b.json"
    )
    assert second["videos"]["clip"]["status"] == "cached"
    assert second["videos"]["silent"]["status"] == "extracted"
    assert _mtimes(out_dir / "clip.zarr") == before
    assert (out_dir / "clip.zarr").stat().st_ino == inode
    # A changed setting changes the hash: both stores are written again with it.
    changed = _settings(stride_s=0.5)
    third = extract_shard(
        shard, settings=changed, out_dir=out_dir, manifest_path=tmp_path / "c.json"
    )
    assert {v["status"] for v in third["videos"].values()} == {"extracted"}
    assert third["config_hash"] == _features_hash(changed) != first["config_hash"]
    store = read_store(out_dir / "clip.zarr")
    assert store.attrs["stride_s"] == 0.5
    assert store.num_snippets == 3  # floor((2.0 - 0.96) / 0.5) + 1
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []


def test_extract_shard_removes_temporary_stores_of_its_killed_writers(videos, tmp_path):
    out_dir = tmp_path / "features"
    for name in (".clip.zarr.tmp-0123abcd", ".other.zarr.tmp-0123abcd"):
        (out_dir / name / "visual").mkdir(parents=True)  # a writer killed mid-store
    manifest = extract_shard(
        [videos["clip"]], settings=_settings(), out_dir=out_dir, manifest_path=tmp_path / "0.json"
    )
    assert manifest["videos"]["clip"]["status"] == "extracted"
    # Another shard's video may be being written right now: its temporary store stays.
    assert sorted(p.name for p in out_dir.iterdir()) == [".other.zarr.tmp-0123abcd", "clip.zarr"]


def test_extract_cli_reports_a_bad_file(videos, tmp_path, capsys):
    from pipeline.extract import main

    settings = json.dumps(_settings())
    argv = [str(videos["garbage"]), "--settings", settings, "--out-dir", str(tmp_path)]
    argv += ["--manifest", str(tmp_path / "0.json"), "--device", "cpu"]
    assert main(argv) == 1
    assert str(videos["garbage"]) in capsys.readouterr().err
    assert main([*argv, "--on-error", "skip"]) == 0
    manifest = json.loads((tmp_path / "0.json").read_text())
    assert manifest["videos"] == {} and list(manifest["failed"]) == ["garbage"]


# --- damaged, rotated and real-world videos (issue #13 items 2, 11) ---------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """An MPEG-4 + AC3 clip and a copy with two undecodable AC3 packets; an upright clip with a
    corner mark and a copy whose display matrix turns it a quarter turn clockwise."""
    folder = tmp_path_factory.mktemp("hostile")
    paths = {
        name: folder / file
        for name, file in [
            ("clean", "clean.mkv"),
            ("damaged", "damaged.mkv"),
            ("upright", "upright.mp4"),
            ("turned", "turned.mp4"),
        ]
    }
    media.make_video(paths["clean"], codec="mpeg4", audio_codec="ac3", sample_rate=48000)
    media.make_damaged_copy(paths["clean"], paths["damaged"], kind="audio", packets={0, 30})
    media.make_video(paths["upright"], audio=False, corner_mark=True)
    media.make_rotated_copy(paths["upright"], paths["turned"], rotation=-90)
    return paths


def test_max_damaged_fraction_default_is_the_decoders():
    assert _settings() == extraction_settings(validate_config({}))  # not a features setting
    config = validate_config({})
    assert config["extraction"]["max_damaged_fraction"] == MAX_DAMAGED_FRACTION == 0.05


def test_extract_records_decode_errors_in_the_store_and_the_index(hostile, tmp_path, caplog):
    out_dir = tmp_path / "features"
    with caplog.at_level(logging.WARNING, logger="pipeline.stream_damage"):
        manifest = extract_shard(
            [hostile["clean"], hostile["damaged"]],
            settings=_settings(),
            out_dir=out_dir,
            manifest_path=out_dir / "shards" / "0.json",
            device="cpu",
        )
    assert set(manifest["videos"]) == {"clean", "damaged"} and manifest["failed"] == {}
    assert read_store(out_dir / "clean.zarr").attrs["decode_errors"] == {}
    damaged = read_store(out_dir / "damaged.zarr").attrs["decode_errors"]
    assert list(damaged) == ["audio"]
    assert (damaged["audio"]["packets"], damaged["audio"]["frames"]) == (2, 0)
    assert damaged["audio"]["seconds"] == pytest.approx(0.064)
    assert damaged["audio"]["packets_read"] == 63
    assert damaged["audio"]["fraction"] == pytest.approx(0.064 / 2.011, abs=1e-3)
    assert any(str(hostile["damaged"]) in r.getMessage() for r in caplog.records)
    index = build_index(
        [out_dir / "shards" / "0.json"],
        index_path=out_dir / "index.json",
        dataset="d",
        encoder_set="c",
    )
    assert index["videos"]["damaged"]["decode_errors"] == damaged
    assert "decode_errors" not in index["videos"]["clean"]
    assert json.loads((out_dir / "index.json").read_text()) == index


@pytest.mark.parametrize("concurrent", [False, True])
def test_extract_video_to_store_leaves_nothing_when_the_audio_fails_late(
    hostile, tmp_path, concurrent
):
    """The audio stream fails after the visual rows were written: no store is left behind."""
    with pytest.raises(DecodeError, match="audio stream is damaged beyond the allowed share"):
        extract_video_to_store(
            hostile["damaged"],
            tmp_path / "damaged.zarr",
            _settings(),
            device="cpu",
            max_damaged_fraction=0.01,
            concurrent=concurrent,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_video_streams_error_comes_before_the_audio_streams(hostile, tmp_path, concurrent):
    """Both streams damaged beyond the limit: the video stream's error is raised, as a
    sequential extraction meets it first, even when the audio thread failed earlier (its
    first packet is damaged, the video's 19th of 20)."""
    both = tmp_path / "both.mkv"
    media.make_damaged_copy(hostile["damaged"], both, kind="video", packets={18})
    with pytest.raises(DecodeError, match="the video stream is damaged beyond"):
        extract_video(
            both,
            _settings(),
            device="cpu",
            batch_size=1,  # the audio rows are taken between the video's batches
            max_damaged_fraction=0.01,
            concurrent=concurrent,
        )


def test_extract_cli_fails_a_video_damaged_beyond_the_limit(hostile, tmp_path):
    """With --max-damaged-fraction 0.01 (the config's extraction.max_damaged_fraction) the two
    packets (3 % of the clip) fail the video, named with its figures."""
    from pipeline.extract import main

    argv = [str(hostile["damaged"]), "--settings", json.dumps(_settings())]
    argv += ["--out-dir", str(tmp_path), "--manifest", str(tmp_path / "0.json")]
    argv += ["--device", "cpu", "--on-error", "skip", "--max-damaged-fraction", "0.01"]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "0.json").read_text())
    assert manifest["videos"] == {}
    message = manifest["failed"]["damaged"]
    assert str(hostile["damaged"]) in message and "undecodable packet(s)" in message
    assert "more than 1.00% (extraction.max_damaged_fraction)" in message


def test_extract_turns_a_rotated_video_and_records_it(hostile):
    settings = _settings()
    upright = extract_video(hostile["upright"], settings, device="cpu")
    turned = extract_video(hostile["turned"], settings, device="cpu")
    assert upright.attrs["video"]["rotation"] == 0
    assert turned.attrs["video"]["rotation"] == 90 and turned.attrs["video"]["mirrored"] is False
    assert (turned.attrs["video"]["width"], turned.attrs["video"]["height"]) == (48, 64)
    assert turned.attrs["video"]["video_stream"] == 0
    assert not np.allclose(turned.visual, upright.visual, atol=1e-3)  # the same packets


def test_extract_megamind_avi_with_its_damage_recorded():
    """OpenCV's intact sample Megamind.avi (XVID + AC3, 11.26 s): its first AC3 packet does not
    decode; ffmpeg skips it and decodes the other 351 (the last one, short, with concealment),
    and so must extraction."""
    try:
        path = media.opencv_doc_sample("Megamind.avi")
    except media.MediaUnavailable as reason:
        pytest.skip(str(reason))
    settings = _settings()
    features = extract_video(path, settings, video_id="megamind", device="cpu")
    info = features.attrs["video"]
    assert (info["video_codec"], info["audio_codec"], info["num_frames"]) == ("mpeg4", "ac3", 270)
    assert features.attrs["audio_present"] is True
    errors = features.attrs["decode_errors"]
    assert list(errors) == ["audio"]
    assert (errors["audio"]["packets"], errors["audio"]["packets_read"]) == (1, 352)
    assert errors["audio"]["frames"] == 1  # the last packet is 27 bytes short: concealed, kept
    assert errors["audio"]["seconds"] == pytest.approx(2 * 0.032)  # 1536 samples at 48 kHz each
    _check_grid(features, settings)
    assert np.abs(features.audio).sum() > 0
