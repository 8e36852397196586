"""Import the Perception Test localisation releases (arXiv 2305.13786), and write submissions.

Annotations: one JSON object per video id, ``{"metadata": {"split", "frame_rate", "num_frames",
...}, "sound_localisation": [...], "action_localisation": [...]}``; each event has ``label``,
``label_id`` and ``timestamps`` ``[start_us, end_us]`` in microseconds. Duration is
``num_frames / frame_rate`` s (the official ActionFormer fork multiplies the two; we divide). The
class count is what the files hold: the labels of the imported task's events, renumbered
``0..C-1`` in source id order (the source ids are kept for submissions), never a typed number.

Timestamps outside the video: an event may stick out of ``[0, duration]`` by at most one frame
(``1 / frame_rate`` s) and is then clipped to it. The timestamps are frame times in microseconds,
so a rounded frame time or an end-exclusive last frame can overshoot by less than a frame; more
than that (or ``start >= end``, or an event that lies wholly in that last frame's margin) means
the metadata and the events disagree, and the import stops naming the file, the video and the
event, before any training (dropping or clipping such an event would hide lost labels).

Features, as the official baseline (github.com/ptchallenge-workshop/actionformer_release_PT,
configs ``perception_tsl_*``) reads them: ``{audio_dir}/{vid}.npy`` audio (T, Da) and
``{video_dir}/{vid}.npy`` video (T', Dv). Any widths are accepted (MMV audio 256, TSP video 512,
VideoMAE V2 ViT-g 1408, or ours): each is read from the files and must be the same for every
video of a set (a file of another width stops the import naming it and its video); an expected
width (:class:`FeatureRelease` ``dim``) is checked too. Each stream's grid is a setting
(:class:`FeatureRelease`; ``dataset.import.audio_features`` / ``video_features``): row i covers
``[i * feat_stride / fps, (i * feat_stride + num_frames) / fps]`` s. The defaults are those the
baseline's configs give, ASSUMED (the release does not document them otherwise): audio
``feat_stride 16, num_frames 16, fps 30`` (0.533 s rows, no overlap), video ``16, 16, 15``
(TSP, 1.067 s rows). VideoMAE V2 features may lie on another grid: set it to how they were
extracted. The stores record both grids under ``import``.

Alignment: the store uses the audio grid. The video features are resampled onto the audio rows'
centre times by linear interpolation between video row centres (held constant before the first
and after the last centre). The baseline instead stretches the video rows over the audio row
count by index; interpolating in time keeps each row's content at the second it came from. The
two streams are concatenated in the model (``modalities: [audio, visual]``, early fusion), as
arXiv 2407.02318 does.

Subsets: ``train -> train``, ``valid -> test`` (the challenge's test labels are hidden) and 10 % of
train held out as ``validation`` for model selection; tIoU thresholds 0.1:0.1:0.5. A run's
detections on our test subset (the challenge's valid split) become an entry in the challenge's
format with ``python -m pipeline.importers.perception_test submit`` (the workflow writes
``results/{dataset}/runs/{run}/submission.json``).
"""

# Over 400 lines on purpose: the release's two feature streams, its annotation checks and its
# submission format are one format's reading and writing; split, each half would re-read the other's
# constants (tasks, label ids, grids).

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.keys import check_keys
from pipeline.cli import user_errors
from pipeline.config import settings_argument
from pipeline.detection.metrics import TIOU_PRESETS
from pipeline.importers.actionformer import Event, build_annotations
from pipeline.importers.common import (
    FeatureImportError,
    FrameGrid,
    ImportedVideo,
    ImportReport,
    ImportSettings,
    add_import_arguments,
    assign_subsets,
    load_feature_array,
    names_from_out,
    parse_subset_map,
    run_import,
    summary_line,
    write_annotations,
)
from pipeline.io import write_text_atomic
from pipeline.store import StoreError


