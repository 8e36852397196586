"""The Snakemake workflow end to end on tiny data (stage 1 acceptance).

Every test runs ``python -m snakemake`` in its own temporary working folder with the venv's bin
folder first on PATH, so that the rules' ``python`` is this interpreter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline.store import read_store
from pipeline.synth import video_ids
from pipeline.viewer.build import read_page_data
from tests import media

pytestmark = pytest.mark.slow

SNAKEFILE = Path(__file__).resolve().parents[1] / "Snakefile"
SMALL_MODEL = {"name": "actionformer", "embed_dim": 32, "head_dim": 32, "num_pyramid_blocks": 2}
TINY_CONFIG = {
    "dataset": {"name": "tiny", "source": "synth", "synth": {"size": "tiny", "num_classes": 3}},
    "extraction": {"shard_size": 3},
    "training": {"epochs": 2, "batch_size": 2, "max_seq_len": 16},
    "runs": {
        # two training seeds, its own: the run's figures are their mean and spread
        # and reads the stores themselves rather than their packed copy (pipeline.packed)
        "audio_only": {
            "model": {**SMALL_MODEL, "modalities": ["audio"]},
            "training": {"seeds": [0, 1], "packed_features": False},
        },
        "fusion": {"model": {**SMALL_MODEL, "modalities": ["audio", "visual"]}},
    },
    # covered by test_every_task_reaches_the_comparison, on its own folder
    "segments": {"enabled": False},
    "spatial": {"enabled": False},
}
TINY_IDS = video_ids("tiny", 0)
FEATURES = "results/tiny/features/classic"


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, *args: str, config: str = "config.yaml") -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / config),
        "--cores",
        "2",
        *args,
    ]


def snakemake_env() -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
    }


def snakemake(workdir: Path, *args: str, config: str = "config.yaml", timeout: float = 300):
    """Run snakemake to completion; return the CompletedProcess (stdout and stderr merged)."""
    return subprocess.run(
        snakemake_command(workdir, *args, config=config),
        cwd=workdir,
        env=snakemake_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake run: rule name -> number of jobs (total left out)."""
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match is None:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


