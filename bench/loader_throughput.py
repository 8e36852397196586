"""One epoch of the detection training data loader at UnAV-100 scale: stores, packed copy, npy.

Builds, in a working folder, UnAV-100's training split in the released features' shapes: one
video per train id of the real annotation file (``../shared/datasets/unav100``; without it,
6,489 made-up ids with 10-60 s durations), ``T = floor((duration - 0.96) / 0.32) + 1`` snippets,
I3D RGB + flow (2 x 1024) and VGGish (128) float32 rows (normal noise: it barely compresses, as
such features barely do), written three ways:

- ``stores/``: one Zarr store per video (:func:`pipeline.store.write_store`) and an ``index.json``;
- ``packed/``: the packed copy of those stores (:func:`pipeline.packed.pack_index`);
- ``npy/``: the release's layout, ``{vid}_rgb.npy``, ``{vid}_flow.npy``, ``{vid}_vggish.npy``.

Then runs whole epochs of the real training loader (:class:`FeatureDataset` with random crops of
224 snippets, :class:`EpochSampler`, :func:`collate_videos`, batch 16: the UnAV-100 config) with
``num_workers`` 0 (in the training process), 1 and 4 over each source; the npy source is the
same dataset whose per-video read is ``np.load`` of the three files and a concatenation, as the
UnAV and ActionFormer loaders do.
Each source's first epoch warms the page cache and is not timed; every timed epoch is printed
(videos per second, seconds per epoch) with its ratio to the npy loader. A per-video breakdown of
one read from each source (opening a store, reading each array, loading the npy files, slicing
the packed arrays) comes first: where the time of a store read goes.

The working folder needs about 3 x 7.3 GB of disk (the three copies) and, for warm figures, as
much free memory for the page cache as one copy. ``--workdir DIR`` keeps the data for another
run (reused when complete); by default it is built in a temporary folder and removed.

    OMP_NUM_THREADS=1 python bench/loader_throughput.py [--videos N] [--workers 1 4]
        [--epochs E] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_model  # noqa: E402
from pipeline.annotations import load_annotations  # noqa: E402
from pipeline.detection.data import (  # noqa: E402
    EpochSampler,
    FeatureDataset,
    collate_videos,
    load_index,
    stats_from_dict,
)
from pipeline.packed import PackedFeatures, pack_index  # noqa: E402
from pipeline.store import open_store, write_store  # noqa: E402

SHARED_ANNOTATIONS = (
    Path(os.environ.get("AVLOC_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    / "unav100"
    / "unav100_annotations.json"
)
WINDOW_S, STRIDE_S = 0.96, 0.32  # the release's grid: 24 frames every 8 at 25 fps
DIMS = {"rgb": 1024, "flow": 1024, "vggish": 128}
MAX_SEQ_LEN, BATCH_SIZE, PAD_MULTIPLE = 224, 16, 32  # configs/papers/unav100_i3d_vggish.yaml
NOISE_ROWS = 8192  # rows of noise each video's features are sliced from
DONE = "complete.json"  # written last into the working folder


def train_split(num_videos: int | None, folder: Path) -> tuple[Path, dict[str, int]]:
    """The annotation file to train on and each train video's snippet count.

    The real UnAV-100 file when present (its first ``num_videos`` train ids); otherwise a
    generated file of ``num_videos`` (6,489) train ids, 10-60 s long, one event each.
    """
    path = folder / "annotations.json"
    if SHARED_ANNOTATIONS.is_file():
        database = json.loads(SHARED_ANNOTATIONS.read_text())["database"]
        train = sorted(vid for vid, entry in database.items() if entry["subset"] == "train")
        kept = train if num_videos is None else train[:num_videos]
        for video_id in train[len(kept) :]:  # left out: kept, so that every label stays
            database[video_id] = {**database[video_id], "subset": "test"}
        subset = {vid: database[vid] for vid in kept}
    else:
        rng = np.random.default_rng(0)
        durations = rng.uniform(10.0, 60.0, num_videos or 6489)
        database = {
            f"video{number:05d}": {
                "duration": round(duration, 2),
                "subset": "train",
                "annotations": [
                    {"segment": [1.0, round(duration / 2, 2)], "label": "event", "label_id": 0}
                ],
            }
            for number, duration in enumerate(durations.tolist())
        }
        subset = database
    path.write_text(json.dumps({"version": "unav100", "database": database}))
    lengths = {
        vid: int(np.floor((entry["duration"] - WINDOW_S) / STRIDE_S)) + 1
        for vid, entry in subset.items()
    }
    return path, lengths


def build(folder: Path, lengths: dict[str, int]) -> None:
    """Write the stores (and index), the npy files and the packed copy of the videos."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((NOISE_ROWS, sum(DIMS.values())), dtype=np.float32)
    (folder / "npy").mkdir(exist_ok=True)
    (folder / "stores").mkdir(exist_ok=True)
    started, videos = time.perf_counter(), {}
    for number, (video_id, length) in enumerate(lengths.items()):
        start = int(rng.integers(0, NOISE_ROWS - length))
        rows = noise[start : start + length]  # (T, 2176)
        rgb, flow, vggish = np.split(rows, [DIMS["rgb"], DIMS["rgb"] + DIMS["flow"]], axis=1)
        for name, array in (("rgb", rgb), ("flow", flow), ("vggish", vggish)):
            np.save(folder / "npy" / f"{video_id}_{name}.npy", np.ascontiguousarray(array))
        starts = np.arange(length) * STRIDE_S
        write_store(
            folder / "stores" / f"{video_id}.zarr",
            visual=rows[:, : DIMS["rgb"] + DIMS["flow"]],
            audio=vggish,
            timestamps=np.stack([starts, starts + WINDOW_S], axis=1),  # (T, 2)
            attrs={
                "video_id": video_id,
                "window_s": WINDOW_S,
                "stride_s": STRIDE_S,
                "config_hash": "bench",
                "audio_present": True,
            },
        )
        videos[video_id] = {
            "store": f"{video_id}.zarr",
            "num_snippets": length,
            "duration_s": (length - 1) * STRIDE_S + WINDOW_S,
            "audio_present": True,
        }
        if (number + 1) % 500 == 0:
            seconds = time.perf_counter() - started
            print(f"  wrote {number + 1}/{len(lengths)} videos ({seconds:.0f} s)")
    index = {
        "dataset": "bench",
        "encoder_set": "i3d_vggish",
        "config_hash": "bench",
        "window_s": WINDOW_S,
        "stride_s": STRIDE_S,
        "dims": {"visual": DIMS["rgb"] + DIMS["flow"], "audio": DIMS["vggish"]},
        "encoders": {},
        "videos": videos,
        "failed": {},
    }
    (folder / "stores" / "index.json").write_text(json.dumps(index))
    packing = time.perf_counter()
    pack_index(folder / "stores" / "index.json", folder / "packed")
    print(f"  packed in {time.perf_counter() - packing:.0f} s")
    stats = {name: {"mean": [0.0] * dim, "std": [1.0] * dim} for name, dim in index["dims"].items()}
    (folder / "stats.json").write_text(json.dumps(stats))
    (folder / DONE).write_text(json.dumps({"videos": len(lengths)}))


