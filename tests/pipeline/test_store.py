import json
import os

import numpy as np
import pytest
import zarr

from pipeline.store import (
    CorruptStoreError,
    StoreError,
    StoreInfo,
    VideoFeatures,
    is_complete,
    open_store,
    read_store,
    stream_store,
    verify_store,
    write_store,
)


def _features(num_snippets=7, visual_dim=5, audio_dim=3, seed=0):
    rng = np.random.default_rng(seed)
    starts = np.arange(num_snippets) * 0.32
    return {
        "visual": rng.normal(size=(num_snippets, visual_dim)).astype(np.float32),
        "audio": rng.normal(size=(num_snippets, audio_dim)).astype(np.float32),
        "timestamps": np.stack([starts, starts + 0.96], axis=1),
        "attrs": {
            "video_id": "v1",
            "window_s": 0.96,
            "stride_s": 0.32,
            "config_hash": "abc",
            "audio_present": True,
            "video": {"duration_s": 3.0},
        },
    }


def test_round_trip(tmp_path):
    features = _features()
    features["attrs"]["source_file"] = {"size": 5, "mtime_ns": 6}  # pipeline.sources.file_stamp
    grid = np.ones((7, 2, 3, 4), dtype=np.float32)
    path = write_store(tmp_path / "v1.zarr", visual_grid=grid, **features)
    loaded = read_store(path, with_grid=True)
    np.testing.assert_array_equal(loaded.visual, features["visual"])
    np.testing.assert_array_equal(loaded.audio, features["audio"])
    np.testing.assert_array_equal(loaded.timestamps, features["timestamps"])
    np.testing.assert_allclose(loaded.centres, features["timestamps"][:, 0] + 0.48)
    np.testing.assert_array_equal(loaded.visual_grid, grid)
    group = open_store(path)
    np.testing.assert_allclose(group["centres"][...], loaded.centres)
    assert loaded.attrs["num_snippets"] == 7
    assert loaded.attrs["complete"] is True
    assert is_complete(path, "abc") and not is_complete(path, "other")
    # the source file's stamp: the file the store was extracted from, unchanged
    assert is_complete(path, "abc", {"size": 5, "mtime_ns": 6})
    assert not is_complete(path, "abc", {"size": 5, "mtime_ns": 7})
    # Nothing but the store is left in the folder (no temporary names).
    assert [p.name for p in tmp_path.iterdir()] == ["v1.zarr"]


def test_chunks_are_along_time_and_about_one_mebibyte(tmp_path):
    features = _features(num_snippets=3000, visual_dim=512)
    path = write_store(tmp_path / "v.zarr", **features)
    visual = zarr.open_group(path, mode="r")["visual"]
    assert visual.chunks[1] == 512
    assert visual.chunks[0] * 512 * 4 == 1 << 19 or visual.chunks[0] == 512
    assert 0.25 * (1 << 20) <= visual.chunks[0] * 512 * 4 <= (1 << 20)


def test_interrupted_writer_leaves_no_finished_store(tmp_path, monkeypatch):
    path = tmp_path / "v.zarr"

    real_replace = os.replace

    def killed_before_rename(src, dst, *args, **kwargs):
        # Zarr renames its own files too: only the store's final rename is interrupted.
        if str(dst) == str(path):
            raise KeyboardInterrupt
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        write_store(path, **_features())
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    assert not is_complete(path)


def test_store_without_complete_flag_is_refused(tmp_path):
    path = tmp_path / "v.zarr"
    write_store(path, **_features())
    attrs = json.loads((path / "zarr.json").read_text())
    del attrs["attributes"]["complete"]
    (path / "zarr.json").write_text(json.dumps(attrs))
    with pytest.raises(StoreError, match="incomplete"):
        read_store(path)


def test_overwrite_replaces_old_store(tmp_path):
    path = tmp_path / "v.zarr"
    write_store(path, **_features(seed=0))
    new = _features(num_snippets=4, seed=1)
    write_store(path, **new)
    np.testing.assert_array_equal(read_store(path).visual, new["visual"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audio": np.zeros((6, 3), np.float32)}, "6 rows"),
        ({"visual": np.full((7, 5), np.nan, np.float32)}, "NaN"),
        ({"timestamps": np.zeros((7, 3))}, r"\(T, 2\)"),
    ],
)
def test_inconsistent_arrays_are_refused(tmp_path, change, message):
    features = {**_features(), **change}
    with pytest.raises(StoreError, match=message):
        write_store(tmp_path / "v.zarr", **features)
    assert not (tmp_path / "v.zarr").exists()


def test_missing_store_is_named(tmp_path):
    with pytest.raises(StoreError, match=r"nope\.zarr"):
        read_store(tmp_path / "nope.zarr")
    with pytest.raises(StoreError, match=r"without_grid\.zarr"):
        write_store(tmp_path / "without_grid.zarr", **_features())
        read_store(tmp_path / "without_grid.zarr", with_grid=True)


