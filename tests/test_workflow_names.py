"""The Snakemake workflow on a video folder whose file names hold spaces, accents, quotes, '#',
'%', braces and a shell variable: every name is a video id, its store is named safely."""

from __future__ import annotations

import json
import unicodedata

import pytest

from pipeline.ids import safe_name
from pipeline.store import read_store
from tests import media
from tests.test_workflow import check_ok, snakemake, write_config

pytestmark = pytest.mark.slow

NAMES = [
    "my vidéo #1",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    'it\'s "quoted" $HOME 100%',
    "a{b}c",  # Snakemake would read {b} in an input as a wildcard
]


def test_any_file_name_runs_through_extraction_and_the_index(tmp_path):
    videos_dir = tmp_path / "vidéos #1"
    videos_dir.mkdir()
    for name in NAMES:
        media.make_video(videos_dir / f"{name}.mp4", duration_s=1.0, fps=8)
    workdir = tmp_path / "work"
    config = {
        "dataset": {"name": "vids", "source": "videos", "videos_dir": str(videos_dir)},
        "extraction": {"shard_size": len(NAMES), "on_error": "fail"},
    }
    write_config(workdir, config)
    check_ok(snakemake(workdir, "results/vids/features/classic/index.json"))
    features = workdir / "results" / "vids" / "features" / "classic"
    index = json.loads((features / "index.json").read_text())
    assert index["failed"] == {} and index["unverified"] == []
    assert {video_id: entry["store"] for video_id, entry in index["videos"].items()} == {
        name: f"{safe_name(name)}.zarr" for name in NAMES
    }
    for name in NAMES:
        assert read_store(features / f"{safe_name(name)}.zarr").video_id == name
    assert sorted(path.name for path in features.iterdir() if path.is_dir()) == sorted(
        ["shards", *(f"{safe_name(name)}.zarr" for name in NAMES)]
    )  # nothing written outside the stores' names