def check_ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A working folder where the whole tiny workflow has run once."""
    workdir = tmp_path_factory.mktemp("tiny")
    write_config(workdir, TINY_CONFIG)
    output = check_ok(snakemake(workdir))
    (workdir / "snakemake_output.txt").write_text(output)
    return workdir


def test_dry_run_lists_the_dag(tmp_path):
    write_config(tmp_path, TINY_CONFIG)
    output = check_ok(snakemake(tmp_path, "-n"))
    assert job_counts(output) == {
        "all": 1,
        "synth": 1,
        "extract_shard": 2,  # 6 videos in shards of 3
        "index": 1,
        "pack_features": 1,  # fusion reads the packed copy
        "train": 3,  # audio_only's two seeds and fusion's one
        "infer": 3,
        "evaluate": 3,
        "seeds": 2,
        "report": 1,
        "table": 1,
        "comparison": 1,
        "viewer": 1,
    }
    assert not (tmp_path / "results").exists()


def test_run_produces_reports_stores_and_runs(tiny_run):
    results = tiny_run / "results" / "tiny"
    assert (results / "report.md").read_text().strip()
    table = (results / "table.md").read_text()
    assert all(run in table for run in TINY_CONFIG["runs"])
    index = json.loads((tiny_run / FEATURES / "index.json").read_text())
    assert list(index["videos"]) == TINY_IDS and index["failed"] == {}
    for video_id, entry in index["videos"].items():
        store = read_store(tiny_run / FEATURES / entry["store"])
        assert store.video_id == video_id
        assert store.num_snippets == entry["num_snippets"] > 0
        assert store.visual.shape == (store.num_snippets, index["dims"]["visual"])
        assert store.audio.shape == (store.num_snippets, index["dims"]["audio"])
        assert store.attrs["config_hash"] == index["config_hash"]
        assert store.attrs["audio_present"] is True
    stores = sorted(p.name for p in (tiny_run / FEATURES).iterdir() if p.suffix == ".zarr")
    assert stores == [f"{vid}.zarr" for vid in TINY_IDS]
    stats = json.loads((tiny_run / FEATURES / "stats.json").read_text())
    assert stats["split"] == "train" and stats["num_videos"] == 3  # tiny: 3 train videos
    assert len(stats["visual"]["mean"]) == index["dims"]["visual"]
    # fusion trained from the packed copy, audio_only from the stores
    packed = json.loads((tiny_run / FEATURES / "packed" / "manifest.json").read_text())
    assert packed["video_ids"] == list(index["videos"])
    logs = results / "logs" / "train"
    assert "features from the packed copy" in (logs / "fusion-seed0.log").read_text()
    assert "features from the packed copy" not in (logs / "audio_only-seed0.log").read_text()
    for run, seeds in (("audio_only", [0, 1]), ("fusion", [0])):
        run_dir = results / "runs" / run
        per_seed = []
        for seed in seeds:
            assert (run_dir / f"seed{seed}" / "model.pt").stat().st_size > 0
            assert (run_dir / f"seed{seed}" / "plots" / "per_class_ap.png").stat().st_size > 0
            per_seed.append(json.loads((run_dir / f"seed{seed}" / "metrics.json").read_text()))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["seeds"] == seeds
        mean = sum(seed["average_mAP"] for seed in per_seed) / len(seeds)
        assert metrics["average_mAP"] == pytest.approx(mean)
        assert (metrics["average_mAP_std"] is None) == (len(seeds) == 1)
        assert all((run_dir / plot).is_file() for plot in metrics["plots"])
        assert run in (results / "report.md").read_text()
    # the results viewer: every run, and the test videos linked beside the page
    page = read_page_data(results / "viewer" / "index.html")
    assert list(page["runs"]) == list(TINY_CONFIG["runs"])
    for video in page["videos"]:
        linked = results / "viewer" / video["src"]
        assert linked.samefile(results / "videos" / f"{video['id']}.mp4")


# Small CPU settings of AV-BT: the schema's defaults are the paper's (ResNet-50, VGGish, LARS).
TINY_AVBT = {
    "audio_backbone": "conv",
    "visual_backbone": "conv",
    "conv_width": 4,
    "conv_depth": 2,
    "conv_dim": 8,
    "feature_dim": 8,
    "projector_dims": [16, 16, 16],
    "crop_size": 16,
    "blur_kernel_size": 3,
    "optimizer": "adamw",
    "epochs": 1,
    "warmup_epochs": 0,
    "batch_size": 2,
}
TINY_SEGMENTS = {
    "enabled": True,
    "clips": {"frame_fps": 2, "frame_width": 24, "frame_height": 24},
    "pretrain": TINY_AVBT,
    "classifier": {"epochs": 2, "hidden_dim": 8, "attention_dim": 4, "output_dim": 8},
}
TINY_SPATIAL = {
    "enabled": True,
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 8},
    "runs": {
        "m2vsl": {"method": "m2vsl", "model": {"dim": 8, "hidden": 16}},
        "similarity": {"method": "similarity"},
    },
}


def test_every_task_reaches_the_comparison(tmp_path):
    """Early fusion, MRAV-FF and LoCo, the segment classifiers and the localisers, one DAG."""
    config = {
        **TINY_CONFIG,
        "extraction": {"shard_size": 6, "visual_grid": True},
        "training": {**TINY_CONFIG["training"], "epochs": 1},
        "runs": {
            "fusion": {"model": {**SMALL_MODEL, "modalities": ["audio", "visual"]}},
            "mravff": {
                "model": {**SMALL_MODEL, "modalities": ["visual"], "neck": {"name": "mravff"}}
            },
            "loco": {"model": {**SMALL_MODEL, "name": "loco", "cdp_window": 4}},
        },
        "segments": TINY_SEGMENTS,
        "spatial": TINY_SPATIAL,
    }
    write_config(tmp_path, config)
    check_ok(snakemake(tmp_path, timeout=600))
    results = tmp_path / "results" / "tiny"
    numbers = json.loads((results / "comparison.json").read_text())
    assert set(numbers["tasks"]) == {"detection", "segments", "spatial"}
    detection = {row["name"]: row["method"] for row in numbers["tasks"]["detection"]["rows"]}
    assert detection == {
        "fusion": "ActionFormer, early fusion (audio + visual)",
        "mravff": "ActionFormer + MRAV-FF (gated)",
        "loco": "LoCo (cdp cross-attention, LCC)",
    }
    segments = [row["name"] for row in numbers["tasks"]["segments"]["rows"]]
    assert segments == [
        "AV-BT audio only",
        "AV-BT visual only",
        "AV-BT audio-visual (sum)",
        "AV-BT + TACMA",
    ]
    spatial = [row["name"] for row in numbers["tasks"]["spatial"]["rows"]]
    assert spatial == ["M2VSL", "Similarity map (baseline)"]
    text = (results / "comparison.md").read_text()
    assert "## Who wins what" in text and "Segment classification, test accuracy" in text
    pretraining = json.loads((results / "segments/pretrain/avbt/avbt.json").read_text())
    assert pretraining["settings"]["feature_dim"] == 8  # the config reached the job
    assert len(pretraining["epoch_losses"]) == 1
    page = read_page_data(results / "viewer" / "index.html")  # every task in the viewer
    assert list(page["segments"]["runs"]) == ["audio", "visual", "sum", "tacma"]
    assert [figure["caption"] for figure in page["heatmaps"]] == [
        "m2vsl, seed 0",
        "similarity, seed 0",
    ]
    # Snakemake's own report: every task's category, the captions, the figures.
    check_ok(snakemake(tmp_path, "--report", "report.html"))
    html = (tmp_path / "report.html").read_text()
    for category in ("Detection", "Comparison", "Segment classification"):
        assert category in html, category
    assert "Sound-source localisation" in html and "Average precision of each event class" in html
    check_ok(snakemake(tmp_path, "--report", "report.zip"))
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
    for figure in ("per_class_ap.png", "heatmaps.png", "comparison.md", "table.md"):
        assert any(name.endswith(figure) for name in names), figure


def test_extraction_progress_reaches_the_terminal_and_the_log(tiny_run):
    """pipeline.progress: each shard's last line, on Snakemake's output and in the job's log."""
    output = (tiny_run / "snakemake_output.txt").read_text()
    for shard in (0, 1):
        line = re.search(
            rf"extract shard {shard}: 3/3 videos, (\d+) s of video in .* s/s\), done", output
        )
        assert line, f"no progress line of shard {shard} in Snakemake's output"
        log = tiny_run / "results" / "tiny" / "logs" / "extract" / "classic" / f"{shard}.log"
        assert line[0] in log.read_text()


