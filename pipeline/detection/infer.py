"""Stage 2 inference: a trained model's detections, in seconds, for a split or a single video.

Detector outputs are in grid units (position ``i`` = snippet ``i``); they are turned into seconds
through the video's own snippet ``centres`` (:func:`pipeline.detection.data.grid_to_seconds`) and
clipped to ``[0, duration]``. A detection left with no length after clipping lies outside the video
and is dropped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models import build_detector
from pipeline.annotations import load_annotations
from pipeline.cli import user_errors
from pipeline.decode import DecodeError
from pipeline.detection.data import (
    FeatureDataset,
    collate_videos,
    grid_to_seconds,
    load_index,
    load_stats,
    stats_from_dict,
)
from pipeline.detection.metrics import write_results
from pipeline.encoders import MissingWeightsError
from pipeline.runtime import load_checkpoint, resolve_device
from pipeline.store import StoreError

log = logging.getLogger(__name__)


def load_model(model_path: str | Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The detector of ``model.pt`` (best EMA weights, eval mode) and the whole record."""
    bundle = load_checkpoint(model_path, map_location=device)
    missing = [
        key for key in ("model_config", "state_dict", "labels", "stats") if key not in bundle
    ]
    if missing:
        raise ValueError(
            f"{model_path} lacks {missing}; it was not written by pipeline.detection.train"
        )
    detector = build_detector(bundle["model_config"]).to(device)
    detector.load_state_dict(bundle["state_dict"])
    detector.eval()
    return detector, bundle


def detections_to_events(
    detection: Mapping[str, torch.Tensor],
    *,
    centres: np.ndarray,
    stride_s: float,
    duration_s: float,
    labels: Sequence[str],
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One video's detections as ``[{"segment": [s, e], "label", "label_id", "score"}]``.

    Args:
        detection: ``{"segments": (K, 2) grid units, "scores": (K,), "labels": (K,)}``.
        centres: (T,) snippet centres of the video, seconds.
        stride_s: snippet stride, for positions past the first or last centre.
        duration_s: video duration; segments are clipped to ``[0, duration_s]``.
        labels: class names by label id.
        offset: grid position of the detector input's first snippet in the video.
    """
    segments = detection["segments"].detach().cpu().double().numpy().reshape(-1, 2) + offset
    seconds = np.clip(grid_to_seconds(segments, centres, stride_s), 0.0, duration_s)  # (K, 2)
    scores = detection["scores"].detach().cpu().double().numpy().reshape(-1)
    label_ids = detection["labels"].detach().cpu().numpy().reshape(-1)
    events = [
        {
            "segment": [float(start), float(end)],
            "label": labels[int(label_id)],
            "label_id": int(label_id),
            "score": float(score),
        }
        for (start, end), score, label_id in zip(seconds, scores, label_ids, strict=True)
        if end > start
    ]
    return sorted(events, key=lambda event: -event["score"])


@torch.no_grad()
def predict_dataset(
    detector: nn.Module,
    dataset: FeatureDataset,
    *,
    device: torch.device,
    batch_size: int = 1,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Detections in seconds for every video of ``dataset`` (whole videos), and the throughput.

    Returns:
        ``({video_id: events}, {"num_videos", "num_snippets", "seconds", "snippets_per_s"})``.
    """
    was_training = detector.training
    detector.eval()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=partial(collate_videos, pad_multiple=int(detector.max_stride)),
    )
    events: dict[str, list[dict[str, Any]]] = {}
    num_snippets, started = 0, time.perf_counter()
    for batch in loader:
        inputs = {name: tensor.to(device) for name, tensor in batch["inputs"].items()}
        mask = batch["mask"].to(device)
        detections = detector.predict(detector(inputs, mask))
        for row, detection in enumerate(detections):
            events[batch["video_ids"][row]] = detections_to_events(
                detection,
                centres=batch["centres"][row].numpy(),
                stride_s=batch["stride_s"][row],
                duration_s=batch["duration_s"][row],
                labels=dataset.labels,
                offset=batch["offsets"][row],
            )
        num_snippets += int(batch["mask"].sum())
    seconds = time.perf_counter() - started
    detector.train(was_training)
    throughput = {
        "num_videos": len(events),
        "num_snippets": num_snippets,
        "seconds": round(seconds, 4),
        "snippets_per_s": round(num_snippets / max(seconds, 1e-9), 2),
    }
    return events, throughput


def _check_compatible(bundle: dict[str, Any], model_path: Path, index: Any, stats: Any) -> None:
    """Refuse features or statistics other than the ones the model was trained on."""
    recorded = bundle.get("extraction", {}).get("config_hash")
    found = index.content.get("config_hash")
    if recorded is not None and recorded != found:
        raise ValueError(
            f"{index.path} holds features extracted with settings {found} but {model_path} was "
            f"trained on {recorded}; use the model's own feature index"
        )
    for name in ("visual", "audio"):
        same = np.allclose(stats.mean[name], bundle["stats"][name]["mean"]) and np.allclose(
            stats.content[name]["std"], bundle["stats"][name]["std"]
        )
        if not same:
            raise ValueError(
                f"the {name} statistics in the stats file differ from those {model_path} was "
                "trained with; pass the stats.json of the model's training run"
            )