class NpyDataset(FeatureDataset):
    """The training dataset reading the release's per-video npy files, as UnAV's loader does:
    ``np.load`` of the RGB, flow and VGGish arrays, RGB and flow concatenated."""

    def __init__(self, *args: Any, npy_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.npy_dir = npy_dir

    def _source(self, video_id: str) -> dict[str, Any]:
        rgb, flow, vggish = (np.load(self.npy_dir / f"{video_id}_{name}.npy") for name in DIMS)
        visual = np.concatenate([rgb, flow], axis=1)  # (T, 2048)
        centres = np.arange(len(visual)) * STRIDE_S + WINDOW_S / 2  # (T,)
        return {
            "path": self.npy_dir,
            "centres": centres,
            "stride_s": STRIDE_S,
            "window_s": WINDOW_S,
            "audio_present": True,
            "visual": visual,
            "audio": vggish,
        }


def datasets(folder: Path) -> dict[str, Callable[[], FeatureDataset]]:
    """The three sources' training datasets, each made on demand."""
    annotations = load_annotations(folder / "annotations.json")
    index = load_index(folder / "stores" / "index.json")
    stats = stats_from_dict(json.loads((folder / "stats.json").read_text()))
    shared = {
        "annotations": annotations,
        "split": "train",
        "index": index,
        "stats": stats,
        "training": True,
        "max_seq_len": MAX_SEQ_LEN,
    }
    return {
        "stores (Zarr, per video)": lambda: FeatureDataset(**shared),
        "packed (memory-mapped)": lambda: FeatureDataset(
            **shared, packed=PackedFeatures(folder / "packed", index.content)
        ),
        "npy (per video, release)": lambda: NpyDataset(**shared, npy_dir=folder / "npy"),
    }


def epoch_seconds(dataset: FeatureDataset, workers: int, epoch: int) -> float:
    """Wall seconds of one epoch of the training loader over ``dataset``."""
    sampler = EpochSampler(len(dataset), seed=0)
    dataset.set_epoch(epoch)
    sampler.set_epoch(epoch)
    loader = DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        sampler=sampler,
        num_workers=workers,
        collate_fn=partial(collate_videos, pad_multiple=PAD_MULTIPLE, min_length=MAX_SEQ_LEN),
    )
    started = time.perf_counter()
    for batch in loader:
        assert batch["inputs"]["visual"].shape[1] >= MAX_SEQ_LEN
    return time.perf_counter() - started


