"""Packed, dataset-wide feature arrays: a derived copy of the stores for fast training reads.

Training reads one crop of every video per epoch. Read from the per-video Zarr stores, each crop
costs opening a store (its attributes and every array's metadata) and decompressing whole chunks;
on UnAV-100-shaped data that is several times slower than loading the release's ``.npy`` files
(``bench/loader_throughput.py``). The packed copy holds every video of an index in one flat
array per modality, memory-mapped, so a crop is one slice of a file already open:

- ``visual.npy``  (sum T, Dv) float32 and ``audio.npy`` (sum T, Da) float32: the stores' rows,
  video after video, in the index's order;
- ``centres.npy`` (sum T,) float64: each snippet's centre time;
- ``offsets.npy`` (N + 1,) int64: video ``i`` owns rows ``offsets[i]:offsets[i + 1]``;
- ``manifest.json``: ``video_ids``, each video's ``audio_present``, the index's ``window_s`` and
  ``stride_s``, ``dims``, ``format_version`` and ``index_hash``, the hash of the ``index.json``
  it was packed from. Written last: a folder without it is unfinished.

The stores stay the source of truth (the packed copy is rebuilt from them, never edited): a
packed folder whose ``index_hash`` differs from the index a job reads is refused, naming both.
Plain ``.npy`` rather than Zarr: an uncompressed memory map is the one layout whose read of a
crop costs no more than copying its bytes (features such as I3D's barely compress, and Zarr's
per-read overhead is what the packed copy exists to avoid).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.io import read_json, stable_hash, write_json_atomic
from pipeline.progress import Progress
from pipeline.store import MODALITIES, StoreError, open_store

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = {"visual": np.float32, "audio": np.float32, "centres": np.float64}


class PackedError(StoreError):
    """A packed folder that is missing, unfinished, stale or inconsistent."""


def index_hash(index_content: dict[str, Any]) -> str:
    """Hash of an ``index.json`` object: a packed folder is valid for that index only."""
    return stable_hash(index_content, length=16)


def pack_index(index_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Copy every store of the index at ``index_path`` into packed arrays in ``out_dir``.

    Each array is written under a temporary name through a memory map (one video's rows in memory
    at a time) and renamed into place; ``manifest.json`` comes last.

    Returns:
        the manifest written.
    """
    index_path, out_dir = Path(index_path), Path(out_dir)
    index = read_json(index_path, "feature index", "run the extraction first")
    videos = index["videos"]
    video_ids = list(videos)
    if not video_ids:
        raise PackedError(f"{index_path} lists no video to pack")
    lengths = np.array([int(videos[vid]["num_snippets"]) for vid in video_ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (N + 1,)
    dims = {name: int(index["dims"][name]) for name in MODALITIES}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # unfinished from here until the end
    temporary = {name: out_dir / f".{name}.npy.part" for name in ARRAYS}
    total = int(offsets[-1])  # sum T; a plain int, as the npy header must hold
    shapes = {name: (total, dims[name]) for name in MODALITIES} | {"centres": (total,)}
    try:
        arrays = {
            name: np.lib.format.open_memmap(
                temporary[name], mode="w+", dtype=ARRAYS[name], shape=shapes[name]
            )
            for name in ARRAYS
        }
        progress = Progress(f"pack {index_path}", len(video_ids))
        for position, video_id in enumerate(video_ids):
            store = open_store(index_path.parent / videos[video_id]["store"])
            # the store's reader: a damaged chunk or NaN is its CorruptStoreError/StoreError
            features = store.read()
            rows = slice(offsets[position], offsets[position + 1])
            for name in ARRAYS:
                values = store["centres"][...] if name == "centres" else getattr(features, name)
                if len(values) != lengths[position]:
                    raise PackedError(
                        f"{store.path}: '{name}' has {len(values)} rows but {index_path} lists "
                        f"{lengths[position]} snippets; rebuild the index"
                    )
                arrays[name][rows] = values
            progress.advance()
        for array in arrays.values():
            array.flush()
        arrays.clear()  # unmaps the files before they are renamed
        for name, path in temporary.items():
            os.replace(path, out_dir / f"{name}.npy")
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    np.save(out_dir / "offsets.npy", offsets)
    manifest = {
        "format_version": FORMAT_VERSION,
        "index_hash": index_hash(index),
        "index": str(index_path),
        "video_ids": video_ids,
        "audio_present": [bool(videos[vid]["audio_present"]) for vid in video_ids],
        "window_s": float(index["window_s"]),
        "stride_s": float(index["stride_s"]),
        "dims": dims,
    }
    write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


class PackedFeatures:
    """A packed folder opened for reading; arrays are memory-mapped on first use in each process
    (so a DataLoader worker maps the files itself instead of receiving copies).

    Args:
        folder: the packed folder (``manifest.json`` and the arrays).
        index_content: the ``index.json`` object the reader uses; the folder must be packed from it.
    """

    def __init__(self, folder: str | Path, index_content: dict[str, Any]) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise PackedError(
                f"{self.folder} holds no finished packed features (no {MANIFEST}); run the "
                "workflow's pack_features rule (or python -m pipeline.packed)"
            )
        self.manifest = read_json(manifest_path, "packed features manifest")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise PackedError(
                f"{manifest_path}: format_version {self.manifest.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; pack the features again"
            )
        expected = index_hash(index_content)
        if self.manifest.get("index_hash") != expected:
            raise PackedError(
                f"{self.folder} was packed from another index (hash "
                f"{self.manifest.get('index_hash')}, the index read now has {expected}): the "
                "stores changed since; pack the features again"
            )
        self.rows = {vid: position for position, vid in enumerate(self.manifest["video_ids"])}
        self.offsets = np.load(self.folder / "offsets.npy")  # (N + 1,)
        if len(self.offsets) != len(self.rows) + 1:
            raise PackedError(
                f"{self.folder}: offsets.npy has {len(self.offsets)} entries for "
                f"{len(self.rows)} videos; pack the features again"
            )
        self._arrays: dict[str, np.ndarray] = {}
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"], state["_pid"] = {}, -1  # maps are never pickled, only reopened
        return state

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped flat array ``name`` (visual, audio or centres)."""
        if self._pid != os.getpid():
            self._arrays, self._pid = {}, os.getpid()
        if name not in self._arrays:
            path = self.folder / f"{name}.npy"
            if not path.is_file():
                raise PackedError(f"{path} is missing; pack the features again")
            array = np.load(path, mmap_mode="r")
            if len(array) != self.offsets[-1]:
                raise PackedError(
                    f"{path} has {len(array)} rows, offsets.npy {self.offsets[-1]}; pack the "
                    "features again"
                )
            self._arrays[name] = array
        return self._arrays[name]

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.rows

    def rows_of(self, video_id: str) -> slice:
        """The rows of ``video_id`` in every flat array."""
        if video_id not in self.rows:
            raise PackedError(f"video {video_id} is not in {self.folder}; pack the features again")
        position = self.rows[video_id]
        return slice(int(self.offsets[position]), int(self.offsets[position + 1]))

    def audio_present(self, video_id: str) -> bool:
        return bool(self.manifest["audio_present"][self.rows[video_id]])


@user_errors(StoreError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="index.json of the feature stores")
    parser.add_argument("--out", required=True, help="packed folder to write")
    args = parser.parse_args(argv)
    manifest = pack_index(args.index, args.out)
    print(f"packed {len(manifest['video_ids'])} videos into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
