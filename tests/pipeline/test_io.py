"""pipeline.io: JSON reading with errors that name the file, atomic writes, stable hashes."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.io import atomic_path, read_json, stable_hash, write_json_atomic, write_text_atomic


def test_read_json_round_trip(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"b": [1, 2.5, None]}, indent=1)
    assert read_json(path, "test file") == {"b": [1, 2.5, None]}


def test_read_json_missing_file_names_it_and_the_hint(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError) as raised:
        read_json(missing, "feature index", hint="run the extraction first")
    assert str(raised.value) == f"feature index {missing} does not exist; run the extraction first"
    with pytest.raises(FileNotFoundError, match=r"^boxes file .*nowhere\.json does not exist$"):
        read_json(missing, "boxes file")


def test_read_json_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"videos": {"a": 1')  # a half-written file
    with pytest.raises(ValueError, match=r"^feature index .*cut\.json is not valid JSON \("):
        read_json(path, "feature index")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"cut\.json is not valid JSON"):
        read_json(path, "feature index")


def test_write_json_keeps_dumps_arguments(tmp_path):
    value = {"b": 1, "a": [1, 2]}
    path = write_json_atomic(tmp_path / "deep" / "x.json", value, separators=(",", ":"))
    assert path.read_text() == '{"b":1,"a":[1,2]}'
    write_json_atomic(path, value, indent=1, sort_keys=True)
    assert path.read_text() == json.dumps(value, indent=1, sort_keys=True)
    assert os.listdir(path.parent) == ["x.json"]  # no temporary file left


def test_write_text_atomic_replaces_and_keeps_utf8(tmp_path):
    path = tmp_path / "table.md"
    path.write_text("old")
    assert write_text_atomic(path, "mean ± std – ok\n") == path
    assert path.read_bytes() == "mean ± std – ok\n".encode()
    assert os.listdir(tmp_path) == ["table.md"]


def test_failed_write_leaves_no_temporary_file_and_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("finished")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as temp_path:
        temp_path.write_text("half")
        assert temp_path.parent == tmp_path and temp_path.name.startswith(".metrics.json.")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["metrics.json"]
    assert path.read_text() == "finished"
    with pytest.raises(TypeError):  # not serialisable: nothing is written
        write_json_atomic(path, {"a": object()})
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_rename_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a non-empty folder: the rename fails
    with pytest.raises(OSError):
        write_text_atomic(target, "text")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_atomic_path_suffix_for_writers_that_add_an_extension(tmp_path):
    import numpy as np

    path = tmp_path / "features.npz"
    with atomic_path(path, suffix=".part.npz") as temp_path:
        np.savez(temp_path, x=np.arange(3))  # np.savez adds .npz unless the name ends in it
    assert os.listdir(tmp_path) == ["features.npz"]
    with np.load(path) as data:
        np.testing.assert_array_equal(data["x"], [0, 1, 2])


def test_stable_hash_ignores_key_order_but_not_values():
    first = stable_hash({"a": 1, "b": {"c": [1, 2], "d": None}})
    assert first == stable_hash({"b": {"d": None, "c": [1, 2]}, "a": 1})
    assert first != stable_hash({"a": 1, "b": {"c": [2, 1], "d": None}})
    assert len(first) == 12 and len(stable_hash([1], length=20)) == 20
    # pinned: feature stores record this hash, so a change would re-extract every store
    assert stable_hash({"a": 1}) == "015abd7f5cc5"