@dataclasses.dataclass(frozen=True)
class FeatureRelease:
    """One stream's released features: the extractor's name, width and grid.

    Args:
        encoder: extractor name recorded in the stores (``mmv``, ``tsp``, ``videomae_v2_g``).
        dim: expected feature width; None: read from the files (the same for every video).
        fps: frame rate the features were computed at.
        feat_stride: frames between the starts of consecutive rows.
        num_frames: frames each row sees.
    """

    encoder: str
    dim: int | None = None
    fps: float = 30.0
    feat_stride: float = 16.0
    num_frames: float = 16.0

    def __post_init__(self) -> None:
        if self.dim is not None and (not isinstance(self.dim, int) or self.dim < 1):
            raise ValueError(f"feature width 'dim' must be a positive integer, not {self.dim!r}")
        for key in ("fps", "feat_stride", "num_frames"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"feature grid '{key}' must be a number > 0, not {value!r}")

    @property
    def grid(self) -> FrameGrid:
        return FrameGrid(
            fps=self.fps, stride_frames=self.feat_stride, window_frames=self.num_frames
        )

    def describe(self) -> dict[str, Any]:
        """The release as recorded in the stores and hashed into their config hash."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(
        cls, spec: Mapping[str, Any], default: FeatureRelease, where: str
    ) -> FeatureRelease:
        """``default`` with the keys of ``spec`` (``dataset.import.{where}``) replaced.

        Raises:
            ValueError: an unknown key or a bad value, naming ``where``.
        """
        check_keys(spec, default.describe(), where)
        try:
            return cls(**{**default.describe(), **spec})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None


# The baseline's configs (ASSUMED grids, see above); the schema's defaults are the same.
AUDIO_FEATURES = FeatureRelease(encoder="mmv", fps=30.0, feat_stride=16, num_frames=16)
VIDEO_FEATURES = FeatureRelease(encoder="tsp", fps=15.0, feat_stride=16, num_frames=16)
TASKS = ("sound_localisation", "action_localisation")
SUBSET_MAP = {"train": "train", "valid": "test"}
VALIDATION_FRACTION = 0.1
TIOU_THRESHOLDS = TIOU_PRESETS["perception_test"].tolist()  # 0.1:0.1:0.5
MICROSECONDS = 1e6


def read_perception_annotations(path: str | Path) -> dict[str, dict[str, Any]]:
    """The per-video annotation objects; bad metadata raises naming the file and the video."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        videos = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FeatureImportError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(videos, dict):
        raise FeatureImportError(f"{path}: expected an object of videos")
    for video_id, entry in videos.items():
        metadata = entry.get("metadata", {}) if isinstance(entry, dict) else {}
        missing = [key for key in ("split", "frame_rate", "num_frames") if key not in metadata]
        if missing:
            raise FeatureImportError(f"{path}: video {video_id!r} lacks metadata {missing}")
        for key in ("frame_rate", "num_frames"):
            value = metadata[key]
            if not isinstance(value, int | float) or not (0 < value < math.inf):
                raise FeatureImportError(
                    f"{path}: video {video_id!r} has metadata {key} {value!r}; "
                    "it must be a number > 0"
                )
    return videos


def duration_s(entry: Mapping[str, Any]) -> float:
    """Video duration in seconds from the frame count and rate."""
    metadata = entry["metadata"]
    return float(metadata["num_frames"]) / float(metadata["frame_rate"])


