"""Load and validate temporal event annotations in UnAV-100's JSON format.

The canonical format (UnAV-100, Geng et al., CVPR 2023, arXiv 2303.12930)::

    {"version": str,
     "database": {video_id: {"duration": seconds, "subset": "train"|"validation"|"test",
                             "annotations": [{"segment": [start_s, end_s],
                                              "label": str, "label_id": int}]}}}

Validation rules (each violation raises :class:`AnnotationError` naming the file, the video,
the annotation index and, for files, the line and column of the offending entry):

- the keys above must be present with the types above; other keys are ignored;
- a video id may be any non-empty name (a file's stem with spaces or accents); outputs are
  named after its :func:`pipeline.ids.safe_name`, which never leaves their folder, so an id
  too long for a file name is refused;
- ``subset`` must be one of ``allowed_subsets``; ``duration`` a finite number > 0;
- ``segment`` must be a pair of finite numbers with ``start < end``: zero-length events are
  refused because their tIoU with any prediction is 0, so they could never be detected;
- a segment may stick out of ``[0, duration]`` by at most ``segment_tolerance_s``
  (default :data:`SEGMENT_TOLERANCE_S` = 0.1 s, a third of UnAV-100's 0.32 s snippet stride);
  such segments are clipped to ``[0, duration]``, anything further out is refused. Measured on
  the released UnAV-100 file: 0 of its 30,059 events start before 0 or end after the duration
  (1,317 end exactly at it), so the tolerance only serves files whose durations were rounded;
- one label has one ``label_id`` and one id one label; ids are ``0..C-1`` with no gap
  (true of UnAV-100: 100 labels, ids 0..99);
- the same event (segment and label) twice in one video is refused (it would count twice as
  ground truth); a key repeated inside one JSON object is refused (JSON readers keep the last).

Checked later, against what the file's reader needs: :meth:`AnnotationSet.subset` refuses a split
without videos, naming the file; :func:`check_against_videos` refuses an event that ends past the
end of its video as probed (the duration of its feature store), beyond a tolerance
(:data:`DURATION_TOLERANCE_S`), and lists the videos whose durations disagree by more.
"""

# Over 400 lines on purpose: the format's every rule, checked in one pass with the file's line and
# column in each message; split, the parser's steps would import each other's private state.

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from pipeline.ids import safe_name

DEFAULT_SUBSETS: tuple[str, ...] = ("train", "validation", "test")
SEGMENT_TOLERANCE_S = 0.1  # seconds a segment may stick out of [0, duration] before refusal
# Seconds an event may end past its video's probed end (dataset.duration_tolerance_s): a few
# frames and an audio packet of disagreement between a container's declared duration and the
# annotator's player, far below a wrong file's (a 1000 s annotation on a 12 s video).
DURATION_TOLERANCE_S = 1.0


class AnnotationError(ValueError):
    """An annotation file or dict breaks the format; the message says where and what to fix.

    Args:
        problem: what is wrong and what to do about it.
        source: the file path (or ``"<dict>"``) the annotations came from.
        video_id: the offending video, when the problem is inside one.
        annotation_index: index of the offending entry in the video's ``annotations`` list.
        line: 1-based line of the entry in the file, when it could be found.
        column: 1-based column of the entry in the file, when it could be found.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str,
        video_id: str | None = None,
        annotation_index: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.video_id = video_id
        self.annotation_index = annotation_index
        self.line = line
        self.column = column
        where = [source]
        if line is not None:
            where.append(f"line {line}" + (f" column {column}" if column is not None else ""))
        if video_id is not None:
            where.append(f"video {video_id!r}")
        if annotation_index is not None:
            where.append(f"annotation {annotation_index}")
        super().__init__(f"{', '.join(where)}: {problem}")


@dataclass(frozen=True)
class Event:
    """One annotated event: a time span in seconds and its class."""

    start_s: float  # event start, seconds from the start of the video
    end_s: float  # event end, seconds, > start_s
    label: str  # class name
    label_id: int  # class index into AnnotationSet.labels


@dataclass(frozen=True)
class VideoAnnotation:
    """All events of one video."""

    video_id: str  # key of the video in the database
    duration_s: float  # video duration in seconds
    subset: str  # split name, e.g. "train", "validation", "test"
    events: tuple[Event, ...]  # events in file order


@dataclass(frozen=True)
class AnnotationSet:
    """A validated annotation database: videos by id and the label vocabulary."""

    version: str  # the file's "version" string
    videos: dict[str, VideoAnnotation]  # video_id -> annotation, in file order
    labels: tuple[str, ...]  # labels[label_id] is the class name; covers the whole file
    source: str = field(default="<dict>", compare=False)  # the file, named in errors

    def subset(self, name: str) -> AnnotationSet:
        """The videos of one split, with the full label vocabulary kept.

        Raises:
            AnnotationError: naming the file, when no video has subset ``name``.
        """
        videos = {vid: video for vid, video in self.videos.items() if video.subset == name}
        if not videos:
            present = sorted({video.subset for video in self.videos.values()})
            raise AnnotationError(
                f"no video has subset {name!r}; subsets present: {present}",
                source=self.source,
            )
        return replace(self, videos=videos)

    @property
    def num_events(self) -> int:
        """Number of events over all videos."""
        return sum(len(video.events) for video in self.videos.values())

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON dict; ``parse_annotations(s.to_json()) == s``."""
        database = {
            video.video_id: {
                "duration": video.duration_s,
                "subset": video.subset,
                "annotations": [
                    {"segment": [e.start_s, e.end_s], "label": e.label, "label_id": e.label_id}
                    for e in video.events
                ],
            }
            for video in self.videos.values()
        }
        return {"version": self.version, "database": database}


