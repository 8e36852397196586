"""Shared machinery of the importers: feature files in, one feature store per video out.

An importer turns a benchmark's released features into the layout :mod:`pipeline.store` defines
(``{out}/{video_id}.zarr``), then writes ``{out}/shards/import.json`` (a manifest in the form the
extraction stage writes), ``{out}/index.json`` and ``{out}/stats.json`` with :mod:`pipeline.index`,
so stage 2 reads imported and extracted features alike.

Each store's ``timestamps`` are the seconds its feature rows were computed from, as the release
defines them (:class:`FrameGrid`): stage 2 maps event times onto rows through them, never through a
typed frame rate. Stores carry no ``settings`` attribute, so :mod:`pipeline.detection.infer` refuses
to run a model trained on imported features on a raw video (it cannot re-extract, e.g., I3D
features).

A video whose feature file is absent raises :class:`MissingFeaturesError` (``missing="error"``) or
is listed in the index's ``failed`` map (``missing="skip"``); a file that exists but is malformed
(wrong shape, NaN, unreadable, a width that differs from the other videos') always raises
:class:`FeatureImportError` naming the file. Features an importer computes itself from the
benchmark's videos (audio on a released visual grid, :mod:`pipeline.importers.grid_audio`) fail
with :class:`VideoExtractionError` when a video cannot give them (unreadable, no audio stream):
the import stops (``on_error="fail"``) or lists the video in ``failed`` (``on_error="skip"``), as
the extraction stage's ``extraction.on_error`` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.annotations import parse_annotations
from pipeline.ids import check_video_id
from pipeline.index import build_index, write_statistics
from pipeline.io import stable_hash, write_json_atomic
from pipeline.progress import Progress
from pipeline.store import is_complete, open_store, write_store

IMPORT_FORMAT_VERSION = 1
MISSING_POLICIES = ("error", "skip")
ON_ERROR_POLICIES = ("fail", "skip")  # extraction.on_error, for features computed from videos


class FeatureImportError(ValueError):
    """A released feature or annotation file is malformed; the message names the file."""


class MissingFeaturesError(FeatureImportError):
    """A video listed in the annotations has no feature file; the message names the path."""


class VideoExtractionError(FeatureImportError):
    """A benchmark video cannot give the features extracted from it (unreadable, no audio
    stream); the message names the video id and the file."""


@dataclass(frozen=True)
class FrameGrid:
    """Feature row ``i`` covers frames ``[i * stride, i * stride + window)`` of a stream at ``fps``.

    Row ``i`` therefore spans ``[i * stride / fps, (i * stride + window) / fps]`` seconds, centre
    ``(i * stride + window / 2) / fps``: the convention of ActionFormer (arXiv 2202.07925) and UnAV
    (arXiv 2303.12930) data loaders, which map a time ``t`` to ``(t * fps - window / 2) / stride``.
    """

    fps: float  # frame rate the features were computed at, frames per second
    stride_frames: float  # frames between the starts of consecutive feature rows
    window_frames: float  # frames each feature row sees

    @property
    def stride_s(self) -> float:
        return self.stride_frames / self.fps

    @property
    def window_s(self) -> float:
        return self.window_frames / self.fps

    def timestamps(self, num_snippets: int) -> np.ndarray:
        """(T, 2) ``[start_s, end_s]`` of the first ``num_snippets`` rows."""
        starts = np.arange(num_snippets, dtype=np.float64) * self.stride_frames / self.fps  # (T,)
        return np.stack([starts, starts + self.window_frames / self.fps], axis=1)  # (T, 2)


@dataclass
class ImportedVideo:
    """One video's features on one grid, ready for :func:`pipeline.store.write_store`."""

    video_id: str  # store id (file name of the store without .zarr)
    visual: np.ndarray  # (T, Dv) visual features
    audio: np.ndarray  # (T, Da) audio features; Da may be 0 for visual-only releases
    timestamps: np.ndarray  # (T, 2) [start_s, end_s] of each row
    duration_s: float  # video duration in seconds (from the annotations)
    audio_present: bool  # false when the release has no audio features
    extra_attrs: dict[str, Any] = field(default_factory=dict)  # e.g. trimmed counts, source files
    visual_grid: np.ndarray | None = None  # (T, H', W', Dg) spatial features, when released
    sources: dict[str, str] = field(default_factory=dict)  # modality -> file, named in errors