def video_events(
    path: str | Path, video_id: str, entry: Mapping[str, Any], task: str
) -> list[Event]:
    """The video's ``task`` events in seconds, each checked against ``[0, duration]``.

    An event may stick out by at most one frame (``1 / frame_rate`` s); it is then clipped (by
    :func:`~pipeline.importers.actionformer.build_annotations`, which counts it).

    Raises:
        FeatureImportError: naming the file, the video and the event's index, for malformed
            timestamps, ``start >= end``, or an event further outside the video than one frame.
    """
    duration, frame_s = duration_s(entry), 1.0 / float(entry["metadata"]["frame_rate"])
    events = []
    for index, item in enumerate(entry.get(task) or []):
        where = f"{path}: video {video_id!r}, {task}[{index}]"
        stamps = item.get("timestamps") if isinstance(item, dict) else None
        if not (
            isinstance(stamps, list)
            and len(stamps) == 2
            and all(isinstance(t, int | float) and math.isfinite(t) for t in stamps)
        ):
            raise FeatureImportError(
                f"{where}: 'timestamps' must be [start_us, end_us], not {stamps!r}"
            )
        start, end = stamps[0] / MICROSECONDS, stamps[1] / MICROSECONDS
        if start >= end:
            raise FeatureImportError(
                f"{where}: start {start:.6f} s is not before end {end:.6f} s; events need a length"
            )
        if start < -frame_s or end > duration + frame_s or min(end, duration) <= max(start, 0.0):
            raise FeatureImportError(
                f"{where}: [{start:.6f}, {end:.6f}] s lies outside the video "
                f"[0, {duration:.6f}] s (num_frames / frame_rate) by more than one frame "
                f"({frame_s:.6f} s); fix the event or the video's metadata"
            )
        label, label_id = item.get("label"), item.get("label_id")
        if not isinstance(label, str) or not isinstance(label_id, int):
            raise FeatureImportError(f"{where}: needs a 'label' string and an integer 'label_id'")
        events.append((start, end, label, label_id))
    return events


def resample_to(
    features: np.ndarray, source_centres: np.ndarray, target_centres: np.ndarray
) -> np.ndarray:
    """(T_target, D) features linearly interpolated in time from rows at ``source_centres``."""
    columns = [
        np.interp(target_centres, source_centres, features[:, d]) for d in range(features.shape[1])
    ]
    return np.stack(columns, axis=1).astype(np.float32)  # (T_target, D)


class FeatureLoader:
    """Loads each video's two feature files; a width differing from the set's stops the import.

    Args:
        audio_dir: folder of the audio ``{vid}.npy`` files.
        video_dir: folder of the video ``{vid}.npy`` files.
        audio: the audio release (grid, expected width).
        video: the video release.
        durations: video id -> duration in seconds (from the annotations).
    """

    def __init__(
        self,
        audio_dir: str | Path,
        video_dir: str | Path,
        *,
        audio: FeatureRelease,
        video: FeatureRelease,
        durations: Mapping[str, float],
    ) -> None:
        self.folders = {"audio": Path(audio_dir), "video": Path(video_dir)}
        self.releases = {"audio": audio, "video": video}
        self.durations = durations
        # stream -> (width, where it came from): the expected width, else the first file's
        self.widths = {
            stream: (release.dim, f"dataset.import.{stream}_features.dim")
            for stream, release in self.releases.items()
            if release.dim is not None
        }

    def load(self, stream: str, video_id: str) -> np.ndarray:
        """One stream's (T, D) features, its width checked against the release and the set."""
        path = self.folders[stream] / f"{video_id}.npy"
        features = load_feature_array(path)
        width, source = self.widths.setdefault(stream, (features.shape[1], str(path)))
        if features.shape[1] != width:
            raise FeatureImportError(
                f"{path} (video {video_id}): {stream} features have {features.shape[1]} dims "
                f"but {source} has {width}; every video of a set needs the same extractor"
            )
        return features

    def __call__(self, video_id: str) -> ImportedVideo:
        """Audio rows as the grid, video features resampled onto their centres."""
        audio, video = self.load("audio", video_id), self.load("video", video_id)
        audio_grid, video_grid = self.releases["audio"].grid, self.releases["video"].grid
        timestamps = audio_grid.timestamps(len(audio))  # (T, 2)
        video_spans = video_grid.timestamps(len(video))  # (T', 2)
        visual = resample_to(video, video_spans.mean(axis=1), timestamps.mean(axis=1))  # (T, Dv)
        return ImportedVideo(
            video_id=video_id,
            visual=visual,
            audio=audio,
            timestamps=timestamps,
            duration_s=self.durations[video_id],
            audio_present=True,
            extra_attrs={
                "source_rows": {"audio": len(audio), "video": len(video)},
                "source_span_s": {
                    "audio": float(timestamps[-1, 1]),
                    "video": float(video_spans[-1, 1]),
                },
            },
        )


