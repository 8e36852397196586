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
    check_against_videos,
    load_annotations,
    parse_annotations,
)
from pipeline.detection.evaluate import main as evaluate_main
from pipeline.ids import safe_name


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


def test_segment_exactly_at_the_tolerance_is_kept(tmp_path: Path) -> None:
    # Refused only beyond the tolerance: -0.1 and 30.1 with the default 0.1 s (30.0 + 0.1 is
    # the double 30.1, as parsed), -0.25 and 30.25 with 0.25 s (exact in binary).
    for tolerance, start, end in ((None, "-0.1", "30.1"), (0.25, "-0.25", "30.25")):
        second = f'{{"segment": [{start}, {end}], "label": "dog", "label_id": 0}}'
        setting = {} if tolerance is None else {"segment_tolerance_s": tolerance}
        event = load_annotations(write(tmp_path, second), **setting).videos["vid_b"].events[1]
        assert (event.start_s, event.end_s) == (0.0, 30.0)
    beyond = '{"segment": [1.0, 30.2500001], "label": "dog", "label_id": 0}'
    with pytest.raises(AnnotationError, match="outside"):
        load_annotations(write(tmp_path, beyond), segment_tolerance_s=0.25)


def test_same_segment_with_another_label_is_not_a_duplicate(tmp_path: Path) -> None:
    # vid_b's first event is [2, 8] "cat": the same segment labelled "dog" is another event
    # (UnAV-100 has such overlapping events of different classes).
    second = '{"segment": [2.0, 8.0], "label": "dog", "label_id": 0}'
    events = load_annotations(write(tmp_path, second)).videos["vid_b"].events
    assert events == (Event(2.0, 8.0, "cat", 1), Event(2.0, 8.0, "dog", 0))


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


@pytest.mark.parametrize("video_id", ["../../x", "/abs/x", ".hidden", "a/b", "..", "my vidéo #1"])
def test_any_video_id_is_kept_and_its_plots_stay_in_their_folder(
    tmp_path: Path, video_id: str
) -> None:
    """An id may be any name (#13 item 5), and none leaves the output folder (item 1): the
    evaluation's timeline of ``../../x`` is named after its safe name, inside the plots folder."""
    path = tmp_path / "a.json"
    path.write_text(
        TEMPLATE.replace('"vid_b"', json.dumps(video_id))
        .replace("SECOND", GOOD_SECOND)
        .replace("DURATION", "30.0")
        .replace("SUBSET", "test")
    )
    assert load_annotations(path).videos[video_id].duration_s == 30.0
    events = tmp_path / "events.json"
    detection = {"segment": [2.0, 8.0], "label": "cat", "score": 0.9}
    events.write_text(json.dumps({"results": {video_id: [detection]}}))
    plots = tmp_path / "run" / "plots"
    arguments = ["--annotations", str(path), "--events", str(events), "--plots", str(plots)]
    assert evaluate_main([*arguments, "--out", str(tmp_path / "run" / "metrics.json")]) == 0
    assert (plots / f"timeline_{safe_name(video_id)}.png").is_file()
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {
        "a.json",
        "events.json",
        "run/metrics.json",
        "run/plots/per_class_ap.png",
        f"run/plots/timeline_{safe_name(video_id)}.png",
    }


@pytest.mark.parametrize("video_id", ["", "x" * 300])
def test_a_video_id_no_file_can_be_named_after_is_refused(tmp_path: Path, video_id: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(
        TEMPLATE.replace('"vid_b"', json.dumps(video_id))
        .replace("SECOND", GOOD_SECOND)
        .replace("DURATION", "30.0")
        .replace("SUBSET", "test")
    )
    with pytest.raises(AnnotationError, match="video id") as caught:
        load_annotations(path)
    assert caught.value.video_id == video_id and caught.value.line == VIDEO_B_LINE
    assert str(path) in str(caught.value)


def test_a_missing_split_names_the_file(tmp_path: Path) -> None:
    """#13 item 10: the evaluation's `no video has subset 'test'` named no file."""
    path = write(tmp_path, subset="validation")
    with pytest.raises(AnnotationError, match="no video has subset 'test'") as caught:
        load_annotations(path).subset("test")
    text = str(caught.value)
    assert str(path) in text and "['train', 'validation']" in text


def test_events_past_the_video_end_name_file_video_event_and_both_durations(
    tmp_path: Path,
) -> None:
    """#13 item 3: a 1000 s annotation with an event at 500-600 s on a 12 s video."""
    second = '{"segment": [500.0, 600.0], "label": "dog", "label_id": 0}'
    path = write(tmp_path, second, duration="1000.0")
    annotations = load_annotations(path)
    with pytest.raises(AnnotationError, match="past the end of its video") as caught:
        check_against_videos(annotations, {"vid_a": 20.0, "vid_b": 12.0}, tolerance_s=1.0)
    error = caught.value
    assert (error.video_id, error.annotation_index) == ("vid_b", 1)
    assert error.line == SECOND_ANNOTATION_LINE
    text = str(error)
    assert str(path) in text and "[500.0, 600.0]" in text
    assert "12.0 s" in text and "1000.0 s" in text and "duration_tolerance_s" in text
    # A video that was not extracted (absent from the probed durations) is not compared.
    assert check_against_videos(annotations, {"vid_a": 20.0}, tolerance_s=1.0) == []


def test_video_end_tolerance_and_duration_mismatches(tmp_path: Path) -> None:
    # vid_b's last event ends at 20 s, its annotation says 30 s.
    annotations = load_annotations(write(tmp_path))
    probed = {"vid_a": 20.4, "vid_b": 19.5}
    with pytest.raises(AnnotationError, match="annotation 1"):
        check_against_videos(annotations, probed, tolerance_s=0.25)
    # Within the tolerance every event fits; the durations that disagree are returned.
    mismatches = check_against_videos(annotations, probed, tolerance_s=1.0)
    assert mismatches == [("vid_b", 30.0, 19.5)]
