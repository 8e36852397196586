"""Spatial sets: a localisation benchmark's samples embedded with the pipeline's encoders.

A set is a folder with one ``{split}.npz`` per split of the release
(:attr:`~pipeline.spatial.benchmarks.Release.splits`) and ``report.json`` (the samples read,
skipped, excluded, the warnings, the encoders). Each image is decoded with PIL and resized to
224x224 (bicubic, as EZ-VSL's and SLAVC's loaders), the frame every heatmap and ground-truth map
is drawn at; it is resized again (bicubic) to the visual encoder's ``frame_size`` and embedded
as a 1-frame clip with ``encode_grid``. The audio window (:mod:`pipeline.spatial.benchmarks`) is
decoded at the audio encoder's rate, cut into the extraction's windows (``window_s`` every
``stride_s``, as a video's snippets) and embedded; the sample's audio row is the mean of those
windows' embeddings.

A split file holds (N samples, M of them with ground truth; no object arrays):

- ``sample_ids``, ``image_paths``, ``audio_paths`` (N,) str; ``audio_window_s`` (N, 2) float64;
  ``clip_frame`` (N,) int64 (AVSBench: the frame's index in its clip; stills: 0);
- ``grids`` (N, H', W', Dg) float32; ``audio`` (N, Da) float32;
- ``labels`` (N, C) float32 multi-hot over ``classes`` (C,) str (C = 0 without class labels);
- ``gt_rows`` (M,) int64, ``gt_maps`` (M, 224, 224) float32 in [0, 1]; ``boxes`` (B, 4) int64
  pixel boxes of the 224 frame (x1, y1 exclusive), ``box_counts`` (M,) int64 (the boxes of
  ground-truth row i follow those of the rows before it); ``negative_rows`` (K,) int64 (samples
  whose sound has no visible source: none of these benchmarks has any);
- ``frame_size`` (2,) int64 (224, 224); ``info`` () str, a JSON object (format, split,
  encoders, windows).

Usage: ``python -m pipeline.spatial.sets --settings '{"release": {...}, "extraction": {...}}'
--out results/vggss/spatial_set`` (:func:`pipeline.config.spatial_set_settings` builds it).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.config import settings_argument
from pipeline.decode import DecodeError, read_audio, snippet_grid
from pipeline.encoders import (
    AudioEncoder,
    MissingWeightsError,
    VisualEncoder,
    build_audio_encoder,
    build_visual_encoder,
)
from pipeline.encoders.registry import AUDIO_ENCODERS, VISUAL_ENCODERS
from pipeline.io import atomic_path, write_json_atomic
from pipeline.spatial.benchmarks import (
    FRAME,
    BenchmarkError,
    BenchmarkSample,
    Release,
    read_benchmark,
)
from pipeline.spatial.data import EvaluationFrames, SpatialSnippets, encoder_grid_levels

log = logging.getLogger(__name__)

STILL_FPS = 1.0  # SpatialSnippets.video_fps of a still image
# Encoders that cannot embed a single still (VideoMAE needs its num_frames frames).
NO_STILLS = {"videomae": "VideoMAE needs a clip of num_frames frames; a still is one frame"}


@dataclass(frozen=True)
class SetSettings:
    """How a spatial set is built (the ``--settings`` of the job).

    Args:
        release: the config's ``dataset.import`` block (:class:`Release` reads it).
        visual: visual encoder config ``{"name": ..., **kwargs}`` (must have a grid).
        audio: audio encoder config.
        window_s: audio window of one embedding (the encoder's window), seconds.
        stride_s: stride of the audio windows inside a sample's audio, seconds.
        fp16: half-precision inference on CUDA.
        on_error: ``fail`` or ``skip`` bad samples (listed in ``report.json``).
        batch_size: images (and audio windows) per encoder call.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    release: dict[str, Any]
    visual: dict[str, Any]
    audio: dict[str, Any]
    window_s: float
    stride_s: float
    fp16: bool = False
    on_error: str = "fail"
    batch_size: int = 64
    device: str = "auto"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SetSettings:
        """From ``{"release": ..., "extraction": {...}}`` (the extraction block's keys)."""
        extraction = settings["extraction"]
        keys = ("visual", "audio", "window_s", "stride_s", "fp16", "on_error", "batch_size")
        return cls(
            release=dict(settings["release"]),
            device=extraction.get("device", "auto"),
            **{key: extraction[key] for key in keys if key in extraction},
        )


def _default(registry: Any, name: str, key: str) -> Any:
    """The constructor default of option ``key`` of encoder ``name`` (imports its module)."""
    return inspect.signature(registry.get(name).__init__).parameters[key].default


def check_encoder_weights(visual: Mapping[str, Any], audio: Mapping[str, Any]) -> None:
    """The encoders' weights are on this machine, without loading them (run when the DAG is
    built): open_clip checkpoints in the local caches or ``weights_path``; torchvision ResNet
    checkpoints in the torch hub cache or ``weights_path``; Hugging Face models (CLAP, AST) as a
    folder or in the hub cache. ``download: true`` skips the check.

    Raises:
        MissingWeightsError: naming the model and how to get it.
        ValueError: an encoder that cannot embed a still image.
    """
    from pipeline.encoders.hub import cached_tag_checkpoint, hf_cache_location, looks_like_path

    if visual["name"] in NO_STILLS:
        raise ValueError(
            f"extraction.visual: {NO_STILLS[visual['name']]}; use classic, clip or resnet"
        )
    for registry, cfg in ((VISUAL_ENCODERS, visual), (AUDIO_ENCODERS, audio)):
        name = cfg["name"]
        if name == "classic" or cfg.get("download", False):
            continue

        def option(key: str, cfg: Mapping[str, Any] = cfg, registry: Any = registry) -> Any:
            return cfg[key] if key in cfg else _default(registry, cfg["name"], key)

        cache_dir = option("cache_dir")
        if name == "resnet":
            from pipeline.encoders.resnet import resnet_checkpoint

            resnet_checkpoint(option("arch"), option("weights"), option("weights_path"), cache_dir)
            continue
        if name == "clip":
            model, weights_path = option("model"), option("weights_path")
            if weights_path is not None:
                if not Path(weights_path).expanduser().is_file():
                    raise MissingWeightsError(
                        f"CLIP model {model}: weights_path {weights_path!r} does not exist; set "
                        "`weights_path:` to an open_clip checkpoint file"
                    )
                continue
            import open_clip

            pretrained = option("pretrained")
            tag = open_clip.get_pretrained_cfg(model, pretrained or "")
            if not tag or cached_tag_checkpoint(tag, cache_dir) is None:
                raise MissingWeightsError(
                    f"CLIP model {model} (pretrained {pretrained!r}) is not in the local cache "
                    f"({hf_cache_location(cache_dir)}) and `download` is false; fetch it on a "
                    "machine with network (open_clip.create_model_and_transforms) and copy the "
                    "cache here, set `download: true`, or set `weights_path:` to a local "
                    "checkpoint file"
                )
            continue
        from huggingface_hub import try_to_load_from_cache

        model = option("model")
        if looks_like_path(model):
            found = Path(model).expanduser().is_dir()
        else:
            found = isinstance(try_to_load_from_cache(model, "config.json", cache_dir), str)
        if not found:
            raise MissingWeightsError(
                f"{name} model {model!r} is not in the local Hugging Face cache "
                f"({hf_cache_location(cache_dir)}) and `download` is false; fetch it with "
                f"`hf download {model}` on a machine with network and copy the cache here, set "
                "`model:` to a local folder, or set `download: true`"
            )


def load_image(path: str | Path, frame_size: tuple[int, int] = (FRAME, FRAME)) -> np.ndarray:
    """(height, width, 3) uint8 RGB of an image resized to 224x224, then to ``frame_size``
    (bicubic both times)."""
    from PIL import Image

    with Image.open(path) as image:
        frame = image.convert("RGB").resize((FRAME, FRAME), Image.Resampling.BICUBIC)
    if tuple(frame_size) != (FRAME, FRAME):
        frame = frame.resize(tuple(frame_size), Image.Resampling.BICUBIC)
    return np.asarray(frame, dtype=np.uint8)


def encode_grids(
    samples: Sequence[BenchmarkSample], encoder: VisualEncoder, batch_size: int
) -> np.ndarray:
    """(N, H', W', Dg) grids of the samples' images, each a 1-frame clip."""
    rows = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        clips = np.stack([load_image(s.image_path, encoder.frame_size) for s in batch])[:, None]
        rows.append(encoder.encode_grid(clips))  # clips (B, 1, H, W, 3)
    return np.concatenate(rows).astype(np.float32)


def sample_windows(
    samples: Sequence[BenchmarkSample], sample_rate: int, window_s: float, stride_s: float
) -> Iterator[tuple[int, np.ndarray]]:
    """``(row, windows (T, N))`` of each sample in order: its audio window cut into the
    extraction's windows; one sound file is held at a time (AVSBench: five frames share one)."""
    from pipeline.video_extraction import audio_windows

    cached_path, waveform = None, np.zeros(0, np.float32)
    for row, sample in enumerate(samples):
        if sample.audio_path != cached_path:
            cached_path, waveform = sample.audio_path, read_audio(sample.audio_path, sample_rate)
        part = waveform[
            round(sample.audio_start_s * sample_rate) : round(sample.audio_end_s * sample_rate)
        ]
        timestamps = snippet_grid(len(part) / sample_rate, window_s, stride_s)  # (T, 2)
        yield row, audio_windows(part, timestamps, sample_rate)


def fixed_batches(
    parts: Iterable[tuple[int, np.ndarray]], size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive batches of ``size`` rows (the last may hold fewer) of the ``(row, items)``
    parts, as ``(rows (B,), items (B, ...))``, each item with the row it came from; at most
    one part more than a batch is held."""
    held_items: list[np.ndarray] = []
    held_rows: list[np.ndarray] = []
    count = 0
    for row, items in parts:
        held_items.append(items)
        held_rows.append(np.full(len(items), row, dtype=np.int64))
        count += len(items)
        while count >= size:  # a lone held array is sliced, not copied again
            stacked = held_items[0] if len(held_items) == 1 else np.concatenate(held_items)
            rows = held_rows[0] if len(held_rows) == 1 else np.concatenate(held_rows)
            yield rows[:size], stacked[:size]
            held_items, held_rows, count = [stacked[size:]], [rows[size:]], count - size
    if count:
        yield np.concatenate(held_rows), np.concatenate(held_items)


def encode_audio(
    samples: Sequence[BenchmarkSample],
    encoder: AudioEncoder,
    *,
    window_s: float,
    stride_s: float,
    batch_size: int,
) -> np.ndarray:
    """(N, Da): per sample, the mean embedding of its audio window's ``window_s`` windows,
    embedded ``batch_size`` windows at a time as the sound files are read: a split's windows
    together need not fit in memory (144,000 VGGSound training clips, 3 s each at the default
    0.96 s every 0.32 s, make a million windows, 62 GB at 16 kHz)."""
    windows = sample_windows(samples, encoder.sample_rate, window_s, stride_s)
    sums = np.zeros((len(samples), encoder.dim), dtype=np.float64)
    counts = np.zeros(len(samples), dtype=np.int64)
    for rows, batch in fixed_batches(windows, batch_size):
        np.add.at(sums, rows, encoder.encode(batch))  # batch (B, N)
        np.add.at(counts, rows, 1)
    return (sums / counts[:, None]).astype(np.float32)


def split_labels(samples: Sequence[BenchmarkSample], classes: Sequence[str]) -> np.ndarray:
    """(N, C) multi-hot labels; (N, 0) when the split has no class labels."""
    labelled = [bool(sample.classes) for sample in samples]
    if not any(labelled):
        return np.zeros((len(samples), 0), dtype=np.float32)
    if not all(labelled):
        missing = samples[labelled.index(False)]
        raise BenchmarkError(
            f"{missing.split} sample {missing.sample_id} has no class while others of its split "
            "have one; give every sample of the split its class"
        )
    column = {name: i for i, name in enumerate(classes)}
    labels = np.zeros((len(samples), len(classes)), dtype=np.float32)
    for row, sample in enumerate(samples):
        labels[row, [column[name] for name in sample.classes]] = 1.0
    return labels


def write_split(
    path: Path,
    samples: Sequence[BenchmarkSample],
    grids: np.ndarray,
    audio: np.ndarray,
    classes: Sequence[str],
    info: Mapping[str, Any],
) -> Path:
    """Write one split file (the layout of the module docstring), atomically."""
    labels = split_labels(samples, classes)
    evaluated = [row for row, sample in enumerate(samples) if sample.gt_map is not None]
    boxes = [box for row in evaluated for box in samples[row].boxes]
    arrays = {
        "sample_ids": np.asarray([s.sample_id for s in samples], dtype=str),
        "image_paths": np.asarray([str(s.image_path) for s in samples], dtype=str),
        "audio_paths": np.asarray([str(s.audio_path) for s in samples], dtype=str),
        "audio_window_s": np.asarray(
            [[s.audio_start_s, s.audio_end_s] for s in samples], dtype=np.float64
        ).reshape(-1, 2),
        "clip_frame": np.asarray([s.clip_frame for s in samples], dtype=np.int64),
        "grids": grids,
        "audio": audio,
        "labels": labels,
        "classes": np.asarray(classes if labels.shape[1] else [], dtype=str),
        "gt_rows": np.asarray(evaluated, dtype=np.int64),
        "gt_maps": np.stack([samples[row].gt_map for row in evaluated]).astype(np.float32)
        if evaluated
        else np.zeros((0, FRAME, FRAME), dtype=np.float32),
        "boxes": np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        "box_counts": np.asarray([len(samples[row].boxes) for row in evaluated], dtype=np.int64),
        "negative_rows": np.zeros(0, dtype=np.int64),
        "frame_size": np.asarray([FRAME, FRAME], dtype=np.int64),
        "info": np.asarray(json.dumps(info, sort_keys=True)),
    }
    with atomic_path(path, suffix=".part.npz") as temp_path:
        np.savez_compressed(temp_path, **arrays)
    return path


def build_set(settings: SetSettings, out_dir: str | Path) -> dict[str, Any]:
    """Read and check the release, embed every split, write the split files and
    ``report.json``; return the report.

    Raises:
        MissingWeightsError: an encoder's weights are missing (before any file is read).
        BenchmarkError, FileNotFoundError: a bad release or sample (before any encoding).
    """
    out_dir = Path(out_dir)
    release = Release.from_settings(settings.release)
    check_encoder_weights(settings.visual, settings.audio)
    visual = build_visual_encoder(settings.visual, device=settings.device, fp16=settings.fp16)
    audio = build_audio_encoder(settings.audio, device=settings.device, fp16=settings.fp16)
    if visual.grid_shape is None:
        raise ValueError(
            f"visual encoder {visual.name!r} has no patch grid; use classic, clip or resnet"
        )
    read = read_benchmark(release, min_audio_s=settings.window_s, on_error=settings.on_error)
    classes = sorted({name for sample in read.samples for name in sample.classes})
    info = {
        "format": release.format,
        "root": str(release.root),
        "encoders": {"visual": visual.config(), "audio": audio.config()},
        "audio_windows": {"window_s": settings.window_s, "stride_s": settings.stride_s},
        "image": f"PIL bicubic to {FRAME}x{FRAME}, then to the encoder's frame_size",
    }
    report: dict[str, Any] = {**info, **read.report(), "seconds": {}}
    for split in release.splits:
        started = time.perf_counter()
        samples = [sample for sample in read.samples if sample.split == split]
        if samples:
            grids = encode_grids(samples, visual, settings.batch_size)
            embedded = encode_audio(
                samples,
                audio,
                window_s=settings.window_s,
                stride_s=settings.stride_s,
                batch_size=settings.batch_size,
            )
        else:  # every sample of the split was skipped, or the release has none
            grids = np.zeros((0, *visual.grid_shape, visual.grid_dim), dtype=np.float32)
            embedded = np.zeros((0, audio.dim), dtype=np.float32)
        write_split(
            out_dir / f"{split}.npz", samples, grids, embedded, classes, {**info, "split": split}
        )
        report["seconds"][split] = round(time.perf_counter() - started, 2)
        log.info("%s: %d samples (%.1f s)", split, len(samples), report["seconds"][split])
    write_json_atomic(out_dir / "report.json", report, indent=1)
    return report


def load_set(path: str | Path) -> tuple[SpatialSnippets, EvaluationFrames | None]:
    """One split file of a set as the spatial stage's snippets and, where the split has ground
    truth, its evaluation frames (every sample with a map is evaluated)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spatial set split {path} does not exist; build the set first")
    with np.load(path, allow_pickle=False) as archive:
        data = {key: archive[key] for key in archive.files}
    sample_ids = data["sample_ids"].astype(str)
    count = len(sample_ids)
    width, height = (int(v) for v in data["frame_size"])
    visual_encoder = json.loads(str(data["info"]))["encoders"]["visual"]
    snippets = SpatialSnippets(
        grids=data["grids"].astype(np.float32, copy=False),
        audio=data["audio"].astype(np.float32, copy=False),
        video_ids=sample_ids,
        snippet_index=data["clip_frame"],
        frame_index=np.zeros(count, dtype=np.int64),
        frame_time_s=np.zeros(count, dtype=np.float64),
        video_fps=STILL_FPS,
        frame_size=(width, height),
        sources=dict(
            zip(sample_ids.tolist(), data["image_paths"].astype(str).tolist(), strict=True)
        ),
        labels=data["labels"].astype(np.float32, copy=False),
        classes=tuple(data["classes"].astype(str).tolist()),
        grid_levels=encoder_grid_levels(visual_encoder),
    )
    if len(data["gt_rows"]) == 0:
        return snippets, None
    ends = np.cumsum(data["box_counts"])
    boxes = [
        data["boxes"][end - n : end].tolist()
        for n, end in zip(data["box_counts"], ends, strict=True)
    ]
    frames = EvaluationFrames(
        rows=data["gt_rows"],
        masks=data["gt_maps"].astype(np.float32, copy=False),
        sounding_boxes=boxes,
        silent_boxes=[[] for _ in boxes],
        negative_rows=data["negative_rows"],
    )
    return snippets, frames


def training_split(set_dir: str | Path) -> tuple[Path, str]:
    """The split file training reads, and what it is: ``train.npz``, or ``test.npz`` where the
    release has no training list (image-sound pairs only: no box or mask is read)."""
    set_dir = Path(set_dir)
    if (set_dir / "train.npz").is_file():
        return set_dir / "train.npz", "train"
    return set_dir / "test.npz", "test (no training list: the test samples' image-sound pairs)"


@user_errors(MissingWeightsError, DecodeError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings",
        required=True,
        help='JSON object (or file): {"release": <dataset.import>, "extraction": {"visual", '
        '"audio", "window_s", "stride_s", "fp16", "on_error", "batch_size", "device"}}',
    )
    parser.add_argument("--out", required=True, help="the set's folder ({split}.npz, report.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = build_set(SetSettings.from_settings(settings_argument(args.settings)), args.out)
    print(json.dumps({key: report[key] for key in ("format", "num_samples", "seconds")}))
    for kind in ("skipped", "excluded"):
        for problem in report[kind]:
            print(f"{kind}: {problem['split']} sample {problem['sample_id']}: {problem['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