def import_perception_test(
    annotations_paths: Sequence[str | Path],
    audio_dir: str | Path,
    video_dir: str | Path,
    out_dir: str | Path,
    *,
    annotations_out: str | Path,
    task: str = "sound_localisation",
    audio_features: FeatureRelease = AUDIO_FEATURES,
    video_features: FeatureRelease = VIDEO_FEATURES,
    subset_map: Mapping[str, str] = SUBSET_MAP,
    validation_fraction: float = VALIDATION_FRACTION,
    missing: str = "error",
    dataset: str = "perception_test",
    encoder_set: str = "mmv_tsp",
    seed: int = 0,
) -> tuple[ImportReport, dict[str, int]]:
    """Convert the annotations of ``task`` (train and valid files merged) and import the features.

    Args:
        annotations_paths: the split files (e.g. ``challenge_sound_localisation_{train,valid}``).
        audio_dir: folder of the audio ``{vid}.npy`` files (MMV).
        video_dir: folder of the video ``{vid}.npy`` files (TSP, VideoMAE V2, ...).
        out_dir: feature folder, e.g. ``results/perception_test/features/mmv_tsp``.
        annotations_out: UnAV-format annotations to write (source ids kept for submissions).
        task: ``sound_localisation`` or ``action_localisation``.
        audio_features: the audio release's extractor name, width and grid.
        video_features: the video release's; resampled onto the audio grid.
        subset_map: release split -> our subset; unmapped splits are left out.
        validation_fraction: share of train videos held out as ``validation``.
        missing: ``error`` or ``skip`` for videos without feature files.
        dataset: data set name recorded in the index.
        encoder_set: feature set name recorded in the index.
        seed: seed of the held-out choice.

    Returns the import report and the annotation counts (``classes``, ``clipped``, ...).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    entries: dict[str, dict[str, Any]] = {}
    events: dict[str, list[Event]] = {}
    sources: dict[str, Path] = {}
    for path in map(Path, annotations_paths):
        for video_id, entry in read_perception_annotations(path).items():
            if video_id in sources:
                raise FeatureImportError(
                    f"video {video_id!r} is in both {sources[video_id]} and {path}"
                )
            sources[video_id], entries[video_id] = path, entry
            events[video_id] = video_events(path, video_id, entry, task)
    subsets = assign_subsets(
        {vid: str(entry["metadata"]["split"]) for vid, entry in entries.items()},
        subset_map,
        validation_fraction=validation_fraction,
        seed=seed,
    )
    videos = {
        video_id: (duration_s(entries[video_id]), subset, events[video_id])
        for video_id, subset in sorted(subsets.items())
    }
    annotations, counts = build_annotations(videos, version=f"perception_test-{task}")
    write_annotations(annotations_out, annotations)
    settings = ImportSettings(
        importer=f"perception_test/{task}",
        fps=audio_features.fps,
        window_s=audio_features.grid.window_s,
        stride_s=audio_features.grid.stride_s,
        encoders={
            "visual": {"name": video_features.encoder, "dim": video_features.dim},
            "audio": {"name": audio_features.encoder, "dim": audio_features.dim},
        },
        details={
            "audio_features": audio_features.describe(),
            "video_features": video_features.describe(),
            "video_resampled_to": "audio row centres, linear in time",
        },
    )
    loader = FeatureLoader(
        audio_dir,
        video_dir,
        audio=audio_features,
        video=video_features,
        durations={video_id: video[0] for video_id, video in videos.items()},
    )
    report = run_import(
        sorted(videos),
        loader,
        settings=settings,
        out_dir=out_dir,
        missing=missing,
        annotations_path=annotations_out,
        dataset=dataset,
        encoder_set=encoder_set,
    )
    return report, {"classes": len(annotations["source_label_ids"]), **counts}


def submission(
    results: Mapping[str, Any], source_label_ids: Mapping[str, int], task: str
) -> dict[str, Any]:
    """Perception Test challenge format from ActivityNet results (:mod:`pipeline.detection.infer`).

    ``{vid: {task: [{"label": "<label_id>", "score": "<score>", "timestamps": [start_s,
    end_s]}]}}``: the form the official baseline writes for eval.ai (ids and scores as strings,
    times in seconds).
    """
    out: dict[str, Any] = {}
    for video_id, items in results["results"].items():
        rows = out.setdefault(video_id, {task: []})[task]
        for item in items:
            if item["label"] not in source_label_ids:
                raise FeatureImportError(
                    f"results for {video_id}: label {item['label']!r} is not in the annotations"
                )
            rows.append(
                {
                    "label": str(source_label_ids[item["label"]]),
                    "score": str(float(item["score"])),
                    "timestamps": [float(item["segment"][0]), float(item["segment"][1])],
                }
            )
    return out


def write_submission(
    results_path: str | Path, annotations_path: str | Path, out_path: str | Path, task: str
) -> Path:
    """Write :func:`submission` of a results file, labels mapped with the annotations' ids."""
    results = json.loads(Path(results_path).read_text(encoding="utf-8"))
    annotations = json.loads(Path(annotations_path).read_text(encoding="utf-8"))
    if "source_label_ids" not in annotations:
        raise FeatureImportError(
            f"{annotations_path} has no 'source_label_ids'; write it with this importer"
        )
    return write_text_atomic(
        out_path, json.dumps(submission(results, annotations["source_label_ids"], task))
    )


