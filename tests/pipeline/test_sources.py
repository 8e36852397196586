"""Where videos and annotations come from, and shards of videos."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from pipeline.annotations import AnnotationError
from pipeline.config import validate_config
from pipeline.sources import (
    annotations_path,
    check_annotations,
    file_stamp,
    files_stamp,
    list_videos,
    shard,
)
from tests.pipeline.test_annotations import UNAV100


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


def test_list_videos_takes_any_file_name_as_an_id(tmp_path):
    """Spaces, accents (both Unicode forms), quotes, '#', '%' and braces: the ids are the stems
    as they are (their stores get safe names, pipeline.ids), and nothing is refused here: the
    last name, too long to name a store, fails at its extraction as ``on_error`` says."""
    names = ["my clip #1", "vidéo", "vide\u0301o", 'it\'s "q" 100%', "a{b}", "x" * 120 + "é" * 40]
    _touch(tmp_path, "a.mp4", *(f"{name}.mp4" for name in names))
    videos = list_videos(_dataset(source="videos", videos_dir=str(tmp_path)))
    assert list(videos) == sorted(["a", *names])
    assert all(videos[name] == str(tmp_path / f"{name}.mp4") for name in names)


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


def test_files_stamp_changes_with_any_file_and_only_then(tmp_path):
    _touch(tmp_path, "a.mp4", "b.mp4")
    paths = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    stamp = files_stamp(paths)
    assert files_stamp(paths) == stamp  # nothing changed
    assert file_stamp(paths[0]) == {
        "size": len(b"not decoded at listing time"),
        "mtime_ns": (tmp_path / "a.mp4").stat().st_mtime_ns,
    }
    changes = []
    mtime_ns = file_stamp(paths[0])["mtime_ns"]
    os.utime(paths[0], ns=(mtime_ns + 10**9, mtime_ns + 10**9))  # touched
    changes.append(files_stamp(paths))
    (tmp_path / "b.mp4").write_bytes(b"another video, same name")  # replaced
    changes.append(files_stamp(paths))
    changes.append(files_stamp([*paths, str(tmp_path / "c.mp4")]))  # one more (missing) file
    changes.append(files_stamp(paths[:1]))  # one fewer
    os.rename(paths[1], tmp_path / "d.mp4")
    changes.append(files_stamp([paths[0], str(tmp_path / "d.mp4")]))  # renamed
    assert len({stamp, *changes}) == 1 + len(changes)


def test_shard_refuses_a_size_below_one():
    with pytest.raises(ValueError, match=r"extraction\.shard_size"):
        shard(["a"], 0)


# A valid UnAV-100-format file on three raw videos, one a split; tests break one thing each.
GOOD_DATABASE = {
    video_id: {
        "duration": 10.0,
        "subset": subset,
        "annotations": [{"segment": [1.0, 4.0], "label": "dog", "label_id": 0}],
    }
    for video_id, subset in (("v0", "train"), ("v1", "validation"), ("v2", "test"))
}


def _raw_videos(tmp_path, database, **overrides):
    """A validated ``source: videos`` config over placeholder files v0..v2, the annotation file
    holding ``database``, and the listed videos (what the Snakefile has at DAG build)."""
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir(exist_ok=True)
    for video_id in ("v0", "v1", "v2"):
        (videos_dir / f"{video_id}.mp4").write_bytes(b"not decoded at DAG build")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"version": "t", "database": database}, indent=1))
    dataset = {"source": "videos", "videos_dir": str(videos_dir), "annotations": str(path)}
    config = validate_config({"dataset": dataset, **overrides})
    return config, list_videos(config["dataset"]), path


def _with_event(video_id, segment, label="dog", label_id=0):
    database = json.loads(json.dumps(GOOD_DATABASE))
    event = {"segment": segment, "label": label, "label_id": label_id}
    database[video_id]["annotations"].append(event)
    return database


def test_valid_annotations_pass_the_dag_build_check(tmp_path):
    check_annotations(*_raw_videos(tmp_path, GOOD_DATABASE)[:2])


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        (_with_event("v1", [5.0, 2.0]), "start < end"),
        (_with_event("v1", [float("nan"), 2.0]), "finite numbers"),
        (_with_event("v1", [5.0, 6.0], label="dog", label_id=1), "one label needs one id"),
    ],
)
def test_annotation_mistakes_fail_the_dag_build(tmp_path, database, problem):
    """#13 item 6: found when the DAG is built, not in the training job after the extraction;
    the message names the file, the video, the annotation and its line."""
    config, videos, path = _raw_videos(tmp_path, database)
    with pytest.raises(AnnotationError, match=problem) as caught:
        check_annotations(config, videos)
    assert (caught.value.video_id, caught.value.annotation_index) == ("v1", 1)
    assert str(path) in str(caught.value) and f"line {caught.value.line}" in str(caught.value)


def test_a_split_the_runs_read_must_exist(tmp_path):
    database = json.loads(json.dumps(GOOD_DATABASE))
    database["v2"]["subset"] = "validation"
    config, videos, path = _raw_videos(tmp_path, database)
    with pytest.raises(AnnotationError, match="no video has subset 'test'") as caught:
        check_annotations(config, videos)
    assert str(path) in str(caught.value) and "evaluate" in str(caught.value)


def test_an_annotated_video_absent_from_videos_dir(tmp_path, caplog):
    database = {**GOOD_DATABASE, "gone": GOOD_DATABASE["v2"], "gone2": GOOD_DATABASE["v2"]}
    config, videos, path = _raw_videos(tmp_path, database)
    with pytest.raises(AnnotationError, match=r"not in dataset\.videos_dir") as caught:
        check_annotations(config, videos)
    error = caught.value
    assert error.video_id == "gone" and error.line is not None and str(path) in str(error)
    assert config["dataset"]["videos_dir"] in str(error) and "'gone2'" in str(error)
    assert "training.missing: skip" in str(error)
    # Every run skipping missing videos: a warning, the job leaves them out.
    skipping = {"training": {"missing": "skip"}}
    check_annotations(*_raw_videos(tmp_path, database, **skipping)[:2])
    assert "2 annotated videos" in caplog.text and "gone" in caplog.text
    # One run that does not skip them still fails.
    runs = {"a": {"model": {"name": "actionformer"}}, "b": {"model": {"name": "actionformer"}}}
    runs["a"]["training"] = {"missing": "skip"}
    with pytest.raises(AnnotationError, match=r"runs\.b"):
        check_annotations(*_raw_videos(tmp_path, database, runs=runs)[:2])


def test_dag_build_check_reads_only_the_users_file(tmp_path):
    # The synthetic set's file is written by a job: nothing to read when the DAG is built.
    check_annotations(validate_config({}), {})
    # A UnAV-100 release's file is the user's: format and splits are checked.
    broken = tmp_path / "unav100_annotations.json"
    broken.write_text('{"version": "unav100", "database": {"a": {"subset": "train}}}')
    release = {"format": "unav100", "annotations": str(broken), "features_dir": str(tmp_path)}
    config = validate_config({"dataset": {"source": "import", "import": release}})
    with pytest.raises(AnnotationError, match="not valid JSON") as caught:
        check_annotations(config, {})
    assert str(broken) in str(caught.value) and caught.value.line == 1


@pytest.mark.skipif(not UNAV100.exists(), reason=f"{UNAV100} absent (needs ../shared/datasets)")
def test_the_real_unav100_file_passes_the_dag_build_check(tmp_path):
    """UnAV-100's real annotation file with its 10,790 videos listed (no video is read)."""
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    dataset = {"source": "videos", "videos_dir": str(videos_dir), "annotations": str(UNAV100)}
    config = validate_config({"dataset": dataset})
    ids = json.loads(UNAV100.read_text())["database"]
    videos = {video_id: str(videos_dir / f"{video_id}.mp4") for video_id in ids}
    check_annotations(config, videos)
    del videos["72f67ednp7w"]  # the file's first video, line 1 of its single line
    with pytest.raises(AnnotationError, match=r"not in dataset\.videos_dir") as caught:
        check_annotations(config, videos)
    assert caught.value.video_id == "72f67ednp7w" and caught.value.line == 1
