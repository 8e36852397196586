"""Tests of annotation loading and validation, on the real UnAV-100 file and malformed files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.annotations import (
    AnnotationError,
    AnnotationSet,
    Event,
    load_annotations,
    parse_annotations,
)


def shared_datasets_dir() -> Path:
    """``$AVLOC_SHARED_DATASETS``, else ``../shared/datasets`` beside the repository."""
    if os.environ.get("AVLOC_SHARED_DATASETS"):
        return Path(os.environ["AVLOC_SHARED_DATASETS"])
    return Path(__file__).parents[2] / "../shared/datasets"


UNAV100 = shared_datasets_dir() / "unav100" / "unav100_annotations.json"

# Line numbers below are those of this text (line 1 is "{").
TEMPLATE = """{
  "version": "test",
  "database": {
    "vid_a": {
      "duration": 20.0,
      "subset": "train",
      "annotations": [
        {"segment": [1.0, 5.0], "label": "dog", "label_id": 0},
        {"segment": [6.0, 9.0], "label": "cat", "label_id": 1}
      ]
    },
    "vid_b": {
      "duration": DURATION,
      "subset": "SUBSET",
      "annotations": [
        {"segment": [2.0, 8.0], "label": "cat", "label_id": 1},
        SECOND
      ]
    }
  }
}
"""
GOOD_SECOND = '{"segment": [10.0, 20.0], "label": "dog", "label_id": 0}'
VIDEO_B_LINE = 12
SECOND_ANNOTATION_LINE = 17


def write(
    tmp_path: Path, second: str = GOOD_SECOND, duration: str = "30.0", subset: str = "test"
) -> Path:
    text = TEMPLATE.replace("SECOND", second).replace("DURATION", duration)
    path = tmp_path / "annotations.json"
    path.write_text(text.replace("SUBSET", subset))
    return path


@pytest.mark.skipif(not UNAV100.exists(), reason=f"{UNAV100} absent (needs ../shared/datasets)")
def test_real_unav100_file() -> None:
    annotations = load_annotations(UNAV100)
    assert annotations.version == "unav100"
    assert len(annotations.videos) == 10_790
    assert len(annotations.labels) == 100
    assert annotations.num_events == 30_059
    sizes = {name: len(annotations.subset(name).videos) for name in ("train", "validation", "test")}
    assert sizes == {"train": 6_489, "validation": 2_134, "test": 2_167}
    assert annotations.subset("test").labels == annotations.labels
    video = annotations.videos["72f67ednp7w"]  # the file's first video
    assert video.duration_s == 47.68 and video.subset == "train"
    assert video.events[0] == Event(13.01, 15.78316, "skateboarding", 36)
    assert annotations.labels[36] == "skateboarding"
    assert parse_annotations(annotations.to_json()) == annotations


def test_valid_file_and_round_trip(tmp_path: Path) -> None:
    annotations = load_annotations(write(tmp_path))
    assert annotations.labels == ("dog", "cat")
    assert [len(v.events) for v in annotations.videos.values()] == [2, 2]
    assert annotations.videos["vid_b"].events[1] == Event(10.0, 20.0, "dog", 0)
    assert annotations.subset("train").videos.keys() == {"vid_a"}
    again = parse_annotations(json.loads(json.dumps(annotations.to_json())))
    assert isinstance(again, AnnotationSet) and again == annotations
    with pytest.raises(ValueError, match="subsets present"):
        annotations.subset("validation")


def test_segment_within_tolerance_is_clipped(tmp_path: Path) -> None:
    second = '{"segment": [-0.05, 30.08], "label": "dog", "label_id": 0}'
    event = load_annotations(write(tmp_path, second)).videos["vid_b"].events[1]
    assert (event.start_s, event.end_s) == (0.0, 30.0)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ('{"segment": [1.0, 2.0], "label": "dog"}', "missing key 'label_id'"),
        ('{"segment": [1.0, 2.0], "label": "dog", "label_id": "0"}', "'label_id' must be"),
        ('{"segment": [1.0, 2.0], "label": 5, "label_id": 0}', "'label' must be"),
        ('{"segment": [1.0], "label": "dog", "label_id": 0}', r"\[start_s, end_s\]"),
        ('{"segment": ["1", 2.0], "label": "dog", "label_id": 0}', r"\[start_s, end_s\]"),
        ('{"segment": [NaN, 2.0], "label": "dog", "label_id": 0}', "finite"),
        ('{"segment": [5.0, 2.0], "label": "dog", "label_id": 0}', "start < end"),
        ('{"segment": [3.0, 3.0], "label": "dog", "label_id": 0}', "zero-length"),
        ('{"segment": [25.0, 30.5], "label": "dog", "label_id": 0}', "outside"),
        ('{"segment": [-0.5, 2.0], "label": "dog", "label_id": 0}', "outside"),
        ('{"segment": [30.05, 30.08], "label": "dog", "label_id": 0}', "empty once clipped"),
        ('{"segment": [1.0, 2.0], "label": "dog", "label_id": 1}', "one label needs one id"),
        ('{"segment": [1.0, 2.0], "label": "bird", "label_id": 0}', "one id needs one label"),
        ('{"segment": [2.0, 8.0], "label": "cat", "label_id": 1}', "duplicate of annotation 0"),
        ("[1.0, 2.0]", "must be an object"),
    ],
)
def test_malformed_annotation_names_file_video_index_line(
    tmp_path: Path, second: str, message: str
) -> None:
    path = write(tmp_path, second)
    with pytest.raises(AnnotationError, match=message) as caught:
        load_annotations(path)
    error = caught.value
    assert (error.video_id, error.annotation_index) == ("vid_b", 1)
    assert error.line == SECOND_ANNOTATION_LINE and error.column == 9
    text = str(error)
    assert str(path) in text and "'vid_b'" in text and "annotation 1" in text
    assert f"line {SECOND_ANNOTATION_LINE}" in text


@pytest.mark.parametrize(
    ("duration", "subset", "message"),
    [
        ("-3.0", "test", "'duration' must be"),
        ('"30"', "test", "'duration' must be"),
        ("30.0", "holdout", "subset 'holdout' is not one of"),
    ],
)
def test_malformed_video_names_file_video_line(
    tmp_path: Path, duration: str, subset: str, message: str
) -> None:
    path = write(tmp_path, duration=duration, subset=subset)
    with pytest.raises(AnnotationError, match=message) as caught:
        load_annotations(path)
    assert caught.value.video_id == "vid_b" and caught.value.line == VIDEO_B_LINE
    assert str(path) in str(caught.value)


def test_allowed_subsets_widen_the_check(tmp_path: Path) -> None:
    path = write(tmp_path, subset="holdout")
    annotations = load_annotations(path, allowed_subsets=("train", "holdout"))
    assert annotations.videos["vid_b"].subset == "holdout"


def test_missing_video_key(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"version": "v",\n "database": {\n  "x": {"duration": 5, "subset": "test"}}}')
    with pytest.raises(AnnotationError, match="missing key 'annotations'") as caught:
        load_annotations(path)
    assert caught.value.video_id == "x" and caught.value.line == 3


def test_label_ids_must_be_contiguous(tmp_path: Path) -> None:
    path = write(tmp_path, '{"segment": [1.0, 2.0], "label": "bird", "label_id": 3}')
    with pytest.raises(AnnotationError, match=r"0\.\.C-1 without gaps; missing \[2\]") as caught:
        load_annotations(path)
    assert str(path) in str(caught.value)


def test_file_level_errors_give_line(tmp_path: Path) -> None:
    broken = write(tmp_path, GOOD_SECOND + ",")  # trailing comma: invalid JSON
    with pytest.raises(AnnotationError, match="not valid JSON") as caught:
        load_annotations(broken)
    assert caught.value.line == SECOND_ANNOTATION_LINE + 1
    twice = tmp_path / "twice.json"
    twice.write_text(
        TEMPLATE.replace('"vid_b"', '"vid_a"')
        .replace("SECOND", GOOD_SECOND)
        .replace("DURATION", "30.0")
        .replace("SUBSET", "test")
    )
    with pytest.raises(AnnotationError, match="'vid_a' appears twice") as caught:
        load_annotations(twice)
    assert caught.value.line == VIDEO_B_LINE
    with pytest.raises(AnnotationError, match="missing top-level key 'version'"):
        parse_annotations({"database": {}})
    with pytest.raises(AnnotationError, match="cannot read"):
        load_annotations(tmp_path / "absent.json")


def test_dict_errors_name_source_video_and_index() -> None:
    data = json.loads(write_text_only(second='{"segment": [9, 1], "label": "dog", "label_id": 0}'))
    with pytest.raises(AnnotationError, match=r"<dict>, video 'vid_b', annotation 1: ") as caught:
        parse_annotations(data)
    assert caught.value.line is None


def write_text_only(second: str) -> str:
    return TEMPLATE.replace("SECOND", second).replace("DURATION", "30.0").replace("SUBSET", "test")


@pytest.mark.parametrize("video_id", ["../../x", "/abs/x", ".hidden", "a/b", ".."])
def test_video_ids_that_could_leave_the_output_folder_are_refused(
    tmp_path: Path, video_id: str
) -> None:
    """Outputs are named after video ids (plots, events): ``../../x`` would write outside."""
    path = tmp_path / "a.json"
    path.write_text(
        TEMPLATE.replace('"vid_b"', json.dumps(video_id))
        .replace("SECOND", GOOD_SECOND)
        .replace("DURATION", "30.0")
        .replace("SUBSET", "test")
    )
    with pytest.raises(AnnotationError, match="is not allowed: use letters") as caught:
        load_annotations(path)
    assert caught.value.video_id == video_id and caught.value.line == VIDEO_B_LINE
    assert str(path) in str(caught.value)
