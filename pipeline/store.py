"""One Zarr v3 store per video: the feature layout shared by extraction, importers and datasets.

Layout of ``{video_id}.zarr`` (all arrays chunked along T only, about 1 MiB a chunk, zstd):

- ``visual``      (T, Dv) float32: pooled visual embedding of each snippet
- ``audio``       (T, Da) float32: audio embedding of each snippet (zeros without audio)
- ``timestamps``  (T, 2) float64: ``[start_s, end_s]`` of each snippet
- ``centres``     (T,) float64: centre time of each snippet, the time a grid position stands for
- ``visual_grid`` (T, H', W', Dg) float32, optional: patch grid for sound-source localisation

Attributes: ``video_id``, ``fps``, ``window_s``, ``stride_s``, ``sample_rate``, ``encoders``
(``{"visual": {...config, "dim"}, "audio": {...}}``), ``config_hash``, ``video`` (probed
metadata), ``audio_present``, ``num_snippets``, ``format_version`` and, written last, ``complete``.

A store is written under a temporary name in the same folder and renamed into place when complete,
so a killed job never leaves a store that :func:`is_complete` accepts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20  # Zarr's advice: chunks of about 1 MiB
REQUIRED_ARRAYS = ("visual", "audio", "timestamps", "centres")
REQUIRED_ATTRS = ("video_id", "window_s", "stride_s", "config_hash", "audio_present")


class StoreError(RuntimeError):
    """A feature store is missing, incomplete or inconsistent; the message names its path."""


@dataclass(frozen=True)
class VideoFeatures:
    """The contents of one video's feature store, loaded into memory."""

    video_id: str
    visual: np.ndarray  # (T, Dv) float32
    audio: np.ndarray  # (T, Da) float32
    timestamps: np.ndarray  # (T, 2) float64, [start_s, end_s]
    attrs: dict[str, Any]
    visual_grid: np.ndarray | None = None  # (T, H', W', Dg) float32

    @property
    def num_snippets(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def centres(self) -> np.ndarray:
        """(T,) centre time of each snippet in seconds."""
        return self.timestamps.mean(axis=1)


def rows_per_chunk(row_shape: tuple[int, ...], itemsize: int) -> int:
    """Rows of an array chunked along T so that one chunk holds about :data:`CHUNK_BYTES`."""
    row_bytes = max(1, math.prod(row_shape) * itemsize)
    return max(1, CHUNK_BYTES // row_bytes)


def _json_ready(value: Any) -> Any:
    """Round-trip through JSON so that attributes hold only plain types (numpy scalars refused)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"attribute value of type {type(value).__name__} is not JSON-serialisable")


def _check_shapes(path: Path, arrays: Mapping[str, np.ndarray | None]) -> int:
    timestamps = arrays["timestamps"]
    if timestamps is None or timestamps.ndim != 2 or timestamps.shape[1] != 2:
        raise StoreError(f"{path}: timestamps must have shape (T, 2)")
    num_snippets = timestamps.shape[0]
    for name, array in arrays.items():
        if array is None:
            continue
        if array.shape[0] != num_snippets:
            raise StoreError(
                f"{path}: array {name!r} has {array.shape[0]} rows but the grid has "
                f"{num_snippets} snippets"
            )
        if not np.all(np.isfinite(array)):
            raise StoreError(f"{path}: array {name!r} contains NaN or infinite values")
    return num_snippets


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write into; renamed to ``path`` (replacing it)
    when the block ends without error, removed otherwise, so a killed or failed job never
    leaves a folder that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_store(
    path: str | Path,
    *,
    visual: np.ndarray,
    audio: np.ndarray,
    timestamps: np.ndarray,
    attrs: Mapping[str, Any],
    visual_grid: np.ndarray | None = None,
) -> Path:
    """Write one video's features atomically (temporary name, then rename) and return the path.

    Args:
        path: destination ``{video_id}.zarr``; replaced if it exists.
        visual: (T, Dv) snippet embeddings.
        audio: (T, Da) snippet embeddings.
        timestamps: (T, 2) ``[start_s, end_s]`` per snippet.
        attrs: store attributes; must hold :data:`REQUIRED_ATTRS`.
        visual_grid: optional (T, H', W', Dg) spatial embeddings.
    """
    path = Path(path)
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StoreError(f"{path}: attributes {missing} are required")
    arrays = {
        "visual": np.ascontiguousarray(visual, dtype=np.float32),
        "audio": np.ascontiguousarray(audio, dtype=np.float32),
        "timestamps": np.ascontiguousarray(timestamps, dtype=np.float64),
        "visual_grid": None
        if visual_grid is None
        else np.ascontiguousarray(visual_grid, dtype=np.float32),
    }
    num_snippets = _check_shapes(path, arrays)
    if num_snippets == 0:
        raise StoreError(f"{path}: a store needs at least one snippet")
    arrays["centres"] = arrays["timestamps"].mean(axis=1)

    with atomic_directory(path) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        compressor = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
        for name, array in arrays.items():
            if array is None:
                continue
            chunk_rows = rows_per_chunk(array.shape[1:], array.dtype.itemsize)
            group.create_array(
                name,
                data=array,
                chunks=(min(chunk_rows, num_snippets), *array.shape[1:]),
                compressors=compressor,
            )
        group.attrs.update(
            _json_ready(
                {
                    **attrs,
                    "num_snippets": num_snippets,
                    "format_version": FORMAT_VERSION,
                    "has_visual_grid": visual_grid is not None,
                }
            )
        )
        group.attrs["complete"] = True  # written last: marks the store as finished
    return path


def open_store(path: str | Path) -> zarr.Group:
    """Open a finished store read-only for lazy access; refuse missing or unfinished ones."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"feature store {path} does not exist; run the extraction stage first")
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise StoreError(f"{path} is not a readable Zarr feature store: {err}") from err
    if not group.attrs.get("complete", False):
        raise StoreError(f"{path} is incomplete (its writer was interrupted); extract it again")
    missing = [name for name in REQUIRED_ARRAYS if name not in group]
    if missing:
        raise StoreError(f"{path} lacks arrays {missing}; extract it again")
    return group


def is_complete(path: str | Path, config_hash: str | None = None) -> bool:
    """True when ``path`` is a finished store, written with ``config_hash`` when one is given."""
    try:
        group = open_store(path)
    except StoreError:
        return False
    return config_hash is None or group.attrs.get("config_hash") == config_hash


def read_store(path: str | Path, *, with_grid: bool = False) -> VideoFeatures:
    """Load one store into memory (the visual grid only when ``with_grid``)."""
    group = open_store(path)
    attrs = dict(group.attrs)
    visual_grid = None
    if with_grid:
        if "visual_grid" not in group:
            raise StoreError(
                f"{path} has no visual_grid; extract with `extraction.visual_grid: true`"
            )
        visual_grid = group["visual_grid"][...]
    return VideoFeatures(
        video_id=str(attrs["video_id"]),
        visual=group["visual"][...],
        audio=group["audio"][...],
        timestamps=group["timestamps"][...],
        attrs=attrs,
        visual_grid=visual_grid,
    )
