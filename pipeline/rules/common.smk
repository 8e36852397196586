# Helpers shared by the rules: the resolved config, the data set's videos and shards.
import functools
import json
import re
import shlex
from pathlib import Path

from pipeline.config import (
    check_segment_weights,
    check_spatial_benchmark,
    extraction_settings,
    packed_features,
    run_config,
    run_seeds,
    segment_labels_source,
    segment_settings,
    spatial_benchmark,
    spatial_set_settings,
    spatial_set_splits,
    spatial_settings,
    task_enabled,
)
from pipeline.io import stable_hash
from pipeline.published import localisation_key
from pipeline.sources import (
    annotations_path,
    check_annotations,
    files_stamp,
    list_videos,
    shard,
)

DATASET = config["dataset"]["name"]
ENCODER_SET = config["extraction"]["encoder_set"]
VIDEOS = list_videos(config["dataset"])
SHARDS = shard(list(VIDEOS), config["extraction"]["shard_size"])
# A sound-source localisation benchmark (dataset.import.format flickr_soundnet, vggss, ...):
# its images and sounds become a spatial set, and only the spatial stage runs (no stores, no
# detection annotations).
SPATIAL_BENCHMARK = spatial_benchmark(config)
ANNOTATIONS = None if SPATIAL_BENCHMARK else annotations_path(config["dataset"])
# Checks of the user's files below run in the main process only (PREFLIGHT): a cluster job
# parses this file again to find its rule, after they passed (at 1,000,000 videos the annotation
# check alone takes about 25 s, which every SLURM job would spend again, and its warnings would
# fill every job's log).
PREFLIGHT = workflow.is_main_process
# The user's annotation file (format, splits, every annotated video in videos_dir), before any
# job runs: a mistake fails `snakemake -n`, not the training job after the extraction.
if PREFLIGHT:
    check_annotations(config, VIDEOS)
RUNS = list(config["runs"])
# Each detection run is trained once per seed (training.seeds, shared or the run's own).
RUN_SEEDS = {run: run_seeds(config, run) for run in RUNS}
# The segment-level (AVE task) and spatial stages, when this data set has their labels.
SEGMENTS = config["segments"]
SEGMENT_RUNS = list(SEGMENTS["runs"])
# Only the pre-trainings some run reads are built.
SEGMENT_PRETRAININGS = sorted({run["pretraining"] for run in SEGMENTS["runs"].values()})
SEGMENTS_AVAILABLE = task_enabled(config, "segments")
# AV-BT's ResNet-50 / VGGish weights, before any job runs.
if PREFLIGHT:
    check_segment_weights(config, ", ".join(map(str, workflow.configfiles)) or "config")
# None (synthetic labels), "videos" (AVE's annotations beside raw videos) or "import".
SEGMENT_LABELS = segment_labels_source(config)
if SEGMENT_LABELS is None:
    SEGMENT_CLASSES = config["dataset"]["synth"]["num_classes"]
else:  # AVE's 28 event categories
    from pipeline.importers.ave import CATEGORIES as AVE_CATEGORIES

    SEGMENT_CLASSES = len(AVE_CATEGORIES)
if PREFLIGHT and SEGMENTS_AVAILABLE and SEGMENT_LABELS == "videos":
    from pipeline.importers.ave import check_ave_videos

    # Every split row's clip must be in videos_dir, before any job runs.
    check_ave_videos(config["dataset"]["segment_labels"], VIDEOS)
SPATIAL = config["spatial"]
SPATIAL_RUNS = list(SPATIAL["runs"])
# Weakly supervised localisers vary from seed to seed: the table averages over these.
SPATIAL_SEEDS = SPATIAL["seeds"]
SPATIAL_AVAILABLE = task_enabled(config, "spatial")
# The benchmark's release files and the encoders' weights, before any job runs.
if PREFLIGHT:
    check_spatial_benchmark(
        config, ", ".join(map(str, workflow.configfiles)) or "config"
    )
SPATIAL_SET_SPLITS = spatial_set_splits(config) if SPATIAL_BENCHMARK else []
PUBLISHED_RESULTS = str(
    Path(workflow.basedir) / "pipeline" / "data" / "published_results.yaml"
)


wildcard_constraints:
    dataset=DATASET,
    encoder_set=ENCODER_SET,
    shard=r"\d+",
    run="|".join(map(re.escape, RUNS)),
    segment_run="|".join(map(re.escape, SEGMENT_RUNS)),
    pretraining="|".join(map(re.escape, SEGMENT_PRETRAININGS)),
    spatial_run="|".join(map(re.escape, SPATIAL_RUNS)),
    seed=r"\d+",
    split="train|validation|test",


# A synthetic data set's videos are the synth job's outputs, so the jobs that read them take them
# as inputs. A user's videos are not made by any job: those jobs see them through a stamp in
# their params instead (the files' paths, sizes and modification times,
# pipeline.sources.files_stamp), and Snakemake runs again a job whose params changed. At
# AudioSet scale this matters: a million input files cost minutes of every DAG build, their
# stamps a few seconds.
VIDEOS_ARE_OUTPUTS = config["dataset"]["source"] == "synth"


def video_inputs(paths):
    """``paths`` as a job's inputs when a job makes them (synthetic videos), else none. A file
    named with braces (`a{b}.mp4`) is left out: Snakemake reads `{b}` in an input as a
    wildcard, with no escape; the job still gets it through its params."""
    if not VIDEOS_ARE_OUTPUTS:
        return []
    return [path for path in paths if "{" not in path and "}" not in path]


