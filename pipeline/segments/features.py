"""Fixed per-segment features for the segment classifiers, from AV-BT or from a release.

- AV-BT (:func:`extract_features`): ``f_a`` and ``f_v`` of Sec. 3.2, the encoders' outputs
  (CNN, then Bi-LSTM over the video's segments) before the projector, as the paper's
  classifiers read them (Sec. 3.3, Sec. 4.2.1). A segment's visual CNN embedding is the mean
  over its frames (centre crops, no augmentation; the paper does not say which frame it uses
  at test time), then the Bi-LSTM runs over the video.
- A feature release imported into per-video stores (:func:`released_features`): the AVE
  release's VGG-19 pool5 (mean over the 7 x 7 map, 512-d) and VGGish (128-d) vectors, one per
  segment, the prior work's protocol.

One ``.npz`` per data set holds ``audio`` and ``visual`` ``(N, D)`` float32 with the segments'
``video_ids``, ``segments``, ``label_ids`` and ``subsets`` in segments.csv order,
``num_classes`` and a summary of where the features come from.

CLI: ``python -m pipeline.segments.features --clips clips.zarr --checkpoint avbt.pt
--out features.npz``, or ``--index index.json --segments segments.csv --annotations
annotations.json --out features.npz`` for a release.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.avbt import AVBarlowTwins
from pipeline.cli import user_errors
from pipeline.io import atomic_path
from pipeline.segments.augment import centre_crops
from pipeline.segments.clips import SegmentClips, load_clips, read_segment_labels
from pipeline.segments.pretrain import frames_to_tensor, load_pretrained
from pipeline.store import StoreError, read_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentFeatures:
    """Per-segment features of a data set (N segments, segments.csv order).

    Attributes:
        audio: ``(N, D_a)`` float32 audio features.
        visual: ``(N, D_v)`` float32 visual features.
        video_ids: ``(N,)`` str.
        segments: ``(N,)`` int64 segment index within its video.
        label_ids: ``(N,)`` int64, ``num_classes`` for background.
        subsets: ``(N,)`` str.
        num_classes: K event classes.
        pretraining: where the features come from: the AV-BT summary (settings, losses,
            parameter counts, throughput) or ``{"release": ...}`` for imported features.
    """

    audio: np.ndarray
    visual: np.ndarray
    video_ids: np.ndarray
    segments: np.ndarray
    label_ids: np.ndarray
    subsets: np.ndarray
    num_classes: int
    pretraining: dict[str, Any]


@torch.no_grad()
def extract_features(
    model: AVBarlowTwins, clips: SegmentClips, crop_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """AV-BT features ``f_a`` ``(N, d_l)`` and ``f_v`` ``(N, d_l)`` of every segment, video by
    video (the Bi-LSTM sees one whole video)."""
    model.eval()
    audio = np.zeros((len(clips.video_ids), model.feature_dim), np.float32)
    visual = np.zeros_like(audio)
    for rows in clips.videos():
        log_mel = torch.from_numpy(clips.log_mel[rows])[None, :, None]  # (1, T, 1, M, n_mels)
        audio[rows] = model.audio_encoder(log_mel)[0].numpy()
        frames = np.asarray(clips.frames[rows[0] : rows[-1] + 1])  # (T, F, H, W, 3)
        flat = frames_to_tensor(frames.reshape(-1, *frames.shape[2:]))  # (T * F, 3, H, W)
        embedded = model.visual_encoder.backbone(centre_crops(flat, crop_size))  # (T * F, D)
        per_segment = embedded.view(len(rows), frames.shape[1], -1).mean(dim=1)  # (T, D)
        visual[rows] = model.visual_encoder.contextualise(per_segment[None])[0].numpy()
    return audio, visual


def released_features(
    index_path: str | Path,
    segments_csv: str | Path,
    annotations_json: str | Path,
    num_classes: int,
) -> SegmentFeatures:
    """The per-segment vectors of imported stores, in segments.csv order: each store must
    have one snippet per labelled segment.

    Raises:
        StoreError: a store is missing or its snippet count differs from the labels'.
    """
    index_path = Path(index_path)
    index = json.loads(index_path.read_text())
    labels = read_segment_labels(segments_csv, annotations_json, num_classes)
    counts: dict[str, int] = {}
    for label in labels:
        counts[label.video_id] = counts.get(label.video_id, 0) + 1
    audio, visual = [], []
    for video_id, count in counts.items():
        entry = index["videos"].get(video_id)
        if entry is None:
            raise StoreError(f"{index_path}: no store for {video_id}, which {segments_csv} labels")
        store = read_store(index_path.parent / entry["store"])
        if len(store.audio) != count:
            raise StoreError(
                f"{index_path.parent / entry['store']}: {len(store.audio)} snippets, but "
                f"{segments_csv} labels {count} segments of {video_id}"
            )
        audio.append(store.audio)
        visual.append(store.visual)
    return SegmentFeatures(
        audio=np.concatenate(audio).astype(np.float32),
        visual=np.concatenate(visual).astype(np.float32),
        video_ids=np.array([label.video_id for label in labels]),
        segments=np.array([label.segment for label in labels], dtype=np.int64),
        label_ids=np.array([label.label_id for label in labels], dtype=np.int64),
        subsets=np.array([label.subset for label in labels]),
        num_classes=num_classes,
        pretraining={
            "release": index.get("encoder_set"),
            "encoders": {name: encoder.get("name") for name, encoder in index["encoders"].items()},
        },
    )


def save_features(features: SegmentFeatures, path: str | Path) -> Path:
    """Write ``features`` to an ``.npz`` atomically."""
    path = Path(path)
    with atomic_path(path, suffix=".part.npz") as partial:  # np.savez would append .npz
        np.savez(
            partial,
            audio=features.audio,
            visual=features.visual,
            video_ids=features.video_ids,
            segments=features.segments,
            label_ids=features.label_ids,
            subsets=features.subsets,
            num_classes=np.int64(features.num_classes),
            pretraining=np.array(json.dumps(features.pretraining)),
        )
    return path


def load_features(path: str | Path) -> SegmentFeatures:
    """Read a file written by :func:`save_features`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"segment features {path} do not exist; run pipeline.segments.features"
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    pretraining = json.loads(str(arrays.pop("pretraining")))
    num_classes = int(arrays.pop("num_classes"))
    return SegmentFeatures(**arrays, num_classes=num_classes, pretraining=pretraining)