def predict_split(
    model_path: str | Path,
    *,
    index_path: str | Path,
    stats_path: str | Path,
    annotations_path: str | Path,
    split: str,
    out_path: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """Detections of the videos of ``split`` in seconds; written as ActivityNet results JSON
    (plus ``{out}.throughput.json``) when ``out_path`` is given.

    Videos without a store follow the run's ``training.missing`` setting (error or skip).
    """
    model_path = Path(model_path)
    torch_device = resolve_device(device)
    detector, bundle = load_model(model_path, torch_device)
    index, stats = load_index(index_path), load_stats(stats_path)
    _check_compatible(bundle, model_path, index, stats)
    annotations = load_annotations(annotations_path)
    if tuple(annotations.labels) != tuple(bundle["labels"]):
        raise ValueError(
            f"{annotations_path} has labels {list(annotations.labels)[:5]}... but {model_path} was "
            f"trained on {list(bundle['labels'])[:5]}...; use the model's annotation file"
        )
    missing = bundle["run_config"].get("training", {}).get("missing", "error")
    dataset = FeatureDataset(
        annotations,
        split,
        index,
        stats,
        modalities=detector.input_modalities,
        training=False,
        missing=missing,
    )
    events, throughput = predict_dataset(
        detector, dataset, device=torch_device, batch_size=batch_size
    )
    print(
        f"inference on {split}: {throughput['num_snippets']} snippets of "
        f"{throughput['num_videos']} videos in {throughput['seconds']:.2f} s "
        f"({throughput['snippets_per_s']:.1f} snippets/s on {torch_device})"
    )
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_results(out_path, events, bundle["labels"])
        sidecar = {"split": split, "device": str(torch_device), **throughput}
        sidecar["skipped"] = dataset.skipped
        out_path.with_suffix(".throughput.json").write_text(json.dumps(sidecar, indent=1))
    return events


def detect_video(
    video_path: str | Path,
    model_path: str | Path,
    *,
    top_k: int | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Events of one video file: extracted with the run's recorded extraction settings, then
    detected; the ``top_k`` highest-scoring events (all when None), in seconds."""
    from pipeline.extract import extract_video  # builds encoders: only needed here

    model_path = Path(model_path)
    torch_device = resolve_device(device)
    detector, bundle = load_model(model_path, torch_device)
    settings = bundle.get("extraction", {}).get("settings")
    if not settings:
        raise ValueError(
            f"{model_path} records no extraction settings (its features were not extracted by "
            "pipeline.extract), so a video cannot be re-extracted the same way"
        )
    # The detectors read the pooled visual rows, which the patch grid leaves as they are; the
    # grid would only cost encoder time (and 160 MB for a 2 h video).
    features = extract_video(video_path, {**settings, "visual_grid": False}, device=device)
    stats = stats_from_dict(bundle["stats"], source=f"{model_path} stats")
    info = features.info
    present = {"visual": True, "audio": info.audio_present}
    item = {
        "video_id": features.video_id,
        "features": {
            name: torch.from_numpy(
                stats.normalise(name, getattr(features, name), present=present[name])
            )
            for name in detector.input_modalities
        },
        "segments": torch.zeros(0, 2),
        "labels": torch.zeros(0, dtype=torch.int64),
        "offset": 0,
        "num_snippets": features.num_snippets,
        "centres": torch.from_numpy(features.centres),
        "stride_s": info.stride_s,
        # the probed duration; the end of the last snippet when the probe recorded none
        "duration_s": float(features.timestamps[-1, 1])
        if info.duration_s is None
        else info.duration_s,
    }
    batch = collate_videos([item], pad_multiple=int(detector.max_stride))
    with torch.no_grad():
        inputs = {name: tensor.to(torch_device) for name, tensor in batch["inputs"].items()}
        detection = detector.predict(detector(inputs, batch["mask"].to(torch_device)))[0]
    events = detections_to_events(
        detection,
        centres=features.centres,
        stride_s=item["stride_s"],
        duration_s=item["duration_s"],
        labels=bundle["labels"],
    )
    return events if top_k is None else events[:top_k]


@user_errors(StoreError, DecodeError, MissingWeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, help="model.pt written by pipeline.detection.train"
    )
    parser.add_argument("--video", help="one video file: extract it and print its events")
    parser.add_argument("--top-k", type=int, default=20, help="events printed for --video")
    parser.add_argument("--index", help="index.json of the extracted features (split mode)")
    parser.add_argument("--stats", help="stats.json of the features (split mode)")
    parser.add_argument("--annotations", help="annotation file (split mode)")
    parser.add_argument("--split", default="test", help="annotation subset to detect on")
    parser.add_argument("--out", help="results JSON to write (split mode)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=1, help="videos per forward pass")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.video:
        needed = {"--index": args.index, "--stats": args.stats}
        needed.update({"--annotations": args.annotations, "--out": args.out})
        absent = [flag for flag, value in needed.items() if not value]
        if absent:
            parser.error(f"split mode needs {', '.join(absent)} (or pass --video)")
    if args.video:
        events = detect_video(args.video, args.model, top_k=args.top_k, device=args.device)
        print(json.dumps({"video": args.video, "events": events}, indent=1))
        return 0
    predict_split(
        args.model,
        index_path=args.index,
        stats_path=args.stats,
        annotations_path=args.annotations,
        split=args.split,
        out_path=args.out,
        device=args.device,
        batch_size=args.batch_size,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
