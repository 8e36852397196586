"""MRAV-FF's EPIC-Kitchens-100 (verb, noun) and THUMOS14 configs (configs/papers/) end to end on
fakes of ActionFormer's releases in their exact shapes (SlowFast 2304-d ``.npz`` on EPIC's grid,
I3D 2048-d ``.npy`` at each video's fps) beside real tiny videos in the benchmarks' layouts:
import with audio extracted on the released grid, train the visual baseline and MRAV-FF, infer,
evaluate, down to the paper table. One snakemake run per config; the media are made once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.paper_configs import paper_config, shrink_runs
from tests.pipeline.importers.sound_media import make_video_with_sound, tone_between
from tests.test_workflow import check_ok, snakemake, write_config

pytestmark = pytest.mark.slow

DURATION_S = 6.0  # every fake video; tones at different seconds
CLIPS = 5
TINY = {
    "training": {"epochs": 1, "batch_size": 2, "max_seq_len": 16, "warmup_epochs": 0},
}
SMALL = {"embed_dim": 32, "head_dim": 32, "num_pyramid_blocks": 2, "regression_ranges": None}

# EPIC-Kitchens-100: 30 fps grid, 32-frame windows every 16 frames: (180 - 32) // 16 + 1 rows.
EPIC_ROWS = 10
EPIC_LABELS = {
    "verb": (("take", 0), ("open", 3)),
    "noun": (("cup", 2), ("tap", 5)),  # noun ids with gaps: renumbered by the importer
}
# THUMOS14: 16-frame windows every 4 frames at the video's own fps: (frames - 16) // 4 + 1 rows.
THUMOS_FPS = (30, 25, 30, 25, 30)
THUMOS_LABELS = (("BaseballPitch", 0), ("Diving", 7))


def _events(number: int, labels) -> list[dict]:
    (first, first_id), (second, second_id) = labels
    return [
        {"segment": [0.5 + 0.2 * number, 2.5], "label": first, "label_id": first_id},
        {"segment": [3.0, 5.0 - 0.2 * number], "label": second, "label_id": second_id},
    ]


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """Both releases' fake features and annotations, and the videos (five clips, linked under
    each benchmark's names and layout)."""
    root = tmp_path_factory.mktemp("releases")
    clips = []
    for number in range(CLIPS):
        sound = tone_between(DURATION_S, [(number, number + 1.5)])
        clips.append(make_video_with_sound(root / f"clip{number}.mp4", sound, fps=30))
    rng = np.random.default_rng(0)

    epic = root / "epic_kitchens"
    (epic / "features").mkdir(parents=True)
    databases: dict[str, dict] = {"verb": {}, "noun": {}}
    for number, clip in enumerate(clips):
        video_id = f"P01_{number + 1:02d}"
        np.savez(epic / "features" / f"{video_id}.npz", feats=rng.normal(size=(EPIC_ROWS, 2304)))
        video = epic / "videos" / "P01" / "videos" / f"{video_id}.MP4"  # EPIC's own layout
        video.parent.mkdir(parents=True, exist_ok=True)
        video.symlink_to(clip)
        subset = "training" if number < 3 else "validation"
        for task, database in databases.items():
            database[video_id] = {
                "subset": subset,
                "duration": DURATION_S,
                "fps": 59.94,  # the video's own rate; EPIC's grid is at default_fps 30
                "annotations": _events(number, EPIC_LABELS[task]),
            }
    for task, database in databases.items():
        (epic / f"epic_kitchens_100_{task}.json").write_text(json.dumps({"database": database}))

    thumos = root / "thumos"
    (thumos / "i3d_features").mkdir(parents=True)
    (thumos / "videos").mkdir()
    database = {}
    for number, (clip, fps) in enumerate(zip(clips, THUMOS_FPS, strict=True)):
        subset = "Validation" if number < 3 else "Test"
        video_id = f"video_{subset.lower()}_{number + 1:07d}"
        rows = (round(DURATION_S * fps) - 16) // 4 + 1
        np.save(thumos / "i3d_features" / f"{video_id}.npy", rng.normal(size=(rows, 2048)))
        (thumos / "videos" / f"{video_id}.mp4").symlink_to(clip)
        database[video_id] = {
            "subset": subset,
            "duration": DURATION_S,
            "fps": float(fps),
            "annotations": _events(number, THUMOS_LABELS),
        }
    (thumos / "thumos14.json").write_text(json.dumps({"database": database}))
    return {"epic": epic, "thumos": thumos}


def _paths(paper: str, releases: dict[str, Path]) -> dict[str, str]:
    if paper == "thumos14.yaml":
        folder = releases["thumos"]
        return {
            "annotations": str(folder / "thumos14.json"),
            "features_dir": str(folder / "i3d_features"),
            "videos_dir": str(folder / "videos"),
        }
    folder, task = releases["epic"], paper.removesuffix(".yaml").split("_")[-1]
    return {  # the config's own video_pattern, */videos/{vid}.MP4, finds the videos
        "annotations": str(folder / f"epic_kitchens_100_{task}.json"),
        "features_dir": str(folder / "features"),
        "videos_dir": str(folder / "videos"),
    }


@pytest.mark.parametrize(
    ("paper", "visual_dim", "labels"),
    [
        ("epic_kitchens_verb.yaml", 2304, ["take", "open"]),
        ("epic_kitchens_noun.yaml", 2304, ["cup", "tap"]),
        ("thumos14.yaml", 2048, ["BaseballPitch", "Diving"]),
    ],
)
def test_paper_config_reaches_its_table(tmp_path, releases, paper, visual_dim, labels):
    imports = {**_paths(paper, releases), "validation_fraction": 0.34}  # 1 of 3 train videos
    config = paper_config(paper, overrides={**TINY, "dataset": {"import": imports}})
    config = shrink_runs(config, **SMALL)
    write_config(tmp_path, config)
    dataset, encoder_set = config["dataset"]["name"], config["extraction"]["encoder_set"]
    check_ok(snakemake(tmp_path, f"results/{dataset}/table.md"))

    results = tmp_path / "results" / dataset
    features = results / "features" / encoder_set
    index = json.loads((features / "index.json").read_text())
    assert index["dims"] == {"visual": visual_dim, "audio": 140}  # the classic audio encoder
    assert len(index["videos"]) == CLIPS and not index["failed"]
    assert all(entry["audio_present"] for entry in index["videos"].values())
    annotations = json.loads((results / "annotations.json").read_text())
    assert sorted(annotations["source_label_ids"]) == sorted(labels)
    table = (results / "table.md").read_text()
    assert "ours: actionformer" in table and "ours: mravff" in table
    assert "ActionFormer" in table and "TriDet" in table  # the published rows
    for run in ("actionformer", "mravff"):
        metrics = json.loads((results / "runs" / run / "metrics.json").read_text())
        assert metrics["tiou_thresholds"] == config["dataset"]["tiou_thresholds"]
        assert metrics["num_videos"] == 2  # the release's test subset (EPIC: validation)
