"""The dataset index of an extraction and its feature statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.index import build_index, feature_statistics, main, write_statistics
from pipeline.store import CorruptStoreError, StoreError, write_store

VISUAL_DIM, AUDIO_DIM = 5, 3
ENCODERS = {"visual": {"name": "classic", "dim": VISUAL_DIM}, "audio": {"name": "c", "dim": 3}}
SETTINGS = {"fps": 8.0, "window_s": 0.96, "stride_s": 0.32, "visual": {"name": "classic"}}


def _write_video(root: Path, video_id: str, num_snippets: int, seed: int, config_hash="h1"):
    """Write a store of random features; return its (visual, audio) arrays."""
    rng = np.random.default_rng(seed)
    visual = rng.normal(seed, 1.0 + seed, size=(num_snippets, VISUAL_DIM)).astype(np.float32)
    audio = rng.normal(-seed, 2.0, size=(num_snippets, AUDIO_DIM)).astype(np.float32)
    starts = np.arange(num_snippets) * 0.32
    write_store(
        root / f"{video_id}.zarr",
        visual=visual,
        audio=audio,
        timestamps=np.stack([starts, starts + 0.96], axis=1),
        attrs={
            "video_id": video_id,
            "fps": 8.0,
            "window_s": 0.96,
            "stride_s": 0.32,
            "encoders": ENCODERS,
            "settings": SETTINGS,
            "config_hash": config_hash,
            "video": {"duration_s": 0.32 * num_snippets + 0.64},
            "audio_present": video_id != "silent",
        },
    )
    return visual, audio


def _manifest(path: Path, video_ids, failed=None, config_hash="h1") -> Path:
    videos = {vid: {"store": f"{vid}.zarr", "status": "extracted"} for vid in video_ids}
    manifest = {"config_hash": config_hash, "videos": videos, "failed": failed or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def _annotated(subset: str, duration_s: float, segment=(0.5, 1.5)) -> dict:
    """One video's UnAV-100-format entry with one event."""
    event = {"segment": list(segment), "label": "dog", "label_id": 0}
    return {"duration": duration_s, "subset": subset, "annotations": [event]}


@pytest.fixture
def extraction(tmp_path):
    """Four stores in two shards, one failed video, and UnAV-style annotations."""
    root = tmp_path / "features"
    arrays = {
        "a": _write_video(root, "a", 7, seed=1),
        "b": _write_video(root, "b", 4, seed=2),
        "silent": _write_video(root, "silent", 5, seed=3),
        "d": _write_video(root, "d", 6, seed=4),
    }
    manifests = [
        _manifest(root / "shards" / "0.json", ["a", "b"], failed={"bad": "bad.mp4: corrupt"}),
        _manifest(root / "shards" / "1.json", ["silent", "d"]),
    ]
    subsets = {"a": "train", "silent": "train", "b": "validation", "d": "test"}
    database = {  # UnAV-100 format, durations those of the stores (0.32 s x T + 0.64 s)
        vid: _annotated(subset, 0.32 * len(arrays[vid][0]) + 0.64)
        for vid, subset in subsets.items()
    }
    database["bad"] = _annotated("train", 5.0)  # failed extraction: not in the statistics
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"version": "test", "database": database}, indent=1))
    return {"root": root, "arrays": arrays, "manifests": manifests, "annotations": annotations}


def test_build_index_contents(extraction):
    index_path = extraction["root"] / "index.json"
    index = build_index(
        extraction["manifests"], index_path=index_path, dataset="tiny", encoder_set="classic"
    )
    assert json.loads(index_path.read_text()) == index
    assert index["dataset"] == "tiny" and index["encoder_set"] == "classic"
    assert index["config_hash"] == "h1"
    assert (index["fps"], index["window_s"], index["stride_s"]) == (8.0, 0.96, 0.32)
    assert index["dims"] == {"visual": VISUAL_DIM, "audio": AUDIO_DIM}
    assert index["encoders"] == ENCODERS
    assert index["settings"] == SETTINGS
    assert list(index["videos"]) == ["a", "b", "d", "silent"]
    assert index["videos"]["a"] == {
        "store": "a.zarr",
        "num_snippets": 7,
        "duration_s": pytest.approx(0.32 * 7 + 0.64),
        "audio_present": True,
    }
    assert index["videos"]["silent"]["audio_present"] is False
    assert index["failed"] == {"bad": "bad.mp4: corrupt"}