def test_second_run_is_a_no_op(tiny_run):
    report = tiny_run / "results" / "tiny" / "report.md"
    before = report.stat().st_mtime_ns
    output = check_ok(snakemake(tiny_run))
    assert "Nothing to be done" in output
    assert report.stat().st_mtime_ns == before


def test_changed_stride_reruns_extraction_and_downstream_not_synth(tiny_run):
    config = {**TINY_CONFIG, "extraction": {**TINY_CONFIG["extraction"], "stride_s": 0.48}}
    write_config(tiny_run, config, name="stride.yaml")
    output = check_ok(snakemake(tiny_run, "-n", config="stride.yaml"))
    assert job_counts(output) == {
        "all": 1,
        "extract_shard": 2,
        "index": 1,
        "pack_features": 1,  # fusion reads the packed copy
        "train": 3,  # audio_only's two seeds and fusion's one
        "infer": 3,
        "evaluate": 3,
        "seeds": 2,
        "report": 1,
        "table": 1,
        "comparison": 1,
        "viewer": 1,
    }
    assert "Params have changed since last execution" in output
    assert "rule synth" not in output


def test_unknown_key_fails_before_any_work(tmp_path):
    config = {**TINY_CONFIG, "extraction": {"shard_size": 3, "strde_s": 0.5}}
    write_config(tmp_path, config)
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert "unknown key 'extraction.strde_s'" in result.stdout
    assert "config.yaml" in result.stdout  # the file is named too
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"runs": {"loco": {"model": {"name": "loco", "cdp_windw": 4}}}},
         "runs.loco.model.cdp_windw"),
        ({"extraction": {"shard_size": 3, "visual": {"name": "classic", "hue_bin": 4}}},
         "extraction.visual.hue_bin"),
        ({"spatial": {"runs": {"s": {"method": "m2vsl", "model": {"pool_factor": [1]}}}}},
         "spatial.runs.s.model.pool_factor"),
        ({"segments": {"runs": {"t": {"model": "tacma", "classifier": {"thetta": 1}}}}},
         "segments.runs.t.classifier.thetta"),
    ],
)  # fmt: skip
def test_component_option_typo_fails_the_dry_run(tmp_path, section, named):
    """A model, encoder, localiser or classifier option is checked when the DAG is built."""
    write_config(tmp_path, {**TINY_CONFIG, **section})
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert f"unknown key '{named}'" in result.stdout and "config.yaml" in result.stdout
    assert not (tmp_path / "results").exists()