def _full_attrs():
    """Attributes as the extraction writes them (JSON ints where it may write ints)."""
    return {
        **_features()["attrs"],
        "fps": 8,
        "sample_rate": 16000,
        "source": "videos/v1.mp4",
        "encoders": {"visual": {"name": "classic", "dim": 5}, "audio": {"name": "c", "dim": 3}},
        "settings": {"fps": 8, "window_s": 0.96, "stride_s": 0.32},
        "video": {"duration_s": 3, "fps": 25.0, "width": 64, "height": 48},
    }


def _drop_attribute(path, key):
    """Remove one attribute from a finished store's metadata, as a damaged store would lack it."""
    metadata = json.loads((path / "zarr.json").read_text())
    del metadata["attributes"][key]
    (path / "zarr.json").write_text(json.dumps(metadata))


def test_open_store_types_the_attributes_and_reads_arrays_lazily(tmp_path):
    features = {**_features(), "attrs": _full_attrs()}
    path = write_store(tmp_path / "v1.zarr", **features)
    store = open_store(path)
    info = store.info
    assert isinstance(info, StoreInfo) and info.where == str(path)
    assert (info.video_id, info.config_hash, info.num_snippets) == ("v1", "abc", 7)
    assert (info.window_s, info.stride_s, info.audio_present) == (0.96, 0.32, True)
    assert type(info.fps) is float and info.fps == 8.0
    assert type(info.duration_s) is float and info.duration_s == 3.0
    assert (info.video_fps, info.frame_size, info.sample_rate) == (25.0, (64, 48), 16000)
    assert info.video_path == "videos/v1.mp4" and info.settings["stride_s"] == 0.32
    assert info.dims == {"visual": 5, "audio": 3} and info.has_visual_grid is False
    assert info.require("duration_s") == 3.0
    # arrays stay on disk until sliced
    assert isinstance(store["visual"], zarr.Array)
    np.testing.assert_array_equal(store["visual"][2:4], features["visual"][2:4])
    with pytest.raises(StoreError, match=r"v1\.zarr has no array 'visual_grid'"):
        store["visual_grid"]
    assert read_store(path).info == info


def test_optional_attributes_are_none_until_required(tmp_path):
    path = write_store(tmp_path / "v1.zarr", **_features())  # no fps, encoders, settings
    info = read_store(path).info
    assert (info.fps, info.settings, info.frame_size, info.encoders) == (None, None, None, {})
    with pytest.raises(StoreError, match=r"v1\.zarr: attribute 'fps' is missing"):
        info.require("fps")
    with pytest.raises(StoreError, match=r"v1\.zarr: attribute 'encoders\.visual\.dim'"):
        _ = info.dims


@pytest.mark.parametrize("key", ["stride_s", "audio_present", "video_id", "num_snippets"])
def test_store_missing_an_attribute_names_the_store_and_the_key(tmp_path, key):
    path = write_store(tmp_path / "v1.zarr", **_features())
    _drop_attribute(path, key)
    with pytest.raises(StoreError, match=rf"v1\.zarr: attribute '{key}' is missing"):
        open_store(path)
    with pytest.raises(StoreError, match=rf"attribute '{key}'"):
        read_store(path)
    assert not is_complete(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("stride_s", "0.32", r"'stride_s' is '0\.32', not a finite number"),
        ("window_s", 0, r"'window_s' is 0, not a positive number"),
        ("audio_present", 1, r"'audio_present' is 1, not of type bool"),
        ("num_snippets", 7.0, r"'num_snippets' is 7\.0, not of type int"),
        ("encoders", {"visual": {"dim": "5"}}, r"'encoders\.visual\.dim' is '5'"),
    ],
)
def test_mistyped_attribute_is_refused(tmp_path, key, value, message):
    path = write_store(tmp_path / "v1.zarr", **_features())
    metadata = json.loads((path / "zarr.json").read_text())
    metadata["attributes"][key] = value
    (path / "zarr.json").write_text(json.dumps(metadata))
    with pytest.raises(StoreError, match=message) as info:
        open_store(path)
    assert str(path) in str(info.value)


def test_read_store_refuses_nan_features(tmp_path):
    path = write_store(tmp_path / "v1.zarr", **_features())
    group = zarr.open_group(path, mode="r+")
    audio = group["audio"][...]
    audio[3, 0] = np.inf
    group["audio"][...] = audio
    open_store(path)  # attributes are fine: opening reads no feature row
    with pytest.raises(StoreError, match=r"v1\.zarr: array 'audio' contains NaN or infinite"):
        read_store(path)


def test_features_in_memory_have_typed_attributes_too():
    features = _features()
    in_memory = VideoFeatures(video_id="v1", **features)
    assert in_memory.info.num_snippets == 7 and in_memory.info.stride_s == 0.32
    with pytest.raises(StoreError, match="features of video v1: attribute 'config_hash'"):
        VideoFeatures(
            video_id="v1",
            **{
                **features,
                "attrs": {k: v for k, v in features["attrs"].items() if k != "config_hash"},
            },
        )


