"""Import the Perception Test localisation releases (arXiv 2305.13786), and write submissions.

Annotations: one JSON object per video id, ``{"metadata": {"split", "frame_rate", "num_frames",
...}, "sound_localisation": [...], "action_localisation": [...]}``; each event has ``label``,
``label_id`` and ``timestamps`` ``[start_us, end_us]`` in microseconds. Duration is
``num_frames / frame_rate`` s (the official ActionFormer fork multiplies the two; we divide).

Features, as the official baseline (github.com/ptchallenge-workshop/actionformer_release_PT,
configs ``perception_tsl_*``) reads them: ``{audio_dir}/{vid}.npy`` MMV audio (T, 256) and
``{video_dir}/{vid}.npy`` TSP video (T', 512). The baseline's configs give the audio grid as
``feat_stride 16, num_frames 16, default_fps 30`` and the video grid as ``16, 16, 15``; so audio
row i covers ``[16i / 30, (16i + 16) / 30]`` s (0.533 s, no overlap) and video row j covers
``[16j / 15, (16j + 16) / 15]`` s (1.067 s). These grids are ASSUMED from those configs (the
release does not document them otherwise); the stores record them under ``import``.

Alignment: the store uses the finer audio grid. The video features are resampled onto the audio
rows' centre times by linear interpolation between video row centres (held constant before the
first and after the last centre). The baseline instead stretches the video rows over the audio
row count by index; interpolating in time keeps each row's content at the second it came from.

Subsets: ``train -> train``, ``valid -> test`` (the challenge's test labels are hidden) and 10 % of
train held out as ``validation`` for model selection; tIoU thresholds 0.1:0.1:0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.detection.metrics import TIOU_PRESETS
from pipeline.importers.actionformer import build_annotations
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

AUDIO_GRID = FrameGrid(fps=30.0, stride_frames=16, window_frames=16)  # MMV, assumed (see above)
VIDEO_GRID = FrameGrid(fps=15.0, stride_frames=16, window_frames=16)  # TSP, assumed (see above)
AUDIO_DIM, VIDEO_DIM = 256, 512
TASKS = ("sound_localisation", "action_localisation")
SUBSET_MAP = {"train": "train", "valid": "test"}
VALIDATION_FRACTION = 0.1
TIOU_THRESHOLDS = TIOU_PRESETS["perception_test"].tolist()  # 0.1:0.1:0.5
MICROSECONDS = 1e6


def read_perception_annotations(path: str | Path) -> dict[str, dict[str, Any]]:
    """The per-video annotation objects; entries without the metadata keys raise naming them."""
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
    return videos


def duration_s(entry: Mapping[str, Any]) -> float:
    """Video duration in seconds from the frame count and rate."""
    metadata = entry["metadata"]
    return float(metadata["num_frames"]) / float(metadata["frame_rate"])


def resample_to(
    features: np.ndarray, source_centres: np.ndarray, target_centres: np.ndarray
) -> np.ndarray:
    """(T_target, D) features linearly interpolated in time from rows at ``source_centres``."""
    columns = [
        np.interp(target_centres, source_centres, features[:, d]) for d in range(features.shape[1])
    ]
    return np.stack(columns, axis=1).astype(np.float32)  # (T_target, D)


def load_video(
    audio_dir: str | Path, video_dir: str | Path, video_id: str, duration: float
) -> ImportedVideo:
    """Audio rows as the grid, video features resampled onto their centres."""
    audio = load_feature_array(Path(audio_dir) / f"{video_id}.npy", expected_dim=AUDIO_DIM)
    video = load_feature_array(Path(video_dir) / f"{video_id}.npy", expected_dim=VIDEO_DIM)
    timestamps = AUDIO_GRID.timestamps(len(audio))  # (T, 2)
    video_centres = VIDEO_GRID.timestamps(len(video)).mean(axis=1)  # (T',)
    visual = resample_to(video, video_centres, timestamps.mean(axis=1))  # (T, 512)
    return ImportedVideo(
        video_id=video_id,
        visual=visual,
        audio=audio,
        timestamps=timestamps,
        duration_s=duration,
        audio_present=True,
        extra_attrs={
            "source_rows": {"audio": len(audio), "video": len(video)},
            "source_span_s": {
                "audio": float(AUDIO_GRID.timestamps(len(audio))[-1, 1]),
                "video": float(VIDEO_GRID.timestamps(len(video))[-1, 1]),
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
        audio_dir: folder of MMV ``{vid}.npy`` files.
        video_dir: folder of TSP ``{vid}.npy`` files.
        out_dir: feature folder, e.g. ``results/perception_test/features/mmv_tsp``.
        annotations_out: UnAV-format annotations to write (source ids kept for submissions).
        task: ``sound_localisation`` or ``action_localisation``.
        subset_map: release split -> our subset; unmapped splits are left out.
        validation_fraction: share of train videos held out as ``validation``.
        missing: ``error`` or ``skip`` for videos without feature files.
        dataset: data set name recorded in the index.
        encoder_set: feature set name recorded in the index.
        seed: seed of the held-out choice.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    entries: dict[str, dict[str, Any]] = {}
    for path in annotations_paths:
        entries.update(read_perception_annotations(path))
    subsets = assign_subsets(
        {vid: str(entry["metadata"]["split"]) for vid, entry in entries.items()},
        subset_map,
        validation_fraction=validation_fraction,
        seed=seed,
    )
    videos = {}
    for video_id, subset in sorted(subsets.items()):
        events = [
            (
                item["timestamps"][0] / MICROSECONDS,
                item["timestamps"][1] / MICROSECONDS,
                item["label"],
                item["label_id"],
            )
            for item in entries[video_id].get(task, [])
        ]
        videos[video_id] = (duration_s(entries[video_id]), subset, events)
    annotations, counts = build_annotations(videos, version=f"perception_test-{task}")
    write_annotations(annotations_out, annotations)
    settings = ImportSettings(
        importer=f"perception_test/{task}",
        fps=AUDIO_GRID.fps,
        window_s=AUDIO_GRID.window_s,
        stride_s=AUDIO_GRID.stride_s,
        encoders={
            "visual": {"name": "tsp_resampled", "dim": VIDEO_DIM},
            "audio": {"name": "mmv", "dim": AUDIO_DIM},
        },
        details={
            "audio_grid": [AUDIO_GRID.fps, AUDIO_GRID.stride_frames, AUDIO_GRID.window_frames],
            "video_grid": [VIDEO_GRID.fps, VIDEO_GRID.stride_frames, VIDEO_GRID.window_frames],
            "grid_source": "assumed from the official baseline's configs",
        },
    )
    report = run_import(
        sorted(videos),
        lambda vid: load_video(audio_dir, video_dir, vid, videos[vid][0]),
        settings=settings,
        out_dir=out_dir,
        missing=missing,
        annotations_path=annotations_out,
        dataset=dataset,
        encoder_set=encoder_set,
    )
    return report, counts


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
    parser.add_argument("--video-features-dir", required=True, help="folder of TSP {vid}.npy")
    parser.add_argument("--annotations-out", required=True, help="UnAV-format JSON to write")
    parser.add_argument("--task", choices=TASKS, default="sound_localisation")
    parser.add_argument("--subset-map", nargs="+", help="SOURCE=TARGET, e.g. valid=test")
    parser.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION)
    parser.add_argument("--extra-annotations", nargs="*", default=[], help="more split files")
    args = parser.parse_args(argv)
    dataset, encoder_set = names_from_out(args.out, args.dataset, args.encoder_set)
    report, counts = import_perception_test(
        [args.annotations, *args.extra_annotations],
        args.features_dir,
        args.video_features_dir,
        args.out,
        annotations_out=args.annotations_out,
        task=args.task,
        subset_map=parse_subset_map(args.subset_map) if args.subset_map else SUBSET_MAP,
        validation_fraction=args.validation_fraction,
        missing=args.missing,
        dataset=dataset,
        encoder_set=encoder_set,
    )
    print(f"{summary_line(report)}\nannotation clean-up: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