def _videos_config(videos_dir: Path, **extraction) -> dict:
    return {
        "dataset": {"name": "vids", "source": "videos", "videos_dir": str(videos_dir)},
        "extraction": extraction,
    }


def test_paths_with_spaces(tmp_path):
    """Every path of the configuration may contain spaces (each shell rule quotes its paths)."""
    videos_dir = tmp_path / "my videos"
    videos_dir.mkdir()
    subsets = {"v0": "train", "v1": "validation", "v2": "test"}  # the splits the runs read
    for video_id in subsets:
        media.make_video(videos_dir / f"{video_id}.mp4", duration_s=3.0, fps=10)
    annotations = tmp_path / "my labels" / "unav format.json"
    annotations.parent.mkdir()
    event = {"segment": [0.5, 2.0], "label": "dog", "label_id": 0}
    database = {
        video_id: {"duration": 3.0, "subset": subset, "annotations": [event]}
        for video_id, subset in subsets.items()
    }
    annotations.write_text(json.dumps({"version": "test", "database": database}))
    workdir = tmp_path / "work dir"
    config = _videos_config(videos_dir, shard_size=1)
    config["dataset"]["annotations"] = str(annotations)
    write_config(workdir, config)
    check_ok(snakemake(workdir, "results/vids/features/classic/index.json"))
    index = json.loads((workdir / "results/vids/features/classic/index.json").read_text())
    assert sorted(index["videos"]) == ["v0", "v1", "v2"] and not index["failed"]


def test_a_replaced_video_is_extracted_again_and_nothing_else(tmp_path):
    """A user's videos reach the extraction jobs through a stamp in their params, not as inputs
    (common.smk): replacing one re-runs its shard's job, which extracts it again; the other
    shard and store are left alone, and with nothing changed there is nothing to do."""
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    for video_id in ("v0", "v1"):
        media.make_video(videos_dir / f"{video_id}.mp4", duration_s=1.0, fps=8)
    workdir = tmp_path / "work"
    write_config(workdir, _videos_config(videos_dir, shard_size=1))
    target = "results/vids/features/classic/index.json"
    check_ok(snakemake(workdir, target))
    features = workdir / "results" / "vids" / "features" / "classic"
    kept = (features / "v1.zarr" / "zarr.json").stat().st_mtime_ns

    media.make_video(videos_dir / "v0.mp4", duration_s=2.0, fps=8)  # replaced in place
    assert job_counts(check_ok(snakemake(workdir, target, "-n"))) == {
        "extract_shard": 1,
        "index": 1,
    }
    check_ok(snakemake(workdir, target))
    assert read_store(features / "v0.zarr").attrs["video"]["duration_s"] == pytest.approx(2.0)
    assert (features / "v1.zarr" / "zarr.json").stat().st_mtime_ns == kept
    assert "Nothing to be done" in check_ok(snakemake(workdir, target, "-n"))