@dataclass(frozen=True)
class ImportSettings:
    """What identifies an import; hashed into every store's ``config_hash``.

    Args:
        importer: importer and feature set, e.g. ``"unav100/i3d_vggish"``.
        fps: frame rate the features were computed at (the store's ``fps``; ``None`` when the
            release does not say).
        window_s: seconds each row sees (``None``: differs per video, set by the loader).
        stride_s: seconds between rows (``None``: differs per video, set by the loader).
        encoders: ``{"visual": {...}, "audio": {...}}``, each with ``name`` and ``dim`` (``None``:
            taken from the first video, then required of every other).
        sample_rate: audio sample rate of the audio features, when known.
        details: further facts of the release recorded in the stores (strides, file patterns).
    """

    importer: str
    fps: float | None
    window_s: float | None
    stride_s: float | None
    encoders: Mapping[str, Mapping[str, Any]]
    sample_rate: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def config_hash(self) -> str:
        return stable_hash(
            {
                "format": IMPORT_FORMAT_VERSION,
                "importer": self.importer,
                "fps": self.fps,
                "window_s": self.window_s,
                "stride_s": self.stride_s,
                "encoders": self.encoders,
                "details": self.details,
            }
        )


@dataclass
class ImportReport:
    """What an import did: stores written or kept, videos failed, and the index written."""

    written: list[str]  # video ids whose store was written now
    kept: list[str]  # video ids whose finished store (same config hash) was kept
    failed: dict[str, str]  # video id -> why it has no store (missing="skip")
    index_path: Path
    stats_path: Path


def check_missing_policy(missing: str) -> str:
    if missing not in MISSING_POLICIES:
        raise ValueError(f"--missing must be one of {MISSING_POLICIES}, not {missing!r}")
    return missing


