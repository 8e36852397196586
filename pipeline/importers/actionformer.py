"""Import ActionFormer-format releases (THUMOS14, EPIC-Kitchens-100; arXiv 2202.07925).

Input: a JSON ``{"database": {vid: {"subset", "duration", "fps", "annotations": [{"segment":
[start_s, end_s], "label", "label_id"}]}}}`` and one feature file ``{prefix}{vid}{ext}`` per video:
``.npy`` (T, C), or ``.npz`` with the array under a key (EPIC-Kitchens: ``feats``).

Timestamps follow ActionFormer's data loaders, which map a time ``t`` to the grid position
``(t * fps - 0.5 * num_frames) / feat_stride``: feature i covers frames
``[i * feat_stride, i * feat_stride + num_frames)``, i.e. ``[i * feat_stride / fps,
(i * feat_stride + num_frames) / fps]`` s, centre ``(i * feat_stride + 0.5 * num_frames) / fps``.
``fps`` is ``default_fps`` when the release fixes one (EPIC-Kitchens: 30) and the video's own
``fps`` otherwise (THUMOS14's I3D ran at each video's frame rate), so THUMOS stores differ in
``fps``, ``window_s`` and ``stride_s``; each store records its own.

These releases have no audio features. Given the benchmark's videos (``--videos-dir``,
``dataset.import.videos_dir``), audio features are extracted from each video's sound on exactly
the released grid, row ``i`` from row ``i``'s seconds, with the configured audio encoder
(:mod:`pipeline.importers.grid_audio`; ``audio_present: true``, the encoder's config and the grid
recorded in each store). A video that cannot give audio (unreadable, no audio stream) fails the
import or is listed as failed (``--on-error``, ``extraction.on_error``); a video file that is
absent follows ``--missing`` like an absent feature file. Without videos a store gets a zero-width
audio array, ``(T, 0)``, with ``audio_present: false`` and encoder ``{"name": "none", "dim": 0}``:
nothing is invented, statistics over zero columns are empty, and a run must use ``modalities:
[visual]``.

Every video's rows are checked against its duration, the annotations' and, given the video,
the probed file's (:func:`pipeline.importers.grid_audio.check_grid_duration`), and every feature
file must have the width of the others (the release's ``input_dim`` when it fixes one).

Annotations are rewritten in UnAV format (``--annotations-out``): subsets mapped by
``subset_map`` (ActionFormer trains THUMOS14 on its validation videos and tests on its test
videos; EPIC-Kitchens trains on training and tests on validation), a ``validation_fraction`` of
the training videos held out for our trainer's model selection (the releases have no third
split; ActionFormer keeps the last epoch instead), exact duplicate events removed, events with
``start >= end`` dropped, events clipped to ``[0, duration]`` and label ids renumbered ``0..C-1``
in source order when some ids have no event (EPIC nouns), the source ids kept under the
top-level key ``source_label_ids``. The counts of each change are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.importers.common import (
    FeatureImportError,
    FrameGrid,
    ImportedVideo,
    ImportReport,
    ImportSettings,
    VideoExtractionError,
    add_import_arguments,
    assign_subsets,
    load_feature_array,
    names_from_out,
    parse_subset_map,
    run_import,
    summary_line,
    write_annotations,
)
from pipeline.importers.grid_audio import (
    GridAudioExtractor,
    VideoFolder,
    add_grid_audio_arguments,
    audio_on_grid,
    check_grid_duration,
    grid_audio_options,
)
from pipeline.store import StoreError

Event = tuple[float, float, str, int]  # (start_s, end_s, label, source label_id)


@dataclass(frozen=True)
class Release:
    """Feature layout and split convention of one ActionFormer-format release."""

    feat_stride: int  # frames between consecutive feature rows
    num_frames: int  # frames each feature row sees
    default_fps: float | None  # fixed frame rate, or None to use each video's "fps"
    file_ext: str  # feature file extension (.npy or .npz)
    npz_key: str | None  # array key inside .npz files
    input_dim: int | None  # feature width (None: any, the same for every video)
    subset_map: Mapping[str, str]  # release subset (lower case) -> train/validation/test
    visual_encoder: str  # encoder name recorded in the stores
    file_prefix: str = ""  # feature file name prefix
    validation_fraction: float = 0.1  # share of train videos held out for model selection
    details: Mapping[str, Any] = field(default_factory=dict)


RELEASES: dict[str, Release] = {
    "thumos14": Release(
        feat_stride=4,
        num_frames=16,
        default_fps=None,
        file_ext=".npy",
        npz_key=None,
        input_dim=2048,
        subset_map={"validation": "train", "test": "test"},
        visual_encoder="i3d_rgb_flow_kinetics",
    ),
    "epic_kitchens": Release(
        feat_stride=16,
        num_frames=32,
        default_fps=30.0,
        file_ext=".npz",
        npz_key="feats",
        input_dim=2304,
        subset_map={"training": "train", "validation": "test"},
        visual_encoder="slowfast_epic100",
    ),
}


def read_database(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``database`` object of an ActivityNet/ActionFormer-style JSON; checks each entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        database = json.loads(path.read_text(encoding="utf-8"))["database"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise FeatureImportError(f"{path} is not JSON with a 'database' object: {err!r}") from err
    for video_id, entry in database.items():
        missing = [key for key in ("subset", "duration", "annotations") if key not in entry]
        if missing:
            raise FeatureImportError(f"{path}: video {video_id!r} lacks keys {missing}")
    return database


def build_annotations(
    videos: Mapping[str, tuple[float, str, Sequence[Event]]], *, version: str
) -> tuple[dict[str, Any], dict[str, int]]:
    """UnAV-format annotations from ``vid -> (duration_s, subset, events)``, cleaned.

    Returns the annotation dict and counts of the changes: ``duplicates`` removed,
    ``empty`` events (start >= end, or outside the video) dropped, ``clipped`` events.
    """
    counts = {"duplicates": 0, "empty": 0, "clipped": 0}
    source_ids: dict[str, int] = {}
    kept: dict[str, tuple[float, str, list[tuple[float, float, str]]]] = {}
    for video_id, (duration_s, subset, events) in videos.items():
        cleaned: list[tuple[float, float, str]] = []
        for start_s, end_s, label, label_id in events:
            clipped = (max(start_s, 0.0), min(end_s, duration_s))
            if not clipped[0] < clipped[1]:
                counts["empty"] += 1
                continue
            counts["clipped"] += clipped != (start_s, end_s)
            event = (*clipped, label)
            if event in cleaned:
                counts["duplicates"] += 1
                continue
            known = source_ids.setdefault(label, label_id)
            if known != label_id:
                raise FeatureImportError(
                    f"video {video_id}: label {label!r} has id {label_id} here, {known} elsewhere"
                )
            cleaned.append(event)
        kept[video_id] = (duration_s, subset, cleaned)
    new_id = {label: i for i, label in enumerate(sorted(source_ids, key=source_ids.__getitem__))}
    database = {
        video_id: {
            "duration": duration_s,
            "subset": subset,
            "annotations": [
                {"segment": [start, end], "label": label, "label_id": new_id[label]}
                for start, end, label in events
            ],
        }
        for video_id, (duration_s, subset, events) in kept.items()
    }
    annotations = {"version": version, "database": database, "source_label_ids": source_ids}
    return annotations, counts


def import_actionformer(
    annotations_path: str | Path,
    features_dir: str | Path,
    out_dir: str | Path,
    *,
    release: str | Release,
    annotations_out: str | Path,
    missing: str = "error",
    dataset: str = "thumos14",
    encoder_set: str = "i3d",
    seed: int = 0,
    videos_dir: str | Path | None = None,
    video_pattern: str | None = None,
    audio_encoder: Mapping[str, Any] | None = None,
    on_error: str = "fail",
    batch_size: int = 64,
    device: str = "auto",
    fp16: bool = False,
) -> tuple[ImportReport, dict[str, int]]:
    """Convert the annotations, then write one store per video of a mapped subset.

    Args:
        annotations_path: the release's JSON.
        features_dir: folder of ``{prefix}{vid}{ext}`` feature files.
        out_dir: feature folder, e.g. ``results/thumos14/features/i3d``.
        release: a :data:`RELEASES` name or a :class:`Release` (for other data sets).
        annotations_out: UnAV-format annotations to write.
        missing: ``error`` or ``skip`` for videos without a feature file.
        dataset: data set name recorded in the index.
        encoder_set: feature set name recorded in the index.
        seed: seed of the choice of held-out validation videos.
        videos_dir: folder of the benchmark's videos; given, audio features are extracted from
            them on the released grid. None: zero-width audio.
        video_pattern: a video's path under ``videos_dir`` (``{vid}``, glob wildcards; see
            :class:`~pipeline.importers.grid_audio.VideoFolder`); None: ``{vid}.{mp4,mkv,...}``.
        audio_encoder: audio encoder config ``{"name": ..., **kwargs}``; None: ``classic``.
        on_error: ``fail`` or ``skip`` for a video that cannot give audio (unreadable, no
            audio stream).
        batch_size: audio windows per encoder call.
        device: device of torch audio encoders.
        fp16: half-precision audio encoding on CUDA.

    Returns the import report and the annotation clean-up counts.
    """
    spec = RELEASES[release] if isinstance(release, str) else release
    video_folder = extractor = None
    if videos_dir is not None:
        video_folder = VideoFolder(videos_dir, video_pattern)
        extractor = GridAudioExtractor(
            audio_encoder or {"name": "classic"}, batch_size=batch_size, device=device, fp16=fp16
        )
    elif video_pattern is not None or audio_encoder is not None:
        raise ValueError("a video pattern or audio encoder needs a videos folder (--videos-dir)")
    annotations_path = Path(annotations_path)
    database = read_database(annotations_path)
    subsets = assign_subsets(
        {vid: str(entry["subset"]) for vid, entry in database.items()},
        spec.subset_map,
        validation_fraction=spec.validation_fraction,
        seed=seed,
    )
    videos = {}
    for video_id, subset in sorted(subsets.items()):
        entry = database[video_id]
        events = [
            (float(item["segment"][0]), float(item["segment"][1]), item["label"], item["label_id"])
            for item in entry["annotations"]
        ]
        videos[video_id] = (float(entry["duration"]), subset, events)
    annotations, counts = build_annotations(videos, version=f"{dataset}-from-actionformer")
    write_annotations(annotations_out, annotations)

    def load(video_id: str) -> ImportedVideo:
        entry = database[video_id]
        fps = spec.default_fps or entry.get("fps")
        if not fps:
            raise FeatureImportError(
                f"{annotations_path}: video {video_id} has no 'fps' and the release no default"
            )
        grid = FrameGrid(float(fps), spec.feat_stride, spec.num_frames)
        path = Path(features_dir) / f"{spec.file_prefix}{video_id}{spec.file_ext}"
        visual = load_feature_array(path, expected_dim=spec.input_dim, npz_key=spec.npz_key)
        duration_s = float(entry["duration"])
        check_grid_duration(
            video_id,
            len(visual),
            grid,
            duration_s,
            features_file=path,
            duration_source=f"the annotations ({annotations_path})",
        )
        timestamps = grid.timestamps(len(visual))  # (T, 2) seconds of each row
        extra_attrs: dict[str, Any] = {
            "fps": grid.fps,
            "window_s": grid.window_s,
            "stride_s": grid.stride_s,
            "grid": {
                "fps": grid.fps,
                "feat_stride": spec.feat_stride,
                "num_frames": spec.num_frames,
            },
            "feature_file": str(path),
        }
        sources = {"visual": str(path)}
        if video_folder is None or extractor is None:
            audio = np.zeros((len(visual), 0), dtype=np.float32)  # (T, 0): no audio released
        else:
            audio, video_attrs, video_path = audio_on_grid(
                video_folder, extractor, video_id, grid, len(visual), features_file=path
            )  # (T, Da)
            extra_attrs.update(video_attrs)
            sources["audio"] = str(video_path)
        return ImportedVideo(
            video_id=video_id,
            visual=visual,
            audio=audio,
            timestamps=timestamps,
            duration_s=duration_s,
            audio_present=extractor is not None,
            extra_attrs=extra_attrs,
            sources=sources,
        )

    fixed = spec.default_fps
    settings = ImportSettings(
        importer=f"actionformer/{spec.visual_encoder}",
        fps=fixed,
        window_s=None if fixed is None else spec.num_frames / fixed,
        stride_s=None if fixed is None else spec.feat_stride / fixed,
        encoders={
            "visual": {"name": spec.visual_encoder, "dim": spec.input_dim},
            "audio": {"name": "none", "dim": 0} if extractor is None else extractor.config(),
        },
        sample_rate=None if extractor is None else extractor.sample_rate,
        details={
            "feat_stride": spec.feat_stride,
            "num_frames": spec.num_frames,
            "default_fps": spec.default_fps,
            "files": f"{spec.file_prefix}{{vid}}{spec.file_ext}",
            # audio from the benchmark's videos on the visual grid, or none
            "audio": "none" if extractor is None else "videos on the visual grid",
            "audio_fp16": bool(fp16) if extractor is not None else False,
        },
    )
    report = run_import(
        sorted(videos),
        load,
        settings=settings,
        out_dir=out_dir,
        missing=missing,
        annotations_path=annotations_out,
        dataset=dataset,
        encoder_set=encoder_set,
        on_error=on_error,
    )
    return report, counts


@user_errors(StoreError, VideoExtractionError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_import_arguments(parser, annotations_help="ActionFormer-format JSON (thumos14.json, ...)")
    parser.add_argument("--release", choices=sorted(RELEASES), required=True)
    parser.add_argument("--annotations-out", required=True, help="UnAV-format JSON to write")
    parser.add_argument("--feat-stride", type=int, help="override the release's feat_stride")
    parser.add_argument("--num-frames", type=int, help="override the release's num_frames")
    parser.add_argument("--default-fps", type=float, help="override the release's default_fps")
    parser.add_argument("--file-prefix", help="override the feature file name prefix")
    parser.add_argument(
        "--subset-map", nargs="+", help="SOURCE=TARGET pairs, e.g. Validation=train Test=test"
    )
    parser.add_argument(
        "--validation-fraction", type=float, help="share of train videos held out (default 0.1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out choice")
    add_grid_audio_arguments(parser)
    args = parser.parse_args(argv)
    dataset, encoder_set = names_from_out(args.out, args.dataset, args.encoder_set)
    overrides = {
        "feat_stride": args.feat_stride,
        "num_frames": args.num_frames,
        "default_fps": args.default_fps,
        "file_prefix": args.file_prefix,
        "validation_fraction": args.validation_fraction,
        "subset_map": parse_subset_map(args.subset_map) if args.subset_map else None,
    }
    spec = replace(RELEASES[args.release], **{k: v for k, v in overrides.items() if v is not None})
    report, counts = import_actionformer(
        args.annotations,
        args.features_dir,
        args.out,
        release=spec,
        annotations_out=args.annotations_out,
        missing=args.missing,
        dataset=dataset,
        encoder_set=encoder_set,
        seed=args.seed,
        **grid_audio_options(args),
    )
    print(f"{summary_line(report)}\nannotation clean-up: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
