"""Synthetic feature sets with a planted signal, for smoke tests and benchmarks of stage 2.

Writes what the extraction stage would (one store per video, ``index.json``, ``stats.json``) plus
a UnAV-100-format annotation file, without any video: each snippet's features are Gaussian noise,
and snippets inside an event of class ``c`` get ``signal`` times a fixed random unit vector of
class ``c`` added, in every modality. A detector that learns anything finds the events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.index import build_index, write_statistics
from pipeline.store import write_store


@dataclass(frozen=True)
class SyntheticFeatureSet:
    """Paths of a written synthetic feature set."""

    index_path: Path  # index.json, stores beside it
    stats_path: Path  # stats.json over the train split
    annotations_path: Path  # UnAV-100-format annotations
    labels: tuple[str, ...]  # class names, labels[label_id]


def write_synthetic_features(
    folder: str | Path,
    *,
    videos_per_split: Mapping[str, int] | None = None,
    num_classes: int = 3,
    dims: Mapping[str, int] | None = None,
    window_s: float = 0.96,
    stride_s: float = 0.32,
    snippets: tuple[int, int] = (40, 80),
    events_per_video: tuple[int, int] = (1, 3),
    event_snippets: tuple[int, int] = (6, 16),
    signal: float = 3.0,
    failed: Sequence[str] = (),
    seed: int = 0,
) -> SyntheticFeatureSet:
    """Write a synthetic feature set under ``folder`` and return its paths.

    Args:
        folder: output folder (created).
        videos_per_split: number of videos per subset; default 8 train, 4 validation, 4 test.
        num_classes: event classes.
        dims: feature dimension per modality; default visual 16, audio 8.
        window_s: snippet window in seconds.
        stride_s: snippet stride in seconds.
        snippets: inclusive range of snippets per video.
        events_per_video: inclusive range of events per video (events may overlap).
        event_snippets: inclusive range of an event's length in snippet strides.
        signal: amplitude of the class vector added inside events (noise has unit variance).
        failed: extra train-split video ids, annotated but listed as failed in the index.
        seed: seed of everything drawn.
    """
    folder = Path(folder)
    videos_per_split = videos_per_split or {"train": 8, "validation": 4, "test": 4}
    dims = dict(dims or {"visual": 16, "audio": 8})
    rng = np.random.default_rng(seed)
    labels = tuple(f"class_{c}" for c in range(num_classes))
    prototypes = {
        name: _unit_rows(rng.standard_normal((num_classes, dim))) for name, dim in dims.items()
    }
    database: dict[str, dict] = {}
    manifest: dict[str, dict] = {"config_hash": "synthetic", "videos": {}, "failed": {}}
    for split, count in videos_per_split.items():
        for number in range(count):
            video_id = f"{split}_{number:03d}"
            num_snippets = int(rng.integers(snippets[0], snippets[1] + 1))
            starts = np.arange(num_snippets) * stride_s
            timestamps = np.stack([starts, starts + window_s], axis=1)  # (T, 2)
            centres = timestamps.mean(axis=1)
            duration_s = float(timestamps[-1, 1])
            features = {
                name: rng.standard_normal((num_snippets, dim)) for name, dim in dims.items()
            }
            annotations = []
            for _ in range(int(rng.integers(events_per_video[0], events_per_video[1] + 1))):
                label_id = int(rng.integers(num_classes))
                length = int(rng.integers(event_snippets[0], event_snippets[1] + 1))
                first = int(rng.integers(0, max(1, num_snippets - length)))
                last = min(first + length, num_snippets) - 1
                inside = slice(first, last + 1)
                for name in dims:
                    features[name][inside] += signal * prototypes[name][label_id]
                segment = [
                    round(centres[first] - stride_s / 2, 4),
                    round(centres[last] + stride_s / 2, 4),
                ]
                annotations.append(
                    {"segment": segment, "label": labels[label_id], "label_id": label_id}
                )
            database[video_id] = {
                "duration": duration_s,
                "subset": split,
                "annotations": annotations,
            }
            attrs = {
                "video_id": video_id,
                "fps": 25.0,
                "window_s": window_s,
                "stride_s": stride_s,
                "config_hash": "synthetic",
                "audio_present": True,
                "encoders": {name: {"name": "synthetic", "dim": dim} for name, dim in dims.items()},
                "settings": {"fps": 25.0, "window_s": window_s, "stride_s": stride_s},
                "video": {"duration_s": duration_s},
            }
            write_store(
                folder / "stores" / f"{video_id}.zarr",
                visual=features["visual"],
                audio=features["audio"],
                timestamps=timestamps,
                attrs=attrs,
            )
            manifest["videos"][video_id] = {"store": f"stores/{video_id}.zarr"}
    for video_id in failed:  # annotated in the train split, but extraction "failed"
        manifest["failed"][video_id] = "synthetic failure: the video could not be decoded"
        database[video_id] = {
            "duration": 10.0,
            "subset": "train",
            "annotations": [{"segment": [1.0, 3.0], "label": labels[0], "label_id": 0}],
        }
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    annotations_path = folder / "annotations.json"
    annotations_path.write_text(json.dumps({"version": "synthetic", "database": database}))
    index_path, stats_path = folder / "index.json", folder / "stats.json"
    build_index(
        [manifest_path], index_path=index_path, dataset="synthetic", encoder_set="synthetic"
    )
    write_statistics(index_path, stats_path, annotations_path)
    return SyntheticFeatureSet(index_path, stats_path, annotations_path, labels)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