def test_killed_extraction_resumes(tmp_path):
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    ids = [f"v{i}" for i in range(4)]
    for video_id in ids:
        media.make_video(videos_dir / f"{video_id}.mp4", duration_s=20.0, fps=10)
    workdir = tmp_path / "work"
    write_config(workdir, _videos_config(videos_dir, shard_size=2))
    features = workdir / "results" / "vids" / "features" / "classic"
    target = "results/vids/features/classic/index.json"
    process = subprocess.Popen(
        snakemake_command(workdir, target),
        cwd=workdir,
        env=snakemake_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal job
    )
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            if features.is_dir() and any(features.glob("*.zarr")):
                break
            time.sleep(0.02)
        assert process.poll() is None, "snakemake ended before any store was written"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the whole job tree, as a scheduler would
        output = process.communicate(timeout=120)[0]
    assert process.returncode != 0, output[-3000:]
    assert not (features / "index.json").exists()
    survivors = {p.stem: (p / "zarr.json").stat().st_mtime_ns for p in features.glob("*.zarr")}
    assert survivors, "the kill came before any store was written"
    for video_id in survivors:
        read_store(features / f"{video_id}.zarr")  # a store that exists is whole
    shards = features / "shards"
    finished_before = {p.name: p.read_text() for p in shards.glob("*.json")}

    check_ok(snakemake(workdir, target, "--rerun-incomplete"))
    index = json.loads((features / "index.json").read_text())
    assert list(index["videos"]) == ids and index["failed"] == {}
    for video_id in ids:  # 20 s videos: floor((20 - 0.96) / 0.32) + 1 snippets
        assert read_store(features / f"{video_id}.zarr").num_snippets == 60
    assert [p.name for p in features.iterdir() if ".tmp-" in p.name] == []
    # Stores finished before the kill are kept, not extracted again.
    for video_id, mtime_ns in survivors.items():
        assert (features / f"{video_id}.zarr" / "zarr.json").stat().st_mtime_ns == mtime_ns
    rerun = [p for p in shards.glob("*.json") if finished_before.get(p.name) != p.read_text()]
    assert rerun, "no extraction job was interrupted"
    for manifest in rerun:
        for video_id, entry in json.loads(manifest.read_text())["videos"].items():
            assert entry["status"] == ("cached" if video_id in survivors else "extracted")


@pytest.fixture(scope="module")
def videos_with_a_broken_one(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    media.make_video(folder / "good_a.mp4", duration_s=2.0)
    media.make_garbage(folder / "broken.mp4")
    media.make_video(folder / "good_b.mkv", duration_s=2.0, audio=False)
    return folder


def test_broken_video_is_skipped_and_listed(tmp_path, videos_with_a_broken_one):
    write_config(tmp_path, _videos_config(videos_with_a_broken_one, on_error="skip"))
    check_ok(snakemake(tmp_path))
    features = tmp_path / "results" / "vids" / "features" / "classic"
    index = json.loads((features / "index.json").read_text())
    assert list(index["videos"]) == ["good_a", "good_b"]
    assert list(index["failed"]) == ["broken"]
    assert "broken.mp4" in index["failed"]["broken"]
    assert index["videos"]["good_b"]["audio_present"] is False
    stats = json.loads((features / "stats.json").read_text())
    assert stats["split"] == "all" and stats["num_videos"] == 2
    assert not (features / "broken.zarr").exists()


def test_broken_video_fails_the_job_naming_the_file(tmp_path, videos_with_a_broken_one):
    write_config(tmp_path, _videos_config(videos_with_a_broken_one, on_error="fail"))
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert "Error in rule extract_shard" in result.stdout
    log = tmp_path / "results" / "vids" / "logs" / "extract" / "classic" / "0.log"
    assert str(videos_with_a_broken_one / "broken.mp4") in log.read_text()
    features = tmp_path / "results" / "vids" / "features" / "classic"
    assert not (features / "index.json").exists()
    assert not (features / "shards" / "0.json").exists()
