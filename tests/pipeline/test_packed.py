"""Tests of pipeline.packed: the packed copy holds the stores' values, refuses a stale index, and
the training dataset reads the same items from it as from the stores."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.detection.data import load_index
from pipeline.packed import PackedError, PackedFeatures, main, pack_index
from pipeline.store import CorruptStoreError, read_store
from tests.pipeline.detection.test_data import _dataset, _write_set

VIDEOS = {
    "a": (12, "train", [(0.5, 2.0, 0)]),
    "b": (30, "train", [(1.0, 6.0, 1)]),
    "c": (7, "validation", [(0.2, 1.0, 0)]),
}


@pytest.fixture()
def packed_set(tmp_path: Path) -> tuple[tuple[Path, Path, Path], Path]:
    paths = _write_set(tmp_path, VIDEOS)
    assert main(["--index", str(paths[0]), "--out", str(tmp_path / "packed")]) == 0
    return paths, tmp_path / "packed"


def test_packed_arrays_hold_every_store_row_in_index_order(packed_set) -> None:
    paths, folder = packed_set
    index = load_index(paths[0])
    packed = PackedFeatures(folder, index.content)
    assert packed.manifest["video_ids"] == ["a", "b", "c"]
    np.testing.assert_array_equal(packed.offsets, [0, 12, 42, 49])  # cumulative T
    for video_id in VIDEOS:
        stored = read_store(index.store_path(video_id))
        rows = packed.rows_of(video_id)
        np.testing.assert_array_equal(packed.array("visual")[rows], stored.visual)
        np.testing.assert_array_equal(packed.array("audio")[rows], stored.audio)
        np.testing.assert_array_equal(packed.array("centres")[rows], stored.timestamps.mean(1))
        assert packed.array("visual").dtype == np.float32
    assert sorted(path.name for path in folder.iterdir()) == [
        "audio.npy",
        "centres.npy",
        "manifest.json",
        "offsets.npy",
        "visual.npy",
    ]  # no temporary file left


def test_dataset_items_from_the_packed_copy_equal_the_stores(packed_set) -> None:
    paths, folder = packed_set
    packed = PackedFeatures(folder, load_index(paths[0]).content)
    for kwargs in ({"training": True, "max_seq_len": 8, "seed": 5}, {}):
        from_stores = _dataset(paths, **kwargs)
        from_packed = _dataset(paths, packed=packed, **kwargs)
        for epoch in range(3):
            from_stores.set_epoch(epoch)
            from_packed.set_epoch(epoch)
            for item in range(len(from_stores)):
                expected, got = from_stores[item], from_packed[item]
                assert got["offset"] == expected["offset"]
                for key in ("segments", "labels", "centres"):
                    torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
                for name in ("visual", "audio"):
                    torch.testing.assert_close(
                        got["features"][name], expected["features"][name], rtol=0, atol=0
                    )
                assert got["audio_present"] == expected["audio_present"]


def test_a_changed_index_refuses_the_packed_copy(packed_set) -> None:
    paths, folder = packed_set
    content = json.loads(paths[0].read_text())
    content["videos"]["b"]["num_snippets"] = 29  # e.g. the store was extracted again
    with pytest.raises(PackedError, match=r"packed from another index.*pack the features again"):
        PackedFeatures(folder, content)


def test_an_unfinished_copy_is_refused_naming_the_folder(packed_set) -> None:
    paths, folder = packed_set
    (folder / "manifest.json").unlink()
    with pytest.raises(PackedError, match=f"{folder}.*no manifest.json"):
        PackedFeatures(folder, load_index(paths[0]).content)


def test_a_truncated_array_is_refused(packed_set) -> None:
    paths, folder = packed_set
    np.save(folder / "audio.npy", np.zeros((40, 3), dtype=np.float32))
    packed = PackedFeatures(folder, load_index(paths[0]).content)
    with pytest.raises(PackedError, match=r"audio\.npy has 40 rows, offsets\.npy 49"):
        packed.array("audio")


def test_a_store_disagreeing_with_the_index_fails_the_pack(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, VIDEOS)
    content = json.loads(paths[0].read_text())
    content["videos"]["a"]["num_snippets"] = 13
    paths[0].write_text(json.dumps(content))
    with pytest.raises(PackedError, match=r"a\.zarr: 'visual' has 12 rows .* 13 snippets"):
        pack_index(paths[0], tmp_path / "packed")
    assert not (tmp_path / "packed" / "manifest.json").exists()
    assert not list((tmp_path / "packed").glob(".*part"))  # temporary arrays removed


def test_pickled_reader_carries_no_array(packed_set) -> None:
    paths, folder = packed_set
    packed = PackedFeatures(folder, load_index(paths[0]).content)
    packed.array("visual")  # mapped in this process
    copy = pickle.loads(pickle.dumps(packed))  # as a spawned DataLoader worker receives it
    assert copy._arrays == {}
    np.testing.assert_array_equal(copy.array("visual"), packed.array("visual"))


def test_a_damaged_store_fails_the_pack_naming_it(tmp_path: Path) -> None:
    """Packing reads through the store's reader: a chunk that does not decode is its
    CorruptStoreError (store, array, what to do), not the codec's bare error."""
    paths = _write_set(tmp_path, VIDEOS)
    chunk = tmp_path / "b.zarr" / "visual" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:8])  # truncated
    with pytest.raises(CorruptStoreError, match=r"b\.zarr: array 'visual' has a chunk"):
        pack_index(paths[0], tmp_path / "packed")
    assert not (tmp_path / "packed" / "manifest.json").exists()
