"""Shared helpers of the detection tests: a tiny detector, trained on two real extracted videos."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import extraction_settings, validate_config
from pipeline.detection.train import TrainResult, train_run
from pipeline.extract import extract_shard
from pipeline.index import build_index, write_statistics
from tests import media

TINY_RUN = {
    "name": "tiny",
    "model": {
        "name": "actionformer",
        "modalities": ["audio", "visual"],
        "embed_dim": 16,
        "head_dim": 16,
        "num_embed_convs": 1,
        "num_stem_blocks": 1,
        "num_pyramid_blocks": 2,
        "attn_window": 3,
        "num_heads": 2,
        "num_head_convs": 2,
        "path_drop": 0.0,
    },
    "training": {"epochs": 1, "batch_size": 2, "max_seq_len": 32, "device": "cpu"},
    "tiou_thresholds": [0.5],
}


@dataclass(frozen=True)
class TrainedOnVideos:
    """What :func:`train_on_videos` wrote."""

    videos: list[Path]  # clip_a.mp4 (train), clip_b.mp4 (validation): 3 s, 8 fps
    paths: dict[str, Path]  # index_path, stats_path, annotations_path (train_run's keywords)
    result: TrainResult  # the trained run (result.model_path)


def train_on_videos(folder: Path) -> TrainedOnVideos:
    """Render two tiny videos (a 440 Hz and an 880 Hz tone), extract them with the default
    encoders and the patch grid, label one event in each (``beep`` / ``boop``, 0.5-2.0 s) and train
    :data:`TINY_RUN` for one epoch: a model whose single-video inference re-extracts for real."""
    videos = []
    for name, tone_hz in (("clip_a", 440.0), ("clip_b", 880.0)):
        media.make_video(folder / f"{name}.mp4", duration_s=3.0, fps=8, tone_hz=tone_hz)
        videos.append(folder / f"{name}.mp4")
    # with the patch grid, as the demo extracts (single-video detection leaves it out)
    settings = extraction_settings(validate_config({"extraction": {"visual_grid": True}}))
    extract_shard(
        videos,
        settings=settings,
        out_dir=folder / "features",
        manifest_path=folder / "manifest.json",
        device="cpu",
    )
    database = {
        "clip_a": {"duration": 3.0, "subset": "train", "annotations": []},
        "clip_b": {"duration": 3.0, "subset": "validation", "annotations": []},
    }
    for video_id, label, label_id in (("clip_a", "beep", 0), ("clip_b", "boop", 1)):
        event = {"segment": [0.5, 2.0], "label": label, "label_id": label_id}
        database[video_id]["annotations"].append(event)
    annotations_path = folder / "annotations.json"
    annotations_path.write_text(json.dumps({"version": "t", "database": database}))
    index_path, stats_path = folder / "features" / "index.json", folder / "stats.json"
    build_index(
        [folder / "manifest.json"], index_path=index_path, dataset="t", encoder_set="classic"
    )
    write_statistics(index_path, stats_path, annotations_path)
    paths = {"index_path": index_path, "stats_path": stats_path}
    paths["annotations_path"] = annotations_path
    result = train_run(TINY_RUN, out_dir=folder / "run", **paths)
    return TrainedOnVideos(videos=videos, paths=paths, result=result)
