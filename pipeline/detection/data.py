"""Stage 2's data: per-video feature stores as a torch ``Dataset`` of detection examples.

Times become grid positions through each store's own ``centres`` array: position ``i`` stands for
snippet ``i``, whose centre is ``centres[i]`` seconds. A time between two centres is linearly
interpolated; a time before the first or after the last centre is extrapolated with the store's
``stride_s``. Nothing is re-derived from a typed frame rate.

An event is kept on the part of the time line the snippets cover, ``[timestamps[0, 0],
timestamps[-1, 1]]`` (in grid units ``[-w / 2s, T - 1 + w / 2s]`` for window ``w`` and stride
``s``); an event outside it is dropped, an event crossing its border is clipped.

Training examples are random crops of ``max_seq_len`` snippets, as ActionFormer (arXiv 2202.07925)
trains on long videos: an event cut by the crop border is clipped to the crop and kept when at
least ``min_kept_fraction`` of its length lies inside. Shorter videos are padded by
:func:`collate_videos` and the mask marks the valid snippets. Crop positions come from a generator
seeded with ``(seed, epoch, item)``, so a run resumed at an epoch boundary draws the same crops.
"""

# Over 400 lines on purpose: the time <-> grid conversion, the crops and the padding are one
# contract (grid position i = snippet i) that the dataset, the collate function and inference share.

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pipeline.annotations import AnnotationSet
from pipeline.packed import PackedFeatures
from pipeline.store import FeatureStore, StoreError, open_store

log = logging.getLogger(__name__)

MODALITIES = ("visual", "audio")
STD_FLOOR = 1e-6
MAX_CROP_TRIES = 10
INDEX_KEYS = ("window_s", "stride_s", "dims", "encoders", "videos", "failed")


@dataclass(frozen=True)
class FeatureIndex:
    """The extraction stage's ``index.json``: which stores exist, and with which encoders.

    Args:
        path: the index file; store paths in it are relative to its folder.
        content: the parsed JSON object.
    """

    path: Path
    content: dict[str, Any]

    @property
    def videos(self) -> dict[str, dict[str, Any]]:
        return self.content["videos"]

    @property
    def failed(self) -> dict[str, str]:
        return self.content["failed"]

    @property
    def dims(self) -> dict[str, int]:
        return {name: int(dim) for name, dim in self.content["dims"].items()}

    def store_path(self, video_id: str) -> Path:
        """Absolute path of a listed video's store."""
        return self.path.parent / self.videos[video_id]["store"]

    def extraction_record(self) -> dict[str, Any]:
        """What a trained model needs to know about its features (re-extraction included), read
        from the index alone: ``settings`` is what :func:`pipeline.extract.extract_video` takes
        (``None`` for imported features)."""
        if "settings" not in self.content:
            raise ValueError(
                f"{self.path} was written before the index recorded the extraction settings; "
                "rerun the index step (`snakemake --forcerun index`, or the import rule for "
                "imported features)"
            )
        keys = ("dataset", "encoder_set", "config_hash", "window_s", "stride_s", "fps", "dims")
        record = {key: self.content.get(key) for key in keys}
        record["encoders"] = self.content["encoders"]
        record["settings"] = self.content["settings"]
        return record


