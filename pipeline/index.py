"""The dataset-level index of an extraction, and feature statistics computed lazily with dask.

``index.json`` records what later stages need to know about the features without opening a store:
the extraction ``settings`` (what :func:`pipeline.extract.extract_video` takes, so a trained model
can re-extract a new video alike; ``null`` for imported features), ``config_hash``, the grid
(``fps``, ``window_s``, ``stride_s``), the encoders and their ``dims``, every extracted video
(store path relative to the index, snippet count, duration, ``audio_present`` and, for a video
whose decoder skipped packets, its store's ``decode_errors``) and every video that failed.
Videos are keyed by their real ids; ``store`` is the file name made from the id
(:func:`pipeline.ids.safe_name`: the id itself, or its percent-encoding when it holds other
characters than letters, digits and ``_.-``). ``stats.json`` holds the per-dimension mean and
standard deviation of each modality over the training split, used for normalisation.

Every store is read back in full and checked against the checksums in its attributes
(:func:`pipeline.store.verify_store`) before it is indexed. A store whose chunks are damaged, or
that is missing, fails the index naming it; the index removes the damaged store and the shard
manifest that lists it, so the next ``snakemake`` run extracts that shard again (its other,
intact stores are kept). Stores written before checksums are indexed unverified (``unverified``
in ``index.json``, and the index log says so).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from pipeline.annotations import DURATION_TOLERANCE_S, check_against_videos, load_annotations
from pipeline.cli import user_errors
from pipeline.io import read_json
from pipeline.store import (
    MODALITIES,
    CorruptStoreError,
    StoreError,
    StoreInfo,
    open_store,
    verify_store,
)

log = logging.getLogger(__name__)

# Unverified stores named in the index log; the rest are only counted.
UNVERIFIED_NAMES_SHOWN = 5
# Videos whose annotated and probed durations disagree, named in the index log.
MISMATCHES_SHOWN = 20


def build_index(
    manifest_paths: Sequence[str | Path],
    *,
    index_path: str | Path,
    dataset: str,
    encoder_set: str,
    annotations_path: str | Path | None = None,
    duration_tolerance_s: float = DURATION_TOLERANCE_S,
) -> dict[str, Any]:
    """Merge shard manifests into ``index.json``; every store is opened and verified.

    The grid, encoders and extraction settings are the first store's (all stores share them: they
    are hashed into the ``config_hash`` every store must match). With ``annotations_path``, every
    annotated video is compared with its store's probed duration
    (:func:`pipeline.annotations.check_against_videos`, ``duration_tolerance_s``) before the
    index is written: an event past its video's end fails here, before any training job, and
    durations that disagree are logged as a warning.

    Raises:
        AnnotationError: an annotated event ends past its video's end (file, video, annotation,
            line and both durations).
        CorruptStoreError: stores are missing or damaged (:func:`pipeline.store.verify_store`);
            the message names each one and its problem. Before raising, the damaged stores and
            the shard manifests listing them are removed, so that the shards are extracted
            again.
    """
    index_path = Path(index_path)
    root = index_path.parent
    videos: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    unverified: list[str] = []  # stores written before checksums
    damaged: list[tuple[Path, Path, str]] = []  # (manifest, store, problem)
    first: StoreInfo | None = None
    first_manifest: tuple[str | Path, str] | None = None  # (path, config hash) of the first shard
    for manifest_path in manifest_paths:
        manifest = read_json(manifest_path, "shard manifest", "run its extraction shard again")
        if first_manifest is None:
            first_manifest = (manifest_path, manifest["config_hash"])
        elif manifest["config_hash"] != first_manifest[1]:
            raise StoreError(
                f"{manifest_path} was extracted with settings {manifest['config_hash']} but "
                f"{first_manifest[0]} with {first_manifest[1]}; extract every shard again"
            )
        failed.update(manifest["failed"])
        for video_id, entry in manifest["videos"].items():
            store_path = root / entry["store"]
            if not store_path.exists():
                damaged.append((Path(manifest_path), store_path, f"{store_path} does not exist"))
                continue
            store = open_store(store_path)
            try:
                if not verify_store(store):
                    unverified.append(video_id)
            except CorruptStoreError as err:
                damaged.append((Path(manifest_path), store_path, str(err)))
                continue
            info = store.info
            if info.config_hash != manifest["config_hash"]:
                raise StoreError(
                    f"{root / entry['store']} was written with settings {info.config_hash}, "
                    f"but {manifest_path} expects {manifest['config_hash']}; extract it again"
                )
            first = first or info
            videos[video_id] = {
                "store": entry["store"],
                "num_snippets": info.num_snippets,
                "duration_s": info.require("duration_s"),
                "audio_present": info.audio_present,
            }
            if info.attrs.get("decode_errors"):  # {stream: figures} of pipeline.decode
                videos[video_id]["decode_errors"] = info.attrs["decode_errors"]
    if damaged:
        _remove_for_extraction(root, damaged)
        problems = "; ".join(problem for _, _, problem in damaged)
        manifests = sorted({str(manifest) for manifest, _, _ in damaged})
        raise CorruptStoreError(
            f"{problems}. Removed the damaged store(s) and the shard manifest(s) {manifests} that "
            "list them: run snakemake again to extract those shards again"
        )
    if first is None:
        raise StoreError(f"no video was extracted for {index_path}; see the failed list {failed}")
    if annotations_path is not None:
        _check_durations(annotations_path, videos, duration_tolerance_s)
    index = {
        "dataset": dataset,
        "encoder_set": encoder_set,
        "config_hash": first.config_hash,
        "fps": first.fps,
        "window_s": first.window_s,
        "stride_s": first.stride_s,
        "dims": first.dims,
        "encoders": first.encoders,
        "settings": first.settings,
        "videos": dict(sorted(videos.items())),
        "failed": dict(sorted(failed.items())),
        "unverified": sorted(unverified),
    }
    index_path.parent.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps(index, indent=1))
    return index


def _check_durations(
    annotations_path: str | Path, videos: dict[str, dict[str, Any]], tolerance_s: float
) -> None:
    """Refuse events past their video's probed end; log the durations that disagree."""
    probed_s = {video_id: entry["duration_s"] for video_id, entry in videos.items()}
    annotations = load_annotations(annotations_path)
    mismatches = check_against_videos(annotations, probed_s, tolerance_s=tolerance_s)
    if mismatches:
        shown = "; ".join(
            f"{video_id}: annotated {round(annotated_s, 3)} s, probed {round(video_s, 3)} s"
            for video_id, annotated_s, video_s in mismatches[:MISMATCHES_SHOWN]
        )
        log.warning(
            "%s: %d video(s) whose annotated and probed durations differ by more than "
            "dataset.duration_tolerance_s = %s s (their events fit the videos): %s%s",
            annotations_path,
            len(mismatches),
            tolerance_s,
            shown,
            " ..." if len(mismatches) > MISMATCHES_SHOWN else "",
        )