class _DuplicateKeyError(Exception):
    """Internal: a JSON object repeats a key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):  # the key loop only then: a million objects load in seconds
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


def load_annotations(
    path: str | Path,
    *,
    allowed_subsets: Iterable[str] = DEFAULT_SUBSETS,
    segment_tolerance_s: float = SEGMENT_TOLERANCE_S,
) -> AnnotationSet:
    """Read and validate an annotation file in UnAV-100's format (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AnnotationError(f"cannot read the file ({error})", source=str(path)) from error
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as error:
        raise AnnotationError(
            f"not valid JSON ({error.msg}); fix the syntax",
            source=str(path),
            line=error.lineno,
            column=error.colno,
        ) from error
    except _DuplicateKeyError as error:
        key = json.dumps(error.key)
        first = text.find(key)
        second = text.find(key, first + 1) if first >= 0 else -1
        line, column = _line_column(text, second) if second >= 0 else (None, None)
        raise AnnotationError(
            f"key {error.key!r} appears twice in one object; keep one",
            source=str(path),
            line=line,
            column=column,
        ) from None
    return _Parser(str(path), text, tuple(allowed_subsets), segment_tolerance_s).parse(data)


def parse_annotations(
    data: Mapping[str, Any],
    *,
    source: str = "<dict>",
    allowed_subsets: Iterable[str] = DEFAULT_SUBSETS,
    segment_tolerance_s: float = SEGMENT_TOLERANCE_S,
) -> AnnotationSet:
    """Validate an already-decoded annotation dict (no line numbers in errors)."""
    return _Parser(source, None, tuple(allowed_subsets), segment_tolerance_s).parse(data)