def load_index(path: str | Path) -> FeatureIndex:
    """Read ``index.json``; a missing file or key raises naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature index {path} does not exist; run the extraction first")
    content = json.loads(path.read_text())
    missing = [key for key in INDEX_KEYS if key not in content]
    if missing:
        raise ValueError(f"{path}: index lacks keys {missing}; rebuild it with pipeline.index")
    return FeatureIndex(path=path, content=content)


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean and (floored) standard deviation of each modality.

    Args:
        mean: modality -> (D,) float32 mean.
        std: modality -> (D,) float32 standard deviation, floored at :data:`STD_FLOOR`.
        content: the ``stats.json`` object as read, kept so that a model can record it.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    content: dict[str, Any]

    def normalise(self, modality: str, features: np.ndarray, *, present: bool = True) -> np.ndarray:
        """(T, D) features standardised with this modality's statistics, as float32.

        A modality the video lacks (``present`` false: a silent video's audio, stored as zeros)
        becomes zeros after normalisation, i.e. the training mean.
        """
        if not present:
            return np.zeros(features.shape, dtype=np.float32)
        return ((features - self.mean[modality]) / self.std[modality]).astype(np.float32)


def stats_from_dict(content: Mapping[str, Any], *, source: str = "stats") -> FeatureStats:
    """Build :class:`FeatureStats` from a ``stats.json`` object; ``source`` names it in errors."""
    mean, std = {}, {}
    for modality in MODALITIES:
        if modality not in content:
            raise ValueError(f"{source}: statistics lack the '{modality}' modality")
        mean[modality] = np.asarray(content[modality]["mean"], dtype=np.float32)
        std[modality] = np.maximum(
            np.asarray(content[modality]["std"], dtype=np.float32), STD_FLOOR
        )
        if mean[modality].shape != std[modality].shape:
            raise ValueError(f"{source}: '{modality}' mean and std differ in length")
        if not (np.all(np.isfinite(mean[modality])) and np.all(np.isfinite(std[modality]))):
            raise ValueError(f"{source}: '{modality}' statistics hold NaN or infinite values")
    return FeatureStats(mean=mean, std=std, content=json.loads(json.dumps(dict(content))))


def load_stats(path: str | Path) -> FeatureStats:
    """Read ``stats.json``; a missing file raises naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature statistics {path} do not exist; run the extraction")
    return stats_from_dict(json.loads(path.read_text()), source=str(path))


def seconds_to_grid(times_s: np.ndarray, centres: np.ndarray, stride_s: float) -> np.ndarray:
    """Grid positions of times: interpolated over ``centres``, extrapolated with ``stride_s``."""
    times_s = np.asarray(times_s, dtype=np.float64)
    last = len(centres) - 1
    positions = np.interp(times_s, centres, np.arange(len(centres), dtype=np.float64))
    before, after = times_s < centres[0], times_s > centres[-1]
    positions = np.where(before, (times_s - centres[0]) / stride_s, positions)
    return np.where(after, last + (times_s - centres[-1]) / stride_s, positions)


def grid_to_seconds(positions: np.ndarray, centres: np.ndarray, stride_s: float) -> np.ndarray:
    """Times of grid positions; the inverse of :func:`seconds_to_grid`."""
    positions = np.asarray(positions, dtype=np.float64)
    last = len(centres) - 1
    times_s = np.interp(positions, np.arange(len(centres), dtype=np.float64), centres)
    times_s = np.where(positions < 0, centres[0] + positions * stride_s, times_s)
    return np.where(positions > last, centres[-1] + (positions - last) * stride_s, times_s)


def events_to_grid(
    events: Sequence[Any],
    centres: np.ndarray,
    stride_s: float,
    extent: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) float32 event segments in grid units and (N,) int64 label ids, clipped to ``extent``.

    Args:
        events: objects with ``start_s``, ``end_s`` and ``label_id``.
        centres: (T,) snippet centres in seconds.
        stride_s: snippet stride in seconds, for extrapolation past the ends.
        extent: ``(first, last)`` grid positions an event may span; events outside are dropped.
    """
    if not events:
        return np.zeros((0, 2), dtype=np.float32), np.zeros((0,), dtype=np.int64)
    times = np.array([[event.start_s, event.end_s] for event in events], dtype=np.float64)
    labels = np.array([event.label_id for event in events], dtype=np.int64)
    segments = seconds_to_grid(times, centres, stride_s)  # (N, 2)
    segments = np.clip(segments, extent[0], extent[1])
    keep = segments[:, 1] > segments[:, 0]
    return segments[keep].astype(np.float32), labels[keep]


def crop_events(
    segments: np.ndarray,
    labels: np.ndarray,
    window: tuple[float, float],
    min_kept_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Events clipped to ``window`` (grid units), kept when ``min_kept_fraction`` lies inside."""
    clipped = np.clip(segments, window[0], window[1])  # (N, 2)
    lengths = np.maximum(segments[:, 1] - segments[:, 0], 1e-9)
    kept_fraction = (clipped[:, 1] - clipped[:, 0]) / lengths
    keep = (kept_fraction >= min_kept_fraction) & (clipped[:, 1] > clipped[:, 0])
    return clipped[keep], labels[keep]


@dataclass(frozen=True)
class _StoreRows:
    """Array ``name`` of a store, read by rows when sliced (:meth:`FeatureStore.rows`: a
    damaged chunk raises :class:`~pipeline.store.CorruptStoreError` naming store and array)."""

    store: FeatureStore
    name: str

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.store.rows(self.name, rows)


class FeatureDataset(Dataset):
    """Detection examples of one annotation split, read lazily from per-video feature stores.

    Each item is a dict: ``video_id``; ``features`` (modality -> (L, D) float32 tensor, normalised);
    ``segments`` ((N, 2) float32, grid units of the item, i.e. relative to ``offset``); ``labels``
    ((N,) int64); ``offset`` (first snippet of the crop); ``num_snippets`` (T of the video);
    ``centres`` ((T,) float64 tensor, seconds); ``stride_s``; ``duration_s``; ``audio_present``.

    Args:
        annotations: the annotation set (:func:`pipeline.annotations.load_annotations`).
        split: subset to serve (``train``, ``validation``, ``test``).
        index: the feature index, or the path of ``index.json``.
        stats: normalisation statistics, or the path of ``stats.json``.
        modalities: feature arrays to read, e.g. ``("audio", "visual")``.
        training: crop random windows of ``max_seq_len`` snippets; otherwise whole videos.
        max_seq_len: snippets per training crop.
        min_kept_fraction: least fraction of an event's length a crop must keep to keep it.
        missing: a split video without a store raises (``"error"``) or is logged and listed in
            :attr:`skipped` (``"skip"``).
        seed: seed of the crop positions (with the epoch and the item index).
        cache: keep every video read in memory (small data sets only).
        packed: read the features from this packed copy of the index's stores
            (:mod:`pipeline.packed`, checked against the index) instead of the stores themselves.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        split: str,
        index: FeatureIndex | str | Path,
        stats: FeatureStats | str | Path,
        *,
        modalities: Sequence[str] = MODALITIES,
        training: bool = False,
        max_seq_len: int | None = None,
        min_kept_fraction: float = 0.5,
        missing: str = "error",
        seed: int = 0,
        cache: bool = False,
        packed: PackedFeatures | None = None,
    ) -> None:
        self.index = index if isinstance(index, FeatureIndex) else load_index(index)
        self.stats = stats if isinstance(stats, FeatureStats) else load_stats(stats)
        self.packed = packed
        unknown = [name for name in modalities if name not in MODALITIES]
        if unknown or not modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {MODALITIES}, not {unknown}"
            )
        for name in modalities:
            if len(self.stats.mean[name]) != self.index.dims[name]:
                raise ValueError(
                    f"{self.index.path}: {name} features have {self.index.dims[name]} dims but the "
                    f"statistics have {len(self.stats.mean[name])}; recompute stats.json"
                )
            if packed is not None and packed.array(name).shape[1] != self.index.dims[name]:
                raise StoreError(
                    f"{packed.folder}: '{name}' has {packed.array(name).shape[1]} dims, "
                    f"{self.index.path} {self.index.dims[name]}; pack the features again"
                )
        if missing not in ("error", "skip"):
            raise ValueError(f"training.missing must be 'error' or 'skip', not {missing!r}")
        if training and (max_seq_len is None or max_seq_len < 1):
            raise ValueError("training.max_seq_len must be a positive number of snippets")
        self.split = split
        self.modalities = tuple(modalities)
        self.training = training
        self.max_seq_len = max_seq_len
        self.min_kept_fraction = min_kept_fraction
        self.seed = seed
        self.epoch = 0
        self.labels = tuple(annotations.labels)
        self.videos = []  # VideoAnnotation of each item
        self.skipped: list[str] = []
        for video_id, video in sorted(annotations.subset(split).videos.items()):
            reason = self._missing_reason(video_id)
            if reason is None:
                self.videos.append(video)
            elif missing == "error":
                raise StoreError(
                    f"video {video_id} of split '{split}' {reason} in {self.index.path}; "
                    "extract it or set training.missing: skip"
                )
            else:
                self.skipped.append(video_id)
                log.warning("skipping video %s of split '%s': %s", video_id, split, reason)
        self._cache: dict[str, dict[str, Any]] | None = {} if cache else None

    def _missing_reason(self, video_id: str) -> str | None:
        if video_id in self.index.failed:
            return f"failed extraction ({self.index.failed[video_id]})"
        if video_id not in self.index.videos:
            return "has no feature store"
        if not self.index.store_path(video_id).exists():
            return f"is listed but its store {self.index.store_path(video_id)} is absent"
        return None

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (crops are a function of seed, epoch and item)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def _source(self, video_id: str) -> dict[str, Any]:
        """Centres, stride, window, ``audio_present`` and lazily readable feature arrays."""
        if self._cache is not None and video_id in self._cache:
            return self._cache[video_id]
        if self.packed is not None:
            return self._packed_source(video_id)
        path = self.index.store_path(video_id)
        store = open_store(path)
        source = {
            "path": path,
            "centres": np.asarray(store.rows("centres"), dtype=np.float64),
            "stride_s": store.info.stride_s,
            "window_s": store.info.window_s,
            "audio_present": store.info.audio_present,
        }
        for name in self.modalities:
            dims = store[name].shape[1]
            if dims != len(self.stats.mean[name]):
                raise StoreError(
                    f"{path}: '{name}' has {dims} dims, the statistics "
                    f"{len(self.stats.mean[name])}; the store belongs to another extraction"
                )
            # cached: the whole array now; else only the crop's chunks, when an item is read
            source[name] = store.rows(name) if self._cache is not None else _StoreRows(store, name)
        if self._cache is not None:
            self._cache[video_id] = source
        return source

    def _packed_source(self, video_id: str) -> dict[str, Any]:
        """:meth:`_source` from the packed copy: views of the memory-mapped arrays."""
        packed, rows = self.packed, self.packed.rows_of(video_id)
        source = {
            "path": packed.folder,
            "centres": np.array(packed.array("centres")[rows]),  # a writable copy
            "stride_s": packed.manifest["stride_s"],
            "window_s": packed.manifest["window_s"],
            "audio_present": packed.audio_present(video_id),
        }
        for name in self.modalities:
            source[name] = packed.array(name)[rows]  # (T, D) view: only the crop is read
        return source

    def _features(self, video_id: str, source: dict[str, Any], name: str, window: slice) -> Any:
        """(L, D) normalised features of the snippets in ``window``; refuses NaN/inf values."""
        features = np.asarray(source[name][window])  # (L, D)
        if not np.all(np.isfinite(features)):
            raise ValueError(
                f"video {video_id}: feature store {source['path']} has NaN or infinite values in "
                f"its '{name}' array; extract the video again"
            )
        present = name != "audio" or source["audio_present"]
        return self.stats.normalise(name, features, present=present)

    def _crop_start(self, item: int, num_snippets: int, segments: np.ndarray) -> int:
        """First snippet of a training crop; prefers crops that keep at least one event."""
        rng = np.random.default_rng([self.seed % 2**64, self.epoch, item])
        start = 0
        for _ in range(MAX_CROP_TRIES):
            start = int(rng.integers(0, num_snippets - self.max_seq_len + 1))
            window = (start - 0.5, start + self.max_seq_len - 0.5)
            kept, _ = crop_events(segments, segments[:, 0], window, self.min_kept_fraction)
            if len(kept) or not len(segments):
                break
        return start

    def __getitem__(self, item: int) -> dict[str, Any]:
        video = self.videos[item]
        video_id = video.video_id
        source = self._source(video_id)
        centres, stride_s = source["centres"], source["stride_s"]
        num_snippets = len(centres)
        half_window = source["window_s"] / 2 / stride_s
        extent = (-half_window, num_snippets - 1 + half_window)  # grid span the snippets cover
        segments, labels = events_to_grid(video.events, centres, stride_s, extent)
        offset, length = 0, num_snippets
        if self.training and num_snippets > self.max_seq_len:
            offset, length = self._crop_start(item, num_snippets, segments), self.max_seq_len
            window = (offset - 0.5, offset + length - 0.5)
            segments, labels = crop_events(segments, labels, window, self.min_kept_fraction)
            segments = segments - offset
        window = slice(offset, offset + length)
        features = {
            name: torch.from_numpy(self._features(video_id, source, name, window))
            for name in self.modalities
        }
        return {
            "video_id": video_id,
            "features": features,
            "segments": torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32)),
            "labels": torch.from_numpy(labels),
            "offset": offset,
            "num_snippets": num_snippets,
            "centres": torch.from_numpy(centres),
            "stride_s": stride_s,
            "duration_s": float(video.duration_s),
            "audio_present": source["audio_present"],
        }


def collate_videos(
    items: Sequence[dict[str, Any]], *, pad_multiple: int = 1, min_length: int = 0
) -> dict[str, Any]:
    """Pad a list of items into a batch; ``mask`` (B, T) is True on real snippets.

    T is the longest item, at least ``min_length``, rounded up to a multiple of ``pad_multiple``
    (the detector's ``max_stride``). Returns ``inputs`` (modality -> (B, T, D)), ``mask``,
    ``gt_segments`` and ``gt_labels`` (lists of per-item tensors) and the per-item metadata lists
    ``video_ids``, ``offsets``, ``num_snippets``, ``centres``, ``stride_s``, ``duration_s``.
    """
    modalities = list(items[0]["features"])
    lengths = [len(item["features"][modalities[0]]) for item in items]
    padded_length = max(max(lengths), min_length)
    padded_length = -(-padded_length // pad_multiple) * pad_multiple
    mask = torch.zeros(len(items), padded_length, dtype=torch.bool)  # (B, T)
    inputs = {}
    for name in modalities:
        dim = items[0]["features"][name].shape[1]
        batch = torch.zeros(len(items), padded_length, dim, dtype=torch.float32)  # (B, T, D)
        for row, item in enumerate(items):
            batch[row, : lengths[row]] = item["features"][name]
        inputs[name] = batch
    for row, length in enumerate(lengths):
        mask[row, :length] = True
    return {
        "inputs": inputs,
        "mask": mask,
        "gt_segments": [item["segments"] for item in items],
        "gt_labels": [item["labels"] for item in items],
        "video_ids": [item["video_id"] for item in items],
        "offsets": [item["offset"] for item in items],
        "num_snippets": [item["num_snippets"] for item in items],
        "centres": [item["centres"] for item in items],
        "stride_s": [item["stride_s"] for item in items],
        "duration_s": [item["duration_s"] for item in items],
    }


class EpochSampler(Sampler[int]):
    """A random order of the items, drawn from a generator seeded with ``(seed, epoch)``.

    Unlike a sampler with one long-lived generator, the order of an epoch does not depend on the
    epochs before it, so a run resumed from an epoch checkpoint sees the same batches.

    Args:
        num_items: dataset length.
        seed: run seed.
    """

    def __init__(self, num_items: int, seed: int) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed % 2**64, self.epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())