def test_statistics_over_the_train_split_only(extraction):
    index_path = extraction["root"] / "index.json"
    stats_path = extraction["root"] / "stats.json"
    build_index(extraction["manifests"], index_path=index_path, dataset="t", encoder_set="c")
    stats = write_statistics(index_path, stats_path, extraction["annotations"])
    assert json.loads(stats_path.read_text()) == stats
    assert stats["split"] == "train"
    assert stats["num_videos"] == 2 and stats["num_snippets"] == 7 + 5
    arrays = extraction["arrays"]
    for position, modality in enumerate(("visual", "audio")):
        train = np.concatenate([arrays["a"][position], arrays["silent"][position]])  # (12, D)
        np.testing.assert_allclose(stats[modality]["mean"], train.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(stats[modality]["std"], train.std(axis=0), rtol=1e-5)
        everything = np.concatenate([a[position] for a in arrays.values()])
        assert not np.allclose(stats[modality]["mean"], everything.mean(axis=0), rtol=1e-3)


def test_statistics_without_annotations_use_every_video(extraction):
    index_path = extraction["root"] / "index.json"
    build_index(extraction["manifests"], index_path=index_path, dataset="t", encoder_set="c")
    stats = write_statistics(index_path, extraction["root"] / "stats.json", None)
    assert stats["split"] == "all" and stats["num_videos"] == 4
    visual = np.concatenate([v for v, _ in extraction["arrays"].values()])
    np.testing.assert_allclose(stats["visual"]["mean"], visual.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["visual"]["std"], visual.std(axis=0), rtol=1e-5)


def test_statistics_refuse_an_empty_train_split(extraction, tmp_path):
    index_path = extraction["root"] / "index.json"
    index = build_index(
        extraction["manifests"], index_path=index_path, dataset="t", encoder_set="c"
    )
    with pytest.raises(ValueError, match="no video"):
        feature_statistics(index, extraction["root"], [])


def test_index_refuses_a_store_with_another_config_hash(tmp_path):
    root = tmp_path / "features"
    _write_video(root, "a", 4, seed=1)
    _write_video(root, "stale", 4, seed=2, config_hash="old")
    manifest = _manifest(root / "shards" / "0.json", ["a", "stale"])
    with pytest.raises(StoreError, match="extract it again") as info:
        build_index([manifest], index_path=root / "index.json", dataset="t", encoder_set="c")
    assert str(root / "stale.zarr") in str(info.value)
    assert not (root / "index.json").exists()


def test_index_refuses_shards_extracted_with_different_settings(tmp_path):
    root = tmp_path / "features"
    _write_video(root, "a", 4, seed=1)
    _write_video(root, "b", 4, seed=2, config_hash="h2")
    manifests = [
        _manifest(root / "shards" / "0.json", ["a"]),
        _manifest(root / "shards" / "1.json", ["b"], config_hash="h2"),
    ]
    with pytest.raises(StoreError, match="settings") as info:
        build_index(manifests, index_path=root / "index.json", dataset="t", encoder_set="c")
    assert str(manifests[1]) in str(info.value)


def test_index_refuses_a_missing_store(tmp_path):
    root = tmp_path / "features"
    _write_video(root, "a", 4, seed=1)
    manifest = _manifest(root / "shards" / "0.json", ["a", "gone"])
    with pytest.raises(StoreError, match="does not exist") as info:
        build_index([manifest], index_path=root / "index.json", dataset="t", encoder_set="c")
    assert str(root / "gone.zarr") in str(info.value)
    assert not manifest.exists() and (root / "a.zarr").is_dir()  # the shard runs again


def test_a_damaged_store_fails_the_index_and_is_removed_for_extraction(extraction, capsys):
    """A chunk damaged on disk after extraction: the index names the store and the array,
    removes that store and its shard's manifest (so Snakemake extracts that shard again, which
    keeps its intact stores) and keeps everything else."""
    root = extraction["root"]
    chunk = root / "b.zarr" / "audio" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-4])  # a truncated chunk
    argv = [*map(str, extraction["manifests"]), "--index", str(root / "index.json")]
    assert main([*argv, "--stats", str(root / "s.json"), "--dataset", "t", "--encoder-set", "c"])
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert f"{root / 'b.zarr'}: array 'audio' does not match its checksum" in error
    assert "run snakemake again" in error and str(extraction["manifests"][0]) in error
    assert not (root / "b.zarr").exists() and not extraction["manifests"][0].exists()
    assert (root / "a.zarr").is_dir() and extraction["manifests"][1].exists()
    assert not (root / "index.json").exists()