def shard_paths(shard):
    """The video files of extraction shard number ``shard``, in the shard's order."""
    return [VIDEOS[video_id] for video_id in SHARDS[shard]]


@functools.cache
def _shard_stamp(shard):
    return files_stamp(shard_paths(shard))


def shard_videos(wildcards):
    """The video files of one extraction shard, as the job's inputs (synthetic videos only)."""
    return video_inputs(shard_paths(int(wildcards.shard)))


def shard_stamp(wildcards):
    """The stamp of one extraction shard's video files (pipeline.sources.files_stamp), for its
    params; empty for synthetic videos, which are its inputs."""
    return "" if VIDEOS_ARE_OUTPUTS else _shard_stamp(int(wildcards.shard))


def all_videos_stamp(wildcards):
    """The stamp of every video file, made of the shards' (each file is looked at once)."""
    if VIDEOS_ARE_OUTPUTS:
        return ""
    return stable_hash([_shard_stamp(shard) for shard in range(len(SHARDS))])


def shard_video_arguments(wildcards):
    """Every video file of one extraction shard, quoted for the shell."""
    return shlex.join(shard_paths(int(wildcards.shard)))


# Every config-driven job receives its resolved settings the same way: one JSON object on
# its --settings flag, built by pipeline.config.


def run_settings(wildcards):
    """The resolved settings of one detection run's training with one seed
    (pipeline.config.run_config); a seed outside the run's training.seeds is refused."""
    seed = int(wildcards.seed)
    if seed not in RUN_SEEDS[wildcards.run]:
        raise ValueError(
            f"seed {seed} is not among run {wildcards.run}'s training.seeds "
            f"{RUN_SEEDS[wildcards.run]}"
        )
    return json.dumps(run_config(config, wildcards.run, seed), sort_keys=True)


def packed_features_input(wildcards):
    """The packed copy's manifest when the run reads packed features
    (training.packed_features), else nothing."""
    if not packed_features(config, wildcards.run):
        return []
    return f"results/{wildcards.dataset}/features/{ENCODER_SET}/packed/manifest.json"


def run_seed_files(wildcards, name):
    """``name`` in each seed folder of a detection run (the folders themselves for "")."""
    folder = f"results/{wildcards.dataset}/runs/{wildcards.run}"
    return [f"{folder}/seed{seed}/{name}".rstrip("/") for seed in RUN_SEEDS[wildcards.run]]


def first_seed_events(wildcards):
    """The test events of a detection run's first seed: those the viewer shows and a Perception
    Test submission sends."""
    seed = RUN_SEEDS[wildcards.run][0]
    return f"results/{wildcards.dataset}/runs/{wildcards.run}/seed{seed}/events/test.json"


def segment_step_settings(step, name=""):
    """The settings of one segment-stage job (pipeline.config.segment_settings)."""
    return json.dumps(segment_settings(config, step, name), sort_keys=True)


def spatial_run_settings(wildcards):
    """The resolved settings of one spatial run (pipeline.config.spatial_settings)."""
    return json.dumps(spatial_settings(config, wildcards.spatial_run), sort_keys=True)


def segment_source(run):
    """Where a segment run's features come from: its AV-BT pre-training, or the release."""
    return (
        "released" if SEGMENT_LABELS == "import" else SEGMENTS["runs"][run]["pretraining"]
    )


def segment_run_features(wildcards):
    """The features a segment run reads: its pre-training's, or the imported release's."""
    source = segment_source(wildcards.segment_run)
    if source == "released":
        return f"results/{wildcards.dataset}/segments/released/features.npz"
    return f"results/{wildcards.dataset}/segments/pretrain/{source}/features.npz"


def segment_summary(dataset, run):
    """The JSON that says where a segment run's features come from (for the table)."""
    source = segment_source(run)
    if source == "released":
        return f"results/{dataset}/segments/released/features.json"
    return f"results/{dataset}/segments/pretrain/{source}/avbt.json"


def segment_summaries(wildcards):
    """Every summary the segment table reads."""
    return sorted({segment_summary(wildcards.dataset, run) for run in SEGMENT_RUNS})


def spatial_set_release_files():
    """The benchmark release's folders, annotations and lists the set job reads."""
    release = config["dataset"]["import"]
    keys = ("root", "annotations", "test_list", "train_list", "train_root")
    return [release[key] for key in keys if release[key]]


def spatial_data(wildcards):
    """What a spatial run trains and is scored on: the benchmark's set, or the stores with the
    synthetic boxes and annotations."""
    if SPATIAL_BENCHMARK:
        return {
            "set": expand(
                "results/{dataset}/spatial_set/{split}.npz",
                dataset=wildcards.dataset,
                split=SPATIAL_SET_SPLITS,
            )
        }
    return {
        "index": f"results/{wildcards.dataset}/features/{ENCODER_SET}/index.json",
        "boxes": f"results/{wildcards.dataset}/boxes.json",
        "annotations": ANNOTATIONS or [],
    }


def spatial_data_arguments(wildcards, input):
    """The spatial stages' data flags for the inputs of :func:`spatial_data`, quoted."""
    if SPATIAL_BENCHMARK:
        return shlex.join(["--set", f"results/{wildcards.dataset}/spatial_set"])
    flags = {"--index": input.index, "--boxes": input.boxes}
    flags["--annotations"] = input.annotations
    return " ".join(f"{flag} {shlex.quote(str(path))}" for flag, path in flags.items())
