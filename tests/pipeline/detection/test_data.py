"""Tests of pipeline.detection.data: time <-> grid, crops, padding, normalisation, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from pipeline.annotations import load_annotations
from pipeline.detection.data import (
    FeatureDataset,
    collate_videos,
    grid_to_seconds,
    load_index,
    load_stats,
    seconds_to_grid,
)
from pipeline.store import CorruptStoreError, StoreError, write_store

WINDOW_S, STRIDE_S = 0.96, 0.32
DIMS = {"visual": 4, "audio": 3}


def _write_set(
    folder: Path,
    videos: dict[str, tuple[int, str, list[tuple[float, float, int]]]],
    *,
    failed: dict[str, str] | None = None,
    std: float = 2.0,
    audio_present: bool = True,
    durations: dict[str, float] | None = None,
) -> tuple[Path, Path, Path]:
    """Stores with features ``value = snippet index + 0.01 * dim``; index, stats, annotations.

    ``videos`` maps id -> (snippets, subset, events as (start_s, end_s, label_id)); a video's
    annotated duration is the span its snippets cover unless ``durations`` gives another.
    """
    database, index_videos = {}, {}
    for video_id, (num_snippets, subset, events) in videos.items():
        starts = np.arange(num_snippets) * STRIDE_S
        timestamps = np.stack([starts, starts + WINDOW_S], axis=1)
        features = {
            name: np.arange(num_snippets)[:, None] + 0.01 * np.arange(dim)[None, :]
            for name, dim in DIMS.items()
        }
        write_store(
            folder / f"{video_id}.zarr",
            visual=features["visual"],
            audio=features["audio"],
            timestamps=timestamps,
            attrs={
                "video_id": video_id,
                "window_s": WINDOW_S,
                "stride_s": STRIDE_S,
                "config_hash": "h",
                "audio_present": audio_present,
            },
        )
        duration = (durations or {}).get(video_id, float(timestamps[-1, 1]))
        index_videos[video_id] = {
            "store": f"{video_id}.zarr",
            "num_snippets": num_snippets,
            "duration_s": duration,
            "audio_present": audio_present,
        }
        database[video_id] = {
            "duration": duration,
            "subset": subset,
            "annotations": [
                {"segment": [s, e], "label": f"c{label}", "label_id": label}
                for s, e, label in events
            ],
        }
    for video_id in failed or {}:
        database[video_id] = {
            "duration": 5.0,
            "subset": "train",
            "annotations": [{"segment": [1.0, 2.0], "label": "c0", "label_id": 0}],
        }
    index = {
        "dataset": "t",
        "encoder_set": "e",
        "config_hash": "h",
        "window_s": WINDOW_S,
        "stride_s": STRIDE_S,
        "fps": 25.0,
        "dims": DIMS,
        "encoders": {name: {"name": "x", "dim": dim} for name, dim in DIMS.items()},
        "videos": index_videos,
        "failed": failed or {},
    }
    stats = {
        "split": "train",
        "visual": {"mean": [1.0] * DIMS["visual"], "std": [std] * DIMS["visual"]},
        "audio": {"mean": [1.0] * DIMS["audio"], "std": [0.0] + [std] * (DIMS["audio"] - 1)},
    }
    paths = folder / "index.json", folder / "stats.json", folder / "annotations.json"
    paths[0].write_text(json.dumps(index))
    paths[1].write_text(json.dumps(stats))
    paths[2].write_text(json.dumps({"version": "t", "database": database}))
    return paths


def _dataset(paths: tuple[Path, Path, Path], split: str = "train", **kwargs) -> FeatureDataset:
    index_path, stats_path, annotations_path = paths
    annotations = load_annotations(annotations_path)
    return FeatureDataset(annotations, split, index_path, stats_path, **kwargs)


def test_seconds_to_grid_uses_centres_and_stride_at_the_ends() -> None:
    centres = 0.48 + 0.32 * np.arange(10)  # window 0.96, stride 0.32: snippet 0 centred at 0.48
    times = np.array([0.48, 0.80, 0.64, 0.0, 0.32, 3.36, 3.52, 5.0])
    expected = np.array([0.0, 1.0, 0.5, -1.5, -0.5, 9.0, 9.5, 9.0 + (5.0 - 3.36) / 0.32])
    np.testing.assert_allclose(seconds_to_grid(times, centres, 0.32), expected, atol=1e-12)
    np.testing.assert_allclose(grid_to_seconds(expected, centres, 0.32), times, atol=1e-12)


def test_seconds_to_grid_interpolates_uneven_centres() -> None:
    centres = np.array([0.5, 1.0, 2.0])  # a shorter last stride, as a video's tail can give
    times = np.array([0.75, 1.5, 1.75, 0.0, 2.25])
    expected = np.array([0.5, 1.5, 1.75, -1.0, 2.5])
    np.testing.assert_allclose(seconds_to_grid(times, centres, 0.5), expected, atol=1e-12)
    np.testing.assert_allclose(grid_to_seconds(expected, centres, 0.5), times, atol=1e-12)


def test_item_holds_grid_events_and_normalised_features(tmp_path: Path) -> None:
    # 20 snippets cover [0, 7.04] s; the video runs to 8 s and the 3rd event lies past the grid
    events = [(0.80, 2.08, 1), (0.0, 0.64, 0), (7.2, 7.9, 0)]
    videos = {"v0": (20, "train", events), "v1": (8, "train", [])}
    paths = _write_set(tmp_path, videos, durations={"v0": 8.0})
    dataset = _dataset(paths, modalities=("visual", "audio"))
    assert len(dataset) == 2 and dataset.labels == ("c0", "c1")
    item = dataset[0]
    assert item["video_id"] == "v0" and item["offset"] == 0 and item["num_snippets"] == 20
    # 0.80 s -> (0.80 - 0.48) / 0.32 = 1; 2.08 s -> 5; 0.0 s -> -1.5; 0.64 s -> 0.5
    torch.testing.assert_close(item["segments"], torch.tensor([[1.0, 5.0], [-1.5, 0.5]]))
    assert item["labels"].tolist() == [1, 0]
    np.testing.assert_allclose(item["centres"].numpy(), 0.48 + 0.32 * np.arange(20))
    visual = item["features"]["visual"]
    assert visual.shape == (20, 4) and visual.dtype == torch.float32
    # (i + 0.01 d - 1) / 2 for snippet i and dim d
    assert visual[5, 2].item() == pytest.approx((5 + 0.02 - 1.0) / 2.0)
    audio = item["features"]["audio"]
    assert audio[3, 0].item() == pytest.approx((3 - 1.0) / 1e-6, rel=1e-5)  # std 0 -> 1e-6 floor
    assert audio[3, 1].item() == pytest.approx((3 + 0.01 - 1.0) / 2.0)
    assert dataset[1]["segments"].shape == (0, 2)


def test_event_crossing_the_covered_span_is_clipped(tmp_path: Path) -> None:
    # 10 snippets cover [0, 9 * 0.32 + 0.96] = [0, 3.84] s, i.e. grid [-1.5, 10.5]
    paths = _write_set(tmp_path, {"v0": (10, "train", [(3.0, 5.0, 0)])}, durations={"v0": 6.0})
    segments = _dataset(paths)[0]["segments"]
    torch.testing.assert_close(segments, torch.tensor([[(3.0 - 0.48) / 0.32, 10.5]]))


def test_training_crop_reads_the_window_and_clips_events(tmp_path: Path) -> None:
    events = [(0.8, 2.08, 0), (3.04, 11.04, 1)]  # grid [1, 5] and [8, 33]
    paths = _write_set(tmp_path, {"v0": (40, "train", events)})
    dataset = _dataset(paths, training=True, max_seq_len=16, min_kept_fraction=0.3, seed=3)
    seen = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        item = dataset[0]
        offset = item["offset"]
        seen.add(offset)
        assert 0 <= offset <= 24
        expected_visual = (np.arange(offset, offset + 16)[:, None] + 0.01 * np.arange(4) - 1) / 2
        np.testing.assert_allclose(item["features"]["visual"].numpy(), expected_visual, atol=1e-6)
        window = (offset - 0.5, offset + 15.5)
        expected = []
        for (start, end), label in (((1.0, 5.0), 0), ((8.0, 33.0), 1)):
            clipped = (max(start, window[0]), min(end, window[1]))
            if clipped[1] > clipped[0] and (clipped[1] - clipped[0]) / (end - start) >= 0.3:
                expected.append((clipped[0] - offset, clipped[1] - offset, label))
        got = torch.cat([item["segments"], item["labels"][:, None].float()], dim=1)  # (N, 3)
        np.testing.assert_allclose(got.numpy(), np.reshape(expected, (-1, 3)), atol=1e-6)
        assert len(got) >= 1  # crops that keep an event are preferred
        dataset.set_epoch(epoch)
        assert dataset[0]["offset"] == offset  # a crop is a function of (seed, epoch, item)
    assert len(seen) > 1


def test_collate_pads_with_a_mask(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, {"a": (10, "train", [(0.8, 2.08, 0)]), "b": (40, "train", [])})
    dataset = _dataset(paths, training=True, max_seq_len=16)
    batch = collate_videos([dataset[0], dataset[1]], pad_multiple=8, min_length=16)
    assert batch["inputs"]["visual"].shape == (2, 16, 4)
    assert batch["inputs"]["audio"].shape == (2, 16, 3)
    assert batch["mask"].sum(dim=1).tolist() == [10, 16]
    assert torch.all(batch["inputs"]["visual"][0, 10:] == 0)
    assert batch["video_ids"] == ["a", "b"]
    assert len(batch["gt_segments"]) == 2 and batch["gt_labels"][1].dtype == torch.int64
    whole = _dataset(paths, training=False)
    batch = collate_videos([whole[0]], pad_multiple=8)
    assert batch["inputs"]["visual"].shape == (1, 16, 4)  # 10 snippets -> 16, a multiple of 8
    batch = collate_videos([whole[1]], pad_multiple=16)
    assert batch["inputs"]["visual"].shape == (1, 48, 4) and batch["mask"].sum() == 40


def test_silent_video_has_zero_audio(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, {"v0": (6, "train", [(0.5, 1.0, 0)])}, audio_present=False)
    item = _dataset(paths)[0]
    assert torch.all(item["features"]["audio"] == 0)
    assert item["features"]["visual"].abs().sum() > 0 and item["audio_present"] is False


def test_nan_features_name_the_video_and_store(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, {"v0": (6, "train", [(0.5, 1.0, 0)]), "bad": (6, "train", [])})
    group = zarr.open_group(tmp_path / "bad.zarr", mode="r+")
    visual = group["visual"][...]
    visual[2, 1] = np.nan
    group["visual"][...] = visual
    dataset = _dataset(paths)
    assert dataset[1]["video_id"] == "v0"
    with pytest.raises(ValueError, match=r"video bad: feature store .*bad\.zarr has NaN"):
        dataset[0]


@pytest.mark.parametrize("cache", [False, True])
def test_a_chunk_that_does_not_decode_names_the_store_and_the_array(
    tmp_path: Path, cache: bool
) -> None:
    # Damage found after the index (a disk failing mid-training) is Zarr's bare blosc error
    # unless the loader reads through the store's reader.
    paths = _write_set(tmp_path, {"v0": (6, "train", [(0.5, 1.0, 0)]), "bad": (6, "train", [])})
    chunk = next(
        path
        for path in (tmp_path / "bad.zarr" / "audio").rglob("*")
        if path.is_file() and path.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[:16] = bytes(byte ^ 0xFF for byte in data[:16])  # the compressed frame's header
    chunk.write_bytes(bytes(data))
    dataset = _dataset(paths, cache=cache)
    assert dataset[1]["video_id"] == "v0"
    with pytest.raises(CorruptStoreError, match=r"bad\.zarr: array 'audio' has a chunk"):
        dataset[0]


def test_missing_store_errors_or_skips(tmp_path: Path) -> None:
    failed = {"lost": "cannot decode"}
    paths = _write_set(tmp_path, {"v0": (6, "train", [(0.5, 1.0, 0)])}, failed=failed)
    with pytest.raises(StoreError, match=r"video lost .*cannot decode.*index\.json"):
        _dataset(paths, missing="error")
    dataset = _dataset(paths, missing="skip")
    assert dataset.skipped == ["lost"] and len(dataset) == 1
    # a video the index does not list at all
    index = json.loads(paths[0].read_text())
    index["failed"] = {}
    paths[0].write_text(json.dumps(index))
    with pytest.raises(StoreError, match=r"video lost .*no feature store.*index\.json"):
        _dataset(paths, missing="error")


def test_stats_dims_must_match_the_index(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, {"v0": (6, "train", [(0.5, 1.0, 0)])})
    stats = json.loads(paths[1].read_text())
    stats["visual"]["mean"] = [0.0] * 5
    stats["visual"]["std"] = [1.0] * 5
    paths[1].write_text(json.dumps(stats))
    with pytest.raises(ValueError, match=r"recompute stats\.json"):
        _dataset(paths)
    assert load_index(paths[0]).dims == DIMS
    assert load_stats(paths[1]).std["audio"][0] == pytest.approx(1e-6)


def test_cache_keeps_videos_in_memory(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, {"v0": (40, "train", [(0.8, 2.08, 0)])})
    cached = _dataset(paths, training=True, max_seq_len=16, seed=1, cache=True)
    cached[0]
    shutil.rmtree(tmp_path / "v0.zarr")  # a cached dataset never reads the store again
    for epoch in range(3):
        cached.set_epoch(epoch)
        item = cached[0]
        offset = item["offset"]
        expected = (np.arange(offset, offset + 16)[:, None] + 0.01 * np.arange(4) - 1) / 2
        np.testing.assert_allclose(item["features"]["visual"].numpy(), expected, atol=1e-6)
    with pytest.raises(
        StoreError, match=r"video v0 .*is listed but its store .*v0\.zarr is absent"
    ):
        _dataset(paths)


def test_extraction_record_reads_the_index_not_the_stores(tmp_path: Path) -> None:
    paths = _write_set(tmp_path, {"v0": (6, "train", [(0.5, 1.0, 0)])})
    index = json.loads(paths[0].read_text())
    index["settings"] = {"fps": 25.0, "window_s": WINDOW_S, "stride_s": STRIDE_S}
    paths[0].write_text(json.dumps(index))
    shutil.rmtree(tmp_path / "v0.zarr")  # the first (and only) store cannot be opened
    record = load_index(paths[0]).extraction_record()
    assert record["settings"] == index["settings"]
    assert record["dims"] == DIMS and record["config_hash"] == "h" and record["fps"] == 25.0
    del index["settings"]  # an index written before the index recorded the settings
    paths[0].write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"index\.json was written before .*rerun the index step"):
        load_index(paths[0]).extraction_record()