def test_every_damaged_store_is_named_at_once(extraction):
    root = extraction["root"]
    for video_id in ("a", "d"):
        (root / f"{video_id}.zarr" / "visual" / "c" / "0" / "0").unlink()
    with pytest.raises(CorruptStoreError) as info:
        build_index(
            extraction["manifests"], index_path=root / "i.json", dataset="t", encoder_set="c"
        )
    assert "a.zarr: array 'visual'" in str(info.value) and "d.zarr: array 'visual'" in str(
        info.value
    )
    assert not any(manifest.exists() for manifest in extraction["manifests"])
    assert sorted(path.name for path in root.glob("*.zarr")) == ["b.zarr", "silent.zarr"]


def test_stores_written_before_checksums_are_indexed_unverified(extraction, capsys):
    root = extraction["root"]
    for video_id in ("a", "silent"):
        metadata = json.loads((root / f"{video_id}.zarr" / "zarr.json").read_text())
        del metadata["attributes"]["checksums"]
        (root / f"{video_id}.zarr" / "zarr.json").write_text(json.dumps(metadata))
    argv = [*map(str, extraction["manifests"]), "--index", str(root / "index.json")]
    assert (
        main([*argv, "--stats", str(root / "s.json"), "--dataset", "t", "--encoder-set", "c"]) == 0
    )
    index = json.loads((root / "index.json").read_text())
    assert list(index["videos"]) == ["a", "b", "d", "silent"]
    assert index["unverified"] == ["a", "silent"]
    assert "unverified: 2 store(s) written before checksums" in capsys.readouterr().out


def test_index_cli_fails_when_every_video_failed(tmp_path, capsys):
    root = tmp_path / "features"
    manifest = _manifest(root / "shards" / "0.json", [], failed={"x": "x.mp4: corrupt"})
    argv = [str(manifest), "--index", str(root / "index.json"), "--stats", str(root / "s.json")]
    assert main([*argv, "--dataset", "t", "--encoder-set", "c"]) == 1
    assert "no video was extracted" in capsys.readouterr().err
    assert not (root / "s.json").exists()


def test_index_cli_writes_both_files(extraction, capsys):
    root = extraction["root"]
    argv = [*map(str, extraction["manifests"]), "--index", str(root / "index.json")]
    argv += ["--stats", str(root / "stats.json"), "--annotations", str(extraction["annotations"])]
    assert main([*argv, "--dataset", "t", "--encoder-set", "c"]) == 0
    out = capsys.readouterr().out
    assert "indexed 4 videos, 1 failed" in out and "bad.mp4: corrupt" in out
    assert json.loads((root / "stats.json").read_text())["split"] == "train"