def breakdown(folder: Path, video_ids: list[str]) -> None:
    """Microseconds per video of each step of one read, from each source."""
    index = load_index(folder / "stores" / "index.json")
    packed = PackedFeatures(folder / "packed", index.content)
    steps: dict[str, list[float]] = {}

    def timed(name: str, step: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        value = step(*args)
        steps.setdefault(name, []).append(time.perf_counter() - started)
        return value

    for video_id in video_ids:
        store = timed(
            "store: open_store (attributes, arrays' metadata)",
            partial(open_store, index.store_path(video_id)),
        )
        for name, what in (("centres", "centres"), ("visual", "visual (T x 2048)")):
            timed(f"store: read {what}", store[name].__getitem__, Ellipsis)
        timed("store: read audio (T x 128)", store["audio"].__getitem__, Ellipsis)
        for name in DIMS:
            timed(f"npy: np.load {name}", np.load, folder / "npy" / f"{video_id}_{name}.npy")
        rows = packed.rows_of(video_id)
        for name in ("centres", "visual", "audio"):
            timed(f"packed: copy {name} rows", np.array, packed.array(name)[rows])
    print(f"\nOne read per video, mean over {len(video_ids)} videos (warm page cache):")
    for name, values in steps.items():
        print(f"  {name:<50} {1e6 * np.mean(values):9.0f} µs")
    for prefix in ("store", "npy", "packed"):
        total = sum(np.mean(v) for k, v in steps.items() if k.startswith(prefix))
        print(f"  {prefix + ' total':<50} {1e6 * total:9.0f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, help="train videos (all of UnAV-100's 6,489)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per setting")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the data here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # more workers than cores is what the comparison asks for; torch's advice is noise here
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="loader-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if (folder / DONE).is_file():
            lengths = {
                vid: entry["num_snippets"]
                for vid, entry in json.loads((folder / "stores" / "index.json").read_text())[
                    "videos"
                ].items()
            }
            print(f"reusing the data in {folder}")
        else:
            _, lengths = train_split(args.videos, folder)
            size = sum(lengths.values()) * sum(DIMS.values()) * 4
            free = shutil.disk_usage(folder).free
            if free < 3.2 * size:
                print(
                    f"error: {folder} has {free / 1e9:.1f} GB free, the data need about "
                    f"{3.2 * size / 1e9:.1f} GB"
                )
                return 1
            print(
                f"writing {len(lengths)} videos ({sum(lengths.values())} snippets, "
                f"{size / 1e9:.1f} GB a copy) into {folder}"
            )
            started = time.perf_counter()
            build(folder, lengths)
            print(f"  built in {time.perf_counter() - started:.0f} s")
        print(
            f"machine: {cpu_model()}, {os.cpu_count()} cores; torch threads 1; batch "
            f"{BATCH_SIZE}, crops of {MAX_SEQ_LEN} snippets"
        )
        breakdown(folder, list(lengths)[:500])
        print(f"\nOne epoch of {len(lengths)} videos (first epoch of each source untimed):")
        figures: dict[tuple[str, int], float] = {}
        for name, make in datasets(folder).items():
            dataset = make()
            epoch_seconds(dataset, max(args.workers), epoch=0)  # page cache
            for workers in args.workers:
                for epoch in range(1, args.epochs + 1):
                    seconds = epoch_seconds(dataset, workers, epoch)
                    figures[(name, workers)] = min(seconds, figures.get((name, workers), 1e9))
                    print(
                        f"  {name:<26} workers {workers}: {seconds:6.1f} s, "
                        f"{len(dataset) / seconds:6.0f} videos/s"
                    )
        print("\nBest epoch, relative to the npy loader (>= 1: at least as fast):")
        for workers in args.workers:
            baseline = figures[("npy (per video, release)", workers)]
            for (name, count), seconds in figures.items():
                if count == workers:
                    print(
                        f"  workers {workers}  {name:<26} {len(lengths) / seconds:6.0f} "
                        f"videos/s  {baseline / seconds:5.2f}x"
                    )
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