def _release_argument(
    parser: argparse.ArgumentParser, stream: str, default: FeatureRelease
) -> None:
    parser.add_argument(
        f"--{stream}-features",
        default="{}",
        help=(
            f"JSON object of the {stream} release: encoder, dim (null: from the files), fps, "
            f"feat_stride, num_frames; default {json.dumps(default.describe())}"
        ),
    )


@user_errors(StoreError)
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["submit"]:
        parser = argparse.ArgumentParser(description="Write a Perception Test submission")
        parser.add_argument(
            "--results", required=True, help="results JSON of pipeline.detection.infer"
        )
        parser.add_argument("--annotations", required=True, help="JSON this importer wrote")
        parser.add_argument("--task", choices=TASKS, default="sound_localisation")
        parser.add_argument("--out", required=True, help="submission JSON to write")
        args = parser.parse_args(argv[1:])
        print(f"wrote {write_submission(args.results, args.annotations, args.out, args.task)}")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_import_arguments(parser, annotations_help="annotation JSON files (train, valid)")
    parser.add_argument("--video-features-dir", required=True, help="folder of video {vid}.npy")
    parser.add_argument("--annotations-out", required=True, help="UnAV-format JSON to write")
    parser.add_argument("--task", choices=TASKS, default="sound_localisation")
    _release_argument(parser, "audio", AUDIO_FEATURES)
    _release_argument(parser, "video", VIDEO_FEATURES)
    parser.add_argument("--subset-map", nargs="+", help="SOURCE=TARGET, e.g. valid=test")
    parser.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION)
    parser.add_argument("--extra-annotations", nargs="*", default=[], help="more split files")
    args = parser.parse_args(argv)
    dataset, encoder_set = names_from_out(args.out, args.dataset, args.encoder_set)
    releases = {
        stream: FeatureRelease.from_config(
            settings_argument(text, f"--{stream}-features"), default, f"{stream}_features"
        )
        for stream, text, default in (
            ("audio", args.audio_features, AUDIO_FEATURES),
            ("video", args.video_features, VIDEO_FEATURES),
        )
    }
    report, counts = import_perception_test(
        [args.annotations, *args.extra_annotations],
        args.features_dir,
        args.video_features_dir,
        args.out,
        annotations_out=args.annotations_out,
        task=args.task,
        audio_features=releases["audio"],
        video_features=releases["video"],
        subset_map=parse_subset_map(args.subset_map) if args.subset_map else SUBSET_MAP,
        validation_fraction=args.validation_fraction,
        missing=args.missing,
        dataset=dataset,
        encoder_set=encoder_set,
    )
    print(f"{summary_line(report)}\nannotations: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
