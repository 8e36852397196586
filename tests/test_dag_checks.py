"""Mistakes in the user's annotations stop ``snakemake -n``, before any job (#13 item 6).

The checks themselves are tested in tests/pipeline/test_config.py (``check_annotations``);
this is the one dry run that shows the Snakefile runs them when it builds the DAG.
"""

from __future__ import annotations

import json

import pytest

from tests.test_workflow import snakemake, write_config

pytestmark = pytest.mark.slow


def test_a_missing_split_fails_the_dry_run_naming_the_file(tmp_path):
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    database = {}
    for video_id, subset in (("v0", "train"), ("v1", "validation"), ("v2", "validation")):
        (videos_dir / f"{video_id}.mp4").write_bytes(b"never decoded: the DAG fails first")
        event = {"segment": [1.0, 2.0], "label": "dog", "label_id": 0}
        database[video_id] = {"duration": 10.0, "subset": subset, "annotations": [event]}
    annotations = tmp_path / "ann.json"
    annotations.write_text(json.dumps({"version": "t", "database": database}))
    dataset = {"name": "vids", "source": "videos", "videos_dir": str(videos_dir)}
    write_config(tmp_path, {"dataset": {**dataset, "annotations": str(annotations)}})
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert f"{annotations}: no video has subset 'test'" in result.stdout
    assert "rule extract_shard" not in result.stdout and not (tmp_path / "results").exists()
    # A cluster job (--mode remote) parses the Snakefile again after the checks passed in the
    # main process: it does not run them again.
    remote = snakemake(tmp_path, "-n", "--mode", "remote")
    assert remote.returncode == 0, remote.stdout
    assert "no video has subset" not in remote.stdout and "extract_shard" in remote.stdout