def load_feature_array(
    path: str | Path, *, expected_dim: int | None = None, npz_key: str | None = None
) -> np.ndarray:
    """(T, D) float32 features of one ``.npy`` file (or one key of an ``.npz`` file).

    Raises:
        MissingFeaturesError: the file does not exist.
        FeatureImportError: unreadable, not 2-D, no rows, wrong width, NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFeaturesError(f"feature file {path} does not exist")
    try:
        if npz_key is None:
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                if npz_key not in archive:
                    raise FeatureImportError(
                        f"{path} has no array {npz_key!r} (it has {sorted(archive.files)})"
                    )
                array = archive[npz_key]
    except (OSError, ValueError) as err:
        if isinstance(err, FeatureImportError):
            raise
        raise FeatureImportError(f"{path} is not a readable numpy file: {err}") from err
    if array.ndim != 2 or array.shape[0] < 1:
        raise FeatureImportError(
            f"{path} holds an array of shape {array.shape}; expected (T, D) with T >= 1"
        )
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise FeatureImportError(
            f"{path} has {array.shape[1]} feature dims; this release has {expected_dim}"
        )
    if not np.all(np.isfinite(array)):
        raise FeatureImportError(f"{path} contains NaN or infinite values")
    return array.astype(np.float32, copy=False)


def check_on_error_policy(on_error: str) -> str:
    if on_error not in ON_ERROR_POLICIES:
        raise ValueError(f"--on-error must be one of {ON_ERROR_POLICIES}, not {on_error!r}")
    return on_error


def _resolve_dims(
    settings: ImportSettings, video: ImportedVideo, dims: dict[str, int], dims_from: dict[str, str]
) -> None:
    """Fill ``dims`` from the encoders' fixed widths, else from the first video (its id goes to
    ``dims_from``); refuse a video whose widths differ, naming its file."""
    for name, array in (("visual", video.visual), ("audio", video.audio)):
        fixed = settings.encoders[name].get("dim")
        if name not in dims:
            dims[name] = int(array.shape[1] if fixed is None else fixed)
            dims_from[name] = video.video_id if fixed is None else f"the {name} encoder"
        if array.shape[1] != dims[name]:
            source = video.sources.get(name)
            raise FeatureImportError(
                f"video {video.video_id}: {name} features "
                f"{f'of {source} ' if source else ''}have {array.shape[1]} dims but this import's "
                f"have {dims[name]} (set by {dims_from[name]}); the release mixes feature sets: "
                "replace the file or leave the video out"
            )


def run_import(
    video_ids: Iterable[str],
    load_video: Callable[[str], ImportedVideo],
    *,
    settings: ImportSettings,
    out_dir: str | Path,
    missing: str,
    annotations_path: str | Path | None,
    dataset: str,
    encoder_set: str,
    on_error: str = "fail",
) -> ImportReport:
    """Write one store per video, then the manifest, ``index.json`` and ``stats.json``.

    Args:
        video_ids: store ids to import, in order.
        load_video: reads one video's features (raises :class:`MissingFeaturesError` when absent).
        settings: the import's identity; finished stores with the same hash are kept (resume).
        out_dir: the feature folder, ``results/{dataset}/features/{encoder_set}``.
        missing: ``"error"`` or ``"skip"`` for videos without feature files.
        annotations_path: UnAV-format annotations; statistics use their train split.
        dataset: data set name recorded in the index.
        encoder_set: feature set name recorded in the index.
        on_error: ``"fail"`` or ``"skip"`` for videos whose features the loader extracts and
            cannot (:class:`VideoExtractionError`: unreadable video, no audio stream).
    """
    check_missing_policy(missing)
    check_on_error_policy(on_error)
    video_ids = list(video_ids)
    progress = Progress(f"import {dataset}", len(video_ids))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_hash = settings.config_hash()
    written, kept, failed, entries = [], [], {}, {}
    dims: dict[str, int] = {}
    dims_from: dict[str, str] = {}  # modality -> what set its width (named in errors)
    for video_id in video_ids:
        store_path = out_dir / f"{check_video_id(video_id)}.zarr"
        if is_complete(store_path, config_hash):
            for name, dim in open_store(store_path).info.dims.items():
                dims.setdefault(name, dim)
                dims_from.setdefault(name, f"the finished store {store_path}")
            kept.append(video_id)
            entries[video_id] = {"store": store_path.name, "status": "kept"}
            progress.advance(cached=True)
            continue
        try:
            video = load_video(video_id)
        except MissingFeaturesError as err:
            if missing == "error":
                raise MissingFeaturesError(
                    f"video {video_id}: {err}; provide it or pass --missing skip"
                ) from err
            failed[video_id] = str(err)
            progress.skip()
            continue
        except VideoExtractionError as err:
            if on_error == "fail":
                raise VideoExtractionError(
                    f"{err}; fix or replace the file, or set extraction.on_error: skip "
                    "(--on-error skip) to list the video as failed and import the others"
                ) from err
            failed[video_id] = str(err)
            progress.skip()
            continue
        _resolve_dims(settings, video, dims, dims_from)
        encoders = {
            name: {**settings.encoders[name], "dim": int(dims[name])}
            for name in ("visual", "audio")
        }
        attrs = {
            "video_id": video_id,
            "fps": settings.fps,
            "window_s": settings.window_s,
            "stride_s": settings.stride_s,
            "sample_rate": settings.sample_rate,
            "encoders": encoders,
            "config_hash": config_hash,
            "video": {"duration_s": float(video.duration_s)},
            "audio_present": bool(video.audio_present),
            "import": {"importer": settings.importer, **settings.details},
            **video.extra_attrs,  # per-video fps, window_s, stride_s override the settings
        }
        if not all(isinstance(attrs[key], int | float) for key in ("window_s", "stride_s")):
            raise FeatureImportError(f"video {video_id}: the importer set no window_s/stride_s")
        write_store(
            store_path,
            visual=video.visual,
            audio=video.audio,
            timestamps=video.timestamps,
            attrs=attrs,
            visual_grid=video.visual_grid,
        )
        written.append(video_id)
        entries[video_id] = {"store": store_path.name, "status": "imported"}
        progress.advance(float(video.duration_s))
    manifest = {"config_hash": config_hash, "videos": entries, "failed": failed}
    manifest_path = out_dir / "shards" / "import.json"
    write_json_atomic(manifest_path, manifest, indent=1, sort_keys=True)
    index_path, stats_path = out_dir / "index.json", out_dir / "stats.json"
    build_index([manifest_path], index_path=index_path, dataset=dataset, encoder_set=encoder_set)
    write_statistics(index_path, stats_path, annotations_path)
    return ImportReport(written, kept, failed, index_path, stats_path)


def write_annotations(path: str | Path, annotations: Mapping[str, Any]) -> Path:
    """Validate an UnAV-format annotation dict with :mod:`pipeline.annotations`, then write it."""
    parse_annotations(annotations, source=str(path))
    return write_json_atomic(path, annotations, indent=1)


def assign_subsets(
    source_subsets: Mapping[str, str],
    subset_map: Mapping[str, str],
    *,
    validation_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, str]:
    """Our subset (train/validation/test) of each video; videos of unmapped subsets are left out.

    Args:
        source_subsets: video id -> the release's subset name (compared case-insensitively).
        subset_map: release subset (lower case) -> ``train``, ``validation`` or ``test``.
        validation_fraction: share of the mapped ``train`` videos moved to ``validation`` (for
            releases without a validation split: our trainer selects models on it).
        seed: seed of the deterministic choice of those videos.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), not {validation_fraction}")
    unknown = sorted(set(subset_map.values()) - {"train", "validation", "test"})
    if unknown:
        raise ValueError(f"subset map targets {unknown}; use train, validation or test")
    ours = {
        video_id: subset_map[subset.lower()]
        for video_id, subset in source_subsets.items()
        if subset.lower() in subset_map
    }
    train_ids = sorted(video_id for video_id, subset in ours.items() if subset == "train")
    num_held_out = round(validation_fraction * len(train_ids))
    if num_held_out:
        order = np.random.default_rng(seed).permutation(len(train_ids))
        for position in order[:num_held_out]:
            ours[train_ids[position]] = "validation"
    return ours


