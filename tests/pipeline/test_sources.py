"""Where videos and annotations come from, and shards of videos."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.config import validate_config
from pipeline.sources import annotations_path, list_videos, shard


def _dataset(**keys) -> dict:
    """A validated ``dataset`` section with ``keys`` set."""
    return validate_config({"dataset": keys})["dataset"]


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not decoded at listing time")


def test_list_videos_ids_from_stems(tmp_path):
    folder = tmp_path / "videos"
    _touch(folder, "b.mkv", "-0vO0a0Lyvc.mp4", "c.MP4", "abc_123.x.webm", "notes.txt", "x.json")
    (folder / "dir.mp4").mkdir()  # a folder is never a video
    videos = list_videos(_dataset(source="videos", videos_dir=str(folder)))
    assert list(videos) == ["-0vO0a0Lyvc", "abc_123.x", "b", "c"]  # sorted by id
    assert videos["b"] == str(folder / "b.mkv")
    assert videos["c"] == str(folder / "c.MP4")  # extensions match case-insensitively
    assert videos["abc_123.x"] == str(folder / "abc_123.x.webm")


def test_list_videos_custom_extensions(tmp_path):
    _touch(tmp_path, "a.mp4", "b.ts")
    videos = list_videos(
        _dataset(source="videos", videos_dir=str(tmp_path), video_extensions=[".ts"])
    )
    assert videos == {"b": str(tmp_path / "b.ts")}


def test_list_videos_refuses_duplicate_stems_naming_both(tmp_path):
    _touch(tmp_path, "a.mp4", "a.mkv", "b.mp4")
    with pytest.raises(ValueError, match="'a'") as info:
        list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))
    assert str(tmp_path / "a.mp4") in str(info.value)
    assert str(tmp_path / "a.mkv") in str(info.value)


def test_list_videos_refuses_an_escaping_name(tmp_path):
    _touch(tmp_path, "a.mp4", "my clip.mp4")  # a space is not allowed in an id
    with pytest.raises(ValueError, match="not allowed") as info:
        list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))
    assert str(tmp_path / "my clip.mp4") in str(info.value)


def test_list_videos_skips_hidden_files_with_one_warning(tmp_path, caplog):
    _touch(tmp_path, "clip.mp4", "._clip.mp4", ".hidden.mkv", ".DS_Store", "b.mkv")
    with caplog.at_level(logging.WARNING, logger="pipeline.sources"):
        videos = list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))
    assert videos == {"b": str(tmp_path / "b.mkv"), "clip": str(tmp_path / "clip.mp4")}
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "skipped 2 hidden file(s)" in warnings[0]  # .DS_Store has no video extension
    assert "._clip.mp4, .hidden.mkv" in warnings[0] and str(tmp_path) in warnings[0]


def test_list_videos_lists_at_most_five_hidden_names(tmp_path, caplog):
    _touch(tmp_path, "a.mp4", *(f"._{index}.mp4" for index in range(7)))
    with caplog.at_level(logging.WARNING, logger="pipeline.sources"):
        assert list(list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))) == ["a"]
    (message,) = [record.getMessage() for record in caplog.records]
    assert "skipped 7 hidden file(s)" in message
    assert message.endswith("._0.mp4, ._1.mp4, ._2.mp4, ._3.mp4, ._4.mp4, ...")


def test_list_videos_no_warning_without_hidden_files(tmp_path, caplog):
    _touch(tmp_path, "a.mp4", ".DS_Store")
    with caplog.at_level(logging.WARNING, logger="pipeline.sources"):
        list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))
    assert caplog.records == []


def test_list_videos_only_hidden_files_is_an_empty_folder(tmp_path):
    _touch(tmp_path, "._a.mp4", "._b.mp4")
    with pytest.raises(FileNotFoundError, match=r"holds no video.*\(2 hidden file\(s\) skipped\)"):
        list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))


def test_list_videos_empty_folder(tmp_path):
    _touch(tmp_path, "readme.txt")
    with pytest.raises(FileNotFoundError, match="holds no video") as info:
        list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))
    assert str(tmp_path) in str(info.value)


def test_list_videos_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="not a folder") as info:
        list_videos(_dataset(source="videos", videos_dir=str(missing)))
    assert str(missing) in str(info.value)


def test_list_videos_needs_a_folder():
    with pytest.raises(ValueError, match=r"dataset\.videos_dir"):
        list_videos(_dataset(source="videos"))


def test_list_videos_synth_ids_without_rendering():
    dataset = _dataset(name="tiny", source="synth", synth={"size": "tiny", "seed": 3})
    videos = list_videos(dataset)
    assert list(videos) == [f"tiny_s3_{index:04d}" for index in range(6)]
    assert videos["tiny_s3_0002"] == "results/tiny/videos/tiny_s3_0002.mp4"


def test_annotations_path():
    assert annotations_path(_dataset(name="tiny")) == "results/tiny/annotations.json"
    assert annotations_path(_dataset(source="videos", videos_dir="v")) is None
    dataset = _dataset(source="videos", videos_dir="v", annotations="ann/unav.json")
    assert annotations_path(dataset) == "ann/unav.json"


def test_shard_groups_consecutive_ids():
    ids = [f"v{i}" for i in range(7)]
    assert shard(ids, 3) == [["v0", "v1", "v2"], ["v3", "v4", "v5"], ["v6"]]
    assert shard(ids, 7) == [ids]
    assert shard(ids, 100) == [ids]
    assert shard(ids, 1) == [[i] for i in ids]
    assert shard([], 4) == []


def test_shard_refuses_a_size_below_one():
    with pytest.raises(ValueError, match=r"extraction\.shard_size"):
        shard(["a"], 0)