@user_errors(StoreError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", help="clips .zarr of pipeline.segments.clips (AV-BT)")
    parser.add_argument("--checkpoint", help="AV-BT checkpoint .pt (with --clips)")
    parser.add_argument("--index", help="index.json of imported stores (a release)")
    parser.add_argument("--segments", help="segments.csv (with --index)")
    parser.add_argument("--annotations", help="annotations.json with the subsets (with --index)")
    parser.add_argument("--num-classes", type=int, help="K, background = K (with --index)")
    parser.add_argument("--out", required=True, help="features .npz to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()
    if args.index:
        if not (args.segments and args.annotations and args.num_classes):
            parser.error("--index needs --segments, --annotations and --num-classes")
        features = released_features(args.index, args.segments, args.annotations, args.num_classes)
    else:
        if not (args.clips and args.checkpoint):
            parser.error("give --clips and --checkpoint (AV-BT) or --index (a release)")
        model, summary = load_pretrained(args.checkpoint)
        clips = load_clips(args.clips)
        crop_size = int(summary["settings"]["crop_size"])
        audio, visual = extract_features(model, clips, crop_size)
        features = SegmentFeatures(
            audio=audio,
            visual=visual,
            video_ids=clips.video_ids,
            segments=clips.segments,
            label_ids=clips.label_ids,
            subsets=clips.subsets,
            num_classes=clips.num_classes,
            pretraining=summary,
        )
    save_features(features, args.out)
    if args.index:  # the table reads where the features come from
        Path(args.out).with_suffix(".json").write_text(json.dumps(features.pretraining, indent=1))
    log.info(
        "features of %d segments in %.1f s -> %s",
        len(features.audio),
        time.perf_counter() - started,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