# --- checksums ---------------------------------------------------------------------------------


def _damage(chunk, how: str) -> None:
    """Damage one chunk file as a failing disk or an interrupted copy would."""
    data = bytearray(chunk.read_bytes())
    if how == "flipped":
        for position in range(len(data) // 2, len(data) // 2 + 8):
            data[position] ^= 0xFF
        chunk.write_bytes(bytes(data))
    elif how == "truncated":
        chunk.write_bytes(bytes(data[: len(data) // 2]))
    else:  # removed: Zarr would read the rows as zeros, without an error
        chunk.unlink()


def test_a_store_records_the_checksum_of_every_array(tmp_path):
    grid = np.ones((7, 2, 3, 4), dtype=np.float32)
    path = write_store(tmp_path / "v.zarr", visual_grid=grid, **_features())
    store = open_store(path)
    checksums = store.info.attrs["checksums"]
    assert sorted(checksums) == ["audio", "centres", "timestamps", "visual", "visual_grid"]
    assert all(value.startswith("sha256:") and len(value) == 7 + 64 for value in checksums.values())
    assert verify_store(store) is True
    rewritten = write_store(tmp_path / "w.zarr", visual_grid=grid, **_features())
    assert open_store(rewritten).info.attrs["checksums"] == checksums  # same data, same sums


@pytest.mark.parametrize("how", ["flipped", "truncated", "removed"])
def test_a_damaged_chunk_is_found_naming_the_store_and_the_array(tmp_path, how):
    path = write_store(tmp_path / "v1.zarr", **_features(num_snippets=40, visual_dim=64))
    _damage(path / "visual" / "c" / "0" / "0", how)
    store = open_store(path)  # the attributes are intact
    with pytest.raises(
        CorruptStoreError, match="array 'visual' does not match its checksum"
    ) as info:
        verify_store(store)
    assert str(path) in str(info.value) and "extract it again" in str(info.value)


def test_a_store_written_before_checksums_is_readable_and_unverified(tmp_path):
    features = _features()
    path = write_store(tmp_path / "v.zarr", **features)
    _drop_attribute(path, "checksums")
    assert verify_store(open_store(path)) is False
    np.testing.assert_array_equal(read_store(path).visual, features["visual"])


def test_reading_a_chunk_that_does_not_decode_names_the_store_and_the_array(tmp_path):
    path = write_store(tmp_path / "v1.zarr", **_features(num_snippets=40, visual_dim=64))
    chunk = path / "visual" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[40:60] = bytes(byte ^ 0xFF for byte in data[40:60])  # the compressed frame's header
    chunk.write_bytes(bytes(data))  # (a flip inside its data may decode, silently wrong)
    with pytest.raises(CorruptStoreError, match=r"v1\.zarr: array 'visual' has a chunk") as info:
        read_store(path)  # was: RuntimeError: error during blosc decompression: -1
    assert "--forcerun index" in str(info.value)


# --- streamed writing --------------------------------------------------------------------------


def _files(path):
    """Each file of a store: its bytes, or for a ``zarr.json`` its parsed metadata."""
    return {
        str(file.relative_to(path)): json.loads(file.read_text())
        if file.name == "zarr.json"
        else file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def test_a_store_streamed_in_blocks_is_the_store_written_whole(tmp_path):
    features = _features(num_snippets=700, visual_dim=512)  # visual: 2 chunks of 512 rows
    grid = np.random.default_rng(1).normal(size=(700, 2, 3, 4)).astype(np.float32)
    whole = write_store(tmp_path / "whole.zarr", visual_grid=grid, **features)
    with stream_store(tmp_path / "streamed.zarr", timestamps=features["timestamps"]) as writer:
        for start in range(0, 700, 64):
            writer.append("visual", features["visual"][start : start + 64])
            writer.append("visual_grid", grid[start : start + 64])
        for start in range(0, 700, 100):  # the arrays need not go in step
            writer.append("audio", features["audio"][start : start + 100])
        writer.finish(features["attrs"])
    assert _files(tmp_path / "streamed.zarr") == _files(whole)


@pytest.mark.parametrize(
    ("visual_rows", "finish", "message"),
    [
        (8, True, "more rows than the grid's 7 snippets"),
        (6, True, "array 'visual' has 6 rows but the grid has 7 snippets"),
        (7, False, "left unfinished"),
    ],
)
def test_a_streamed_store_with_missing_rows_is_refused_and_removed(
    tmp_path, visual_rows, finish, message
):
    features = _features()
    with (
        pytest.raises(StoreError, match=message),
        stream_store(tmp_path / "v.zarr", timestamps=features["timestamps"]) as writer,
    ):
        writer.append("audio", features["audio"])
        writer.append("visual", np.zeros((visual_rows, 5), np.float32))
        if finish:
            writer.finish(features["attrs"])
    assert list(tmp_path.iterdir()) == []