def annotation_error(
    problem: str, *, source: str, video_id: str | None = None, annotation_index: int | None = None
) -> AnnotationError:
    """An :class:`AnnotationError` at the line of a video, or of one of its annotations, in the
    file ``source`` (read again only to find the line; no line when it cannot be read)."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    line, column = _locate(text, video_id, annotation_index)
    return AnnotationError(
        problem,
        source=source,
        video_id=video_id,
        annotation_index=annotation_index,
        line=line,
        column=column,
    )


def check_against_videos(
    annotations: AnnotationSet,
    probed_s: Mapping[str, float],
    *,
    tolerance_s: float = DURATION_TOLERANCE_S,
) -> list[tuple[str, float, float]]:
    """Compare each annotated video with its video as probed, before anything trains on it.

    Args:
        annotations: the validated annotations (:func:`load_annotations`).
        probed_s: video id -> duration of the video file as probed (its feature store's
            ``video.duration_s``); annotated videos absent from it (not extracted) are skipped.
        tolerance_s: seconds an event may end past the probed end, and the annotated and probed
            durations may differ, before this counts.

    Returns:
        ``(video_id, annotated_s, probed_s)`` of every video whose durations differ by more
        than ``tolerance_s`` while all its events fit (worth a warning: the predictions are
        clipped to the annotated duration, the ground truth is unharmed).

    Raises:
        AnnotationError: an event ends more than ``tolerance_s`` past its video's probed end,
            which no prediction could match (it would silently lower mAP): the first such
            event's file, video, annotation, line and both durations, and the other videos with
            one.
    """
    past_end: list[tuple[str, int, Event]] = []
    mismatches: list[tuple[str, float, float]] = []
    for video_id, video in annotations.videos.items():
        if video_id not in probed_s:
            continue
        probed = float(probed_s[video_id])
        late = [i for i, event in enumerate(video.events) if event.end_s > probed + tolerance_s]
        if late:
            past_end.append((video_id, late[0], video.events[late[0]]))
        elif abs(video.duration_s - probed) > tolerance_s:
            mismatches.append((video_id, video.duration_s, probed))
    if past_end:
        video_id, index, event = past_end[0]
        annotated, probed = annotations.videos[video_id].duration_s, probed_s[video_id]
        others = [vid for vid, _, _ in past_end[1:]]
        more = ", ".join(others[:10]) + (" ..." if len(others) > 10 else "")
        raise annotation_error(
            f"event [{event.start_s}, {event.end_s}] ({event.label!r}) ends past the end of its "
            f"video: the video lasts {round(probed, 3)} s as probed, the annotation says "
            f"{round(annotated, 3)} s (tolerance {tolerance_s} s, dataset.duration_tolerance_s); "
            "fix the annotation, or check that the video file is the one annotated"
            + (
                f"; {len(others)} more video(s) have events past their end: {more}"
                if others
                else ""
            ),
            source=annotations.source,
            video_id=video_id,
            annotation_index=index,
        )
    return mismatches


def _line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _element_offset(text: str, open_bracket: int, index: int) -> int | None:
    """Offset of element ``index`` of the JSON array opening at ``open_bracket``."""
    depth, count, in_string, escaped = 0, 0, False, False
    position = open_bracket + 1
    if index == 0:
        return _skip_space(text, position)
    while position < len(text):
        char = text[position]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                return None
            depth -= 1
        elif char == "," and depth == 0:
            count += 1
            if count == index:
                return _skip_space(text, position + 1)
        position += 1
    return None


def _locate(
    text: str | None, video_id: str | None, annotation_index: int | None
) -> tuple[int | None, int | None]:
    """Best-effort line/column of a video's key or of one of its annotations in the raw text."""
    if text is None or video_id is None:
        return None, None
    database = text.find('"database"')
    for key in {json.dumps(video_id), json.dumps(video_id, ensure_ascii=False)}:
        match = re.compile(re.escape(key) + r"\s*:").search(text, max(database, 0))
        if match is None:
            continue
        offset = match.start()
        if annotation_index is not None:
            array = re.compile(r'"annotations"\s*:\s*\[').search(text, match.end())
            element = (
                None if array is None else _element_offset(text, array.end() - 1, annotation_index)
            )
            offset = offset if element is None else element
        return _line_column(text, offset)
    return None, None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Parser:
    """Validates one decoded annotation dict, step by step, in the module docstring's order.

    Args:
        source: the file path (or ``"<dict>"``) for messages.
        text: the file's raw text, to locate errors by line and column; ``None`` for a dict.
        allowed_subsets: the valid ``subset`` values.
        tolerance_s: seconds a segment may stick out of ``[0, duration]``.
    """

    def __init__(
        self, source: str, text: str | None, allowed_subsets: tuple[str, ...], tolerance_s: float
    ) -> None:
        self.source = source
        self.text = text
        self.allowed_subsets = allowed_subsets
        self.tolerance_s = tolerance_s
        self.label_of_id: dict[int, tuple[str, str]] = {}  # label_id -> (label, first video)
        self.id_of_label: dict[str, tuple[int, str]] = {}  # label -> (label_id, first video)

    def fail(self, problem: str, video_id: str | None = None, index: int | None = None) -> NoReturn:
        line, column = _locate(self.text, video_id, index)
        raise AnnotationError(
            problem,
            source=self.source,
            video_id=video_id,
            annotation_index=index,
            line=line,
            column=column,
        )

    def parse(self, data: Any) -> AnnotationSet:
        self.check_top_level(data)
        videos = {
            video_id: self.video(video_id, entry) for video_id, entry in data["database"].items()
        }
        return AnnotationSet(
            version=data["version"], videos=videos, labels=self.labels(), source=self.source
        )

    def check_top_level(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            self.fail(f"top level must be an object, got {type(data).__name__}")
        for key, kind in (("version", str), ("database", Mapping)):
            if key not in data:
                self.fail(f"missing top-level key {key!r}")
            if not isinstance(data[key], kind):
                self.fail(
                    f"top-level {key!r} must be {kind.__name__}, got {type(data[key]).__name__}"
                )

    def video(self, video_id: str, entry: Any) -> VideoAnnotation:
        self.check_video_entry(video_id, entry)
        events: list[Event] = []
        for index, item in enumerate(entry["annotations"]):
            event = self.event(video_id, index, item, entry["duration"])
            if event in events:
                self.fail(
                    f"duplicate of annotation {events.index(event)} (same segment and label); "
                    "remove one",
                    video_id,
                    index,
                )
            events.append(event)
        return VideoAnnotation(
            video_id=video_id,
            duration_s=float(entry["duration"]),
            subset=entry["subset"],
            events=tuple(events),
        )

    def check_video_entry(self, video_id: str, entry: Any) -> None:
        try:  # output files (plots) are named after its safe name, which must fit a file name
            safe_name(video_id)
        except ValueError as err:
            self.fail(str(err), video_id)
        if not isinstance(entry, Mapping):
            self.fail(f"entry must be an object, got {type(entry).__name__}", video_id)
        for key in ("duration", "subset", "annotations"):
            if key not in entry:
                self.fail(f"missing key {key!r}", video_id)
        duration = entry["duration"]
        if not _is_number(duration) or not math.isfinite(duration) or duration <= 0:
            self.fail(f"'duration' must be a finite number > 0 seconds, got {duration!r}", video_id)
        subset = entry["subset"]
        if subset not in self.allowed_subsets:
            self.fail(f"subset {subset!r} is not one of {list(self.allowed_subsets)}", video_id)
        if not isinstance(entry["annotations"], list):
            self.fail("'annotations' must be a list", video_id)

    def event(self, video_id: str, index: int, item: Any, duration: float) -> Event:
        if not isinstance(item, Mapping):
            self.fail(f"must be an object, got {type(item).__name__}", video_id, index)
        for key in ("segment", "label", "label_id"):
            if key not in item:
                self.fail(f"missing key {key!r}", video_id, index)
        start_s, end_s = self.segment(item["segment"], duration, video_id, index)
        label, label_id = item["label"], item["label_id"]
        self.check_label(label, label_id, video_id, index)
        return Event(start_s=start_s, end_s=end_s, label=label, label_id=label_id)

    def segment(
        self, segment: Any, duration: float, video_id: str, index: int
    ) -> tuple[float, float]:
        """``[start_s, end_s]`` checked, then clipped to ``[0, duration]``."""
        if not (
            isinstance(segment, list | tuple)
            and len(segment) == 2
            and all(_is_number(v) and math.isfinite(v) for v in segment)
        ):
            self.fail(
                f"'segment' must be [start_s, end_s] of finite numbers, got {segment!r}",
                video_id,
                index,
            )
        start_s, end_s = float(segment[0]), float(segment[1])
        if not start_s < end_s:
            self.fail(
                f"segment {segment!r} must have start < end (zero-length events are "
                "refused: no prediction can match them)",
                video_id,
                index,
            )
        if start_s < -self.tolerance_s or end_s > duration + self.tolerance_s:
            self.fail(
                f"segment {segment!r} lies outside [0, duration={duration}] by more than "
                f"{self.tolerance_s} s; fix the segment or the duration",
                video_id,
                index,
            )
        start_s, end_s = max(start_s, 0.0), min(end_s, float(duration))
        if not start_s < end_s:
            self.fail(
                f"segment {segment!r} is empty once clipped to [0, {duration}]", video_id, index
            )
        return start_s, end_s

    def check_label(self, label: Any, label_id: Any, video_id: str, index: int) -> None:
        """A non-empty label and an id >= 0, each consistent with the other's earlier uses."""
        if not isinstance(label, str) or not label:
            self.fail(f"'label' must be a non-empty string, got {label!r}", video_id, index)
        if not isinstance(label_id, int) or isinstance(label_id, bool) or label_id < 0:
            self.fail(f"'label_id' must be an integer >= 0, got {label_id!r}", video_id, index)
        known_id, first_video = self.id_of_label.setdefault(label, (label_id, video_id))
        if known_id != label_id:
            self.fail(
                f"label {label!r} has label_id {label_id} here but {known_id} in video "
                f"{first_video!r}; one label needs one id",
                video_id,
                index,
            )
        known_label, first_video = self.label_of_id.setdefault(label_id, (label, video_id))
        if known_label != label:
            self.fail(
                f"label_id {label_id} is {label!r} here but {known_label!r} in video "
                f"{first_video!r}; one id needs one label",
                video_id,
                index,
            )

    def labels(self) -> tuple[str, ...]:
        """The vocabulary: ``labels[label_id]``, ids ``0..C-1`` without gaps."""
        if not self.label_of_id:
            self.fail("no events at all: the label vocabulary cannot be derived")
        missing = sorted(set(range(max(self.label_of_id) + 1)) - set(self.label_of_id))
        if missing:
            self.fail(
                f"label_ids must be 0..C-1 without gaps; missing {missing[:10]}"
                + (" ..." if len(missing) > 10 else "")
            )
        return tuple(self.label_of_id[i][0] for i in range(len(self.label_of_id)))
