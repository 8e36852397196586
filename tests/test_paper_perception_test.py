"""The Perception Test paper's config (configs/papers/perception_test.yaml, arXiv 2407.02318) run
end to end on fakes of the challenge's files in their released shapes: per-video annotation JSONs
in microseconds, 1408-d VideoMAE V2 video and 256-d MMV audio features with few rows. One
snakemake call with the paper's file and a tiny override (``--configfile A B``): import, the
three runs, inference, evaluation at tIoU 0.1:0.5, the paper table and the submissions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.runtime import load_checkpoint
from tests.test_workflow import check_ok, snakemake_command, snakemake_env, write_config

pytestmark = pytest.mark.slow

PAPER = Path(__file__).resolve().parents[1] / "configs" / "papers" / "perception_test.yaml"
LABELS = {"Human speech": 0, "Dog barking": 3, "Music": 7}  # source ids with gaps
# video id -> (split, frames at 30 fps, events (start_s, end_s, label))
VIDEOS = {
    "video_101": ("train", 300, [(1.0, 3.5, "Human speech"), (6.0, 8.0, "Music")]),
    "video_102": ("train", 360, [(0.0, 2.0, "Dog barking")]),
    "video_103": ("train", 330, [(4.0, 9.0, "Music"), (2.0, 3.0, "Human speech")]),
    # ends 20 ms after the last frame (under one frame, 33 ms): clipped to 12 s
    "video_104": ("train", 360, [(8.0, 12.02, "Dog barking")]),
    "video_105": ("valid", 300, [(2.0, 4.0, "Human speech"), (5.0, 9.0, "Dog barking")]),
    "video_106": ("valid", 390, [(1.0, 6.0, "Music")]),
}
TINY = {  # merged onto the paper's file: widths and epochs only, the block layout is kept
    "dataset": {"import": {"validation_fraction": 0.25}},  # 1 of the 4 train videos
    "training": {"epochs": 1, "warmup_epochs": 0},
    "runs": {
        name: {"model": {"embed_dim": 16, "head_dim": 16, "modality_proj_dim": 16}}
        for name in ("audio_only", "video_only", "fusion")
    },
}


def fake_challenge(folder: Path) -> dict:
    """The two annotation files and the two feature folders; the import keys that read them."""
    rng = np.random.default_rng(0)
    splits: dict[str, dict] = {"train": {}, "valid": {}}
    for stream in ("audio", "video"):
        (folder / stream).mkdir(parents=True)
    for video_id, (split, num_frames, events) in VIDEOS.items():
        splits[split][video_id] = {
            "metadata": {"split": split, "frame_rate": 30.0, "num_frames": num_frames},
            "sound_localisation": [
                {"label": label, "label_id": LABELS[label], "timestamps": [start * 1e6, end * 1e6]}
                for start, end, label in events
            ],
            "action_localisation": [],
        }
        rows = num_frames // 16  # 16-frame rows every 16 frames: both streams' grid here
        for stream, width in (("audio", 256), ("video", 1408)):
            values = rng.normal(size=(rows, width)).astype(np.float32)
            np.save(folder / stream / f"{video_id}.npy", values)
    for split, videos in splits.items():
        (folder / f"challenge_sound_localisation_{split}.json").write_text(json.dumps(videos))
    return {
        "annotations": str(folder / "challenge_sound_localisation_train.json"),
        "extra_annotations": [str(folder / "challenge_sound_localisation_valid.json")],
        "features_dir": str(folder / "audio"),
        "video_features_dir": str(folder / "video"),
    }


def test_paper_config_reaches_its_table_and_submissions(tmp_path):
    paths = fake_challenge(tmp_path / "challenge")
    override = {**TINY, "dataset": {"import": {**TINY["dataset"]["import"], **paths}}}
    write_config(tmp_path, override, "tiny.yaml")
    command = snakemake_command(tmp_path, config="tiny.yaml")
    at = command.index("--configfile") + 1
    command[at:at] = [str(PAPER)]  # --configfile PAPER tiny.yaml: merged in that order
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=snakemake_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    check_ok(result)
    paper = yaml.safe_load(PAPER.read_text())
    results = tmp_path / "results" / paper["dataset"]["name"]
    features = results / "features" / paper["extraction"]["encoder_set"]
    index = json.loads((features / "index.json").read_text())
    assert index["dims"] == {"visual": 1408, "audio": 256}
    assert sorted(index["videos"]) == sorted(VIDEOS)

    # the paper's model, with the class count read from the files (3 labels, ids 0, 3, 7)
    bundle = load_checkpoint(results / "runs" / "fusion" / "seed0" / "model.pt")
    model = bundle["model_config"]
    assert model["num_classes"] == 3 and bundle["labels"] == list(LABELS)
    assert model["input_dims"] == {"audio": 256, "visual": 1408}
    assert model["modalities"] == ["audio", "visual"]
    expected = {"num_stem_blocks": 4, "num_pyramid_blocks": 5, "attn_window": 11}
    assert {key: model[key] for key in expected} == expected and model["reg_loss"] == "diou"

    metrics = json.loads((results / "runs" / "fusion" / "metrics.json").read_text())
    assert [float(t) for t in metrics["tiou_thresholds"]] == [0.1, 0.2, 0.3, 0.4, 0.5]
    table = (results / "table.md").read_text()
    for run in ("audio_only", "video_only", "fusion"):
        assert f"ours: {run}" in table
    assert "# Perception Test temporal sound localisation" in table
    assert "| mAP@0.1 |" in table and "| mAP@0.5 | average |" in table  # 0.1:0.5 only

    # the challenge's format on our test subset (the valid split), with the release's label ids
    for run in ("audio_only", "video_only", "fusion"):
        submission = json.loads((results / "runs" / run / "submission.json").read_text())
        events = json.loads((results / "runs" / run / "seed0" / "events" / "test.json").read_text())
        assert set(submission) == set(events["results"]) <= {"video_105", "video_106"}
        rows = [row for video in submission.values() for row in video["sound_localisation"]]
        assert len(rows) == sum(len(items) for items in events["results"].values())
        assert {row["label"] for row in rows} <= {"0", "3", "7"}
    rows = [row for video in submission.values() for row in video["sound_localisation"]]
    assert rows, "the fusion run detected nothing: the submission check would be empty"