def parse_subset_map(pairs: Iterable[str]) -> dict[str, str]:
    """``["Validation=train", "Test=test"]`` -> ``{"validation": "train", "test": "test"}``."""
    subset_map = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"subset mapping {pair!r} must read SOURCE=TARGET, e.g. Test=test")
        subset_map[source.lower()] = target
    return subset_map


def summary_line(report: ImportReport) -> str:
    """One line for the CLI: counts of stores written, kept and failed."""
    return (
        f"imported {len(report.written)} videos, kept {len(report.kept)} finished stores, "
        f"{len(report.failed)} without features; index {report.index_path}"
    )


def add_import_arguments(
    parser: argparse.ArgumentParser, *, annotations_help: str, with_missing: bool = True
) -> None:
    """The arguments every importer CLI takes (``--missing`` where features are per video)."""
    parser.add_argument("--annotations", required=True, help=annotations_help)
    parser.add_argument("--features-dir", required=True, help="folder of the released features")
    parser.add_argument(
        "--out", required=True, help="feature folder to write: results/{dataset}/features/{set}"
    )
    if with_missing:
        parser.add_argument(
            "--missing",
            choices=MISSING_POLICIES,
            default="error",
            help="a video without feature files stops the import (error) or is listed (skip)",
        )
    parser.add_argument("--dataset", help="data set name for the index (default: from --out)")
    parser.add_argument(
        "--encoder-set", help="feature set name for the index (default: from --out)"
    )


def names_from_out(
    out_dir: str | Path, dataset: str | None, encoder_set: str | None
) -> tuple[str, str]:
    """``(dataset, encoder_set)``: given values, else from ``results/{dataset}/features/{set}``."""
    out_dir = Path(out_dir).resolve()
    return dataset or out_dir.parent.parent.name, encoder_set or out_dir.name