def _remove_for_extraction(root: Path, damaged: Sequence[tuple[Path, Path, str]]) -> None:
    """Remove damaged stores (only ``.zarr`` folders under ``root``) and their shard manifests:
    Snakemake then runs those shards' extraction again, which keeps their intact stores."""
    for manifest_path, store_path, _ in damaged:
        inside = store_path.resolve().is_relative_to(root.resolve())
        if store_path.suffix == ".zarr" and inside and store_path.is_dir():
            shutil.rmtree(store_path)
        manifest_path.unlink(missing_ok=True)


def feature_statistics(
    index: dict[str, Any], root: str | Path, video_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Mean and standard deviation per dimension of each modality, over ``video_ids`` (all)."""
    root = Path(root)
    video_ids = list(index["videos"]) if video_ids is None else list(video_ids)
    if not video_ids:
        raise ValueError(f"no video to compute feature statistics over in {root}")
    stats: dict[str, Any] = {"num_videos": len(video_ids)}
    for modality in MODALITIES:
        columns = [
            da.from_zarr(open_store(root / index["videos"][vid]["store"])[modality])
            for vid in video_ids
        ]
        stacked = da.concatenate(columns, axis=0)  # (sum T, D)
        mean, std = da.compute(stacked.mean(axis=0), stacked.std(axis=0))
        stats[modality] = {"mean": mean.tolist(), "std": std.tolist()}
        stats["num_snippets"] = int(stacked.shape[0])
    return stats


def write_statistics(
    index_path: str | Path, stats_path: str | Path, annotations_path: str | Path | None
) -> dict[str, Any]:
    """Write ``stats.json`` over the training split (all videos when there are no annotations)."""
    index_path = Path(index_path)
    index = json.loads(index_path.read_text())
    split, video_ids = "all", None
    if annotations_path is not None:
        database = read_json(annotations_path, "annotation file")["database"]
        video_ids = [
            vid
            for vid, entry in database.items()
            if entry.get("subset") == "train" and vid in index["videos"]
        ]
        split = "train"
    stats = {"split": split, **feature_statistics(index, index_path.parent, video_ids)}
    for modality in MODALITIES:
        if not np.all(np.isfinite(stats[modality]["mean"])):
            raise ValueError(f"{index_path}: {modality} features contain NaN or infinite values")
    Path(stats_path).write_text(json.dumps(stats))
    return stats


@user_errors(StoreError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", help="shard manifests")
    parser.add_argument("--index", required=True, help="index.json to write")
    parser.add_argument("--stats", required=True, help="stats.json to write")
    parser.add_argument(
        "--annotations",
        help="annotations: events past their video's end are refused; statistics use the "
        "train split",
    )
    parser.add_argument(
        "--duration-tolerance-s",
        type=float,
        default=DURATION_TOLERANCE_S,
        help="seconds an event may end past its video's probed end (dataset.duration_tolerance_s)",
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--encoder-set", required=True)
    args = parser.parse_args(argv)
    index = build_index(
        args.manifests,
        index_path=args.index,
        dataset=args.dataset,
        encoder_set=args.encoder_set,
        annotations_path=args.annotations,
        duration_tolerance_s=args.duration_tolerance_s,
    )
    write_statistics(args.index, args.stats, args.annotations)
    print(f"indexed {len(index['videos'])} videos, {len(index['failed'])} failed")
    for video_id, message in index["failed"].items():
        print(f"  failed: {video_id}: {message}")
    unverified = index["unverified"]
    if unverified:
        shown = ", ".join(unverified[:UNVERIFIED_NAMES_SHOWN])
        more = ", ..." if len(unverified) > UNVERIFIED_NAMES_SHOWN else ""
        print(
            f"  unverified: {len(unverified)} store(s) written before checksums, their chunks "
            f"not checked (extract them again to add checksums): {shown}{more}"
        )
    for video_id, entry in index["videos"].items():
        for kind, figures in entry.get("decode_errors", {}).items():
            print(
                f"  damaged: {video_id}: {kind}: {figures['packets']} packet(s) skipped, "
                f"{figures['frames']} corrupt frame(s), {figures['seconds']:.3f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