def test_index_of_imported_features_records_no_settings(tmp_path):
    root = tmp_path / "features"
    _write_video(root, "a", 4, seed=1)
    metadata = json.loads((root / "a.zarr" / "zarr.json").read_text())
    del metadata["attributes"]["settings"]  # as an importer writes it
    (root / "a.zarr" / "zarr.json").write_text(json.dumps(metadata))
    index_path = root / "index.json"
    index = build_index(
        [_manifest(root / "shards" / "0.json", ["a"])],
        index_path=index_path,
        dataset="t",
        encoder_set="c",
    )
    assert "settings" in index and index["settings"] is None


def test_index_refuses_a_store_without_a_duration(tmp_path):
    root = tmp_path / "features"
    _write_video(root, "a", 4, seed=1)
    metadata = json.loads((root / "a.zarr" / "zarr.json").read_text())
    del metadata["attributes"]["video"]
    (root / "a.zarr" / "zarr.json").write_text(json.dumps(metadata))
    manifest = _manifest(root / "shards" / "0.json", ["a"])
    with pytest.raises(StoreError, match=r"a\.zarr: attribute 'video\.duration_s' is missing"):
        build_index([manifest], index_path=root / "index.json", dataset="t", encoder_set="c")


def test_a_missing_shard_manifest_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"shard manifest .*m1\.json does not exist"):
        build_index(
            [tmp_path / "m1.json"], index_path=tmp_path / "i.json", dataset="d", encoder_set="e"
        )


def _index_argv(extraction, *extra: str) -> list[str]:
    root = extraction["root"]
    argv = [*map(str, extraction["manifests"]), "--index", str(root / "index.json")]
    argv += ["--stats", str(root / "stats.json"), "--annotations", str(extraction["annotations"])]
    return [*argv, "--dataset", "t", "--encoder-set", "c", *extra]


def test_index_refuses_events_past_the_probed_end(extraction, capsys):
    """#13 item 3: an event past the end of its video fails the index job, before training,
    naming the annotation file, the video, the event and both durations."""
    path = extraction["annotations"]
    content = json.loads(path.read_text())
    content["database"]["b"] = _annotated("validation", 1000.0, segment=(500.0, 600.0))
    path.write_text(json.dumps(content, indent=1))
    assert main(_index_argv(extraction)) == 1
    message = capsys.readouterr().err
    assert str(path) in message and "video 'b', annotation 0" in message
    assert "[500.0, 600.0]" in message and "1.92 s" in message and "1000.0 s" in message
    assert not (extraction["root"] / "index.json").exists()


def test_index_tolerance_and_duration_mismatches(extraction, capsys, caplog):
    # b lasts 1.92 s; its annotation says 3.5 s and its event ends at 2.5 s.
    path = extraction["annotations"]
    content = json.loads(path.read_text())
    content["database"]["b"] = _annotated("validation", 3.5, segment=(1.0, 2.5))
    path.write_text(json.dumps(content, indent=1))
    assert main(_index_argv(extraction, "--duration-tolerance-s", "0.5")) == 1
    assert "video 'b', annotation 0" in capsys.readouterr().err
    # Within 1 s the event fits; the durations that disagree by more are only a warning.
    assert main(_index_argv(extraction, "--duration-tolerance-s", "1.0")) == 0
    assert "b: annotated 3.5 s, probed 1.92 s" in caplog.text


def test_statistics_name_an_annotation_file_that_does_not_parse(extraction):
    """#13 item 10: `Unterminated string starting at: line 1 column 31` named no file."""
    index_path = extraction["root"] / "index.json"
    build_index(extraction["manifests"], index_path=index_path, dataset="t", encoder_set="c")
    broken = extraction["annotations"]
    broken.write_text('{"database": {"a": {"subset": "train}}}')
    with pytest.raises(ValueError, match=r"Unterminated string .* line 1 column 31") as caught:
        write_statistics(index_path, extraction["root"] / "stats.json", broken)
    assert str(broken) in str(caught.value)
