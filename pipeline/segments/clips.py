"""1-second segments of videos: their labels, frames and log-mel spectrograms, in one file.

Segment ``k`` of a video covers ``[k, k + 1)`` seconds on the time axis of
:mod:`pipeline.decode`. Its frames are the decoder's output frames ``k * F .. k * F + F - 1``
at ``F = frame_fps`` frames per second, shown at ``k + j / F`` (all inside the segment);
its audio is samples ``[k * sr, (k + 1) * sr)``, turned into VGGish's log-mel spectrogram
(AV-BT Sec. 4.1: 16 kHz, 64 mel bands, 96 x 64 per segment): magnitudes of periodic-Hann STFT
frames wholly inside the segment (25 ms every 10 ms, no centring) on an HTK mel filter bank
from 125 to 7500 Hz, ``log(mel + 0.01)``, the first 96 frames. (VGGish's own filter bank
leaves out the DC bin; librosa's HTK bank used here gives it no weight below 125 Hz either.)
The spectrogram is :class:`pipeline.audio.LogMelSpectrogram`, shared with the classic encoder.

Labels come from an AVE-style ``segments.csv`` (``video_id,segment,start_s,end_s,label,
label_id``, background = label_id K) and each video's subset from ``annotations.json``; a
video id of the annotations may name another file with ``source_video`` (AVE's rows: two rows
can share one YouTube clip). Every video is decoded once, and the data set is written to one
chunked Zarr store ``clips.zarr``, one chunk per frame, so the paper's 16 frames of 256 x 256
per segment (31 MB per AVE clip) are read back frame by frame, never all into memory.

CLI: ``python -m pipeline.segments.clips VIDEO... --segments results/demo/segments.csv
--annotations results/demo/annotations.json --num-classes 10 --out clips.zarr``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.audio import LogMelSpectrogram
from pipeline.cli import decoder_threads, user_errors
from pipeline.config import settings_argument
from pipeline.decode import DecodeError, StreamDamage, decode_errors, iter_frames, read_audio
from pipeline.segments.settings import ClipSettings, check_settings, from_dict, settings_help
from pipeline.store import atomic_directory

log = logging.getLogger(__name__)

SEGMENTS_COLUMNS = ("video_id", "segment", "start_s", "end_s", "label", "label_id")
BACKGROUND = "background"


@dataclass(frozen=True)
class SegmentLabel:
    """One row of segments.csv with its video's subset."""

    video_id: str
    segment: int  # index k of the second [k, k + 1)
    label_id: int  # 0..K-1 an event class, K background
    subset: str  # train, validation or test
    source_video: str  # stem of the video file the segment is cut from


@dataclass(frozen=True)
class SegmentClips:
    """Decoded inputs of every segment of a data set, in segments.csv order (N segments).

    Attributes:
        frames: ``(N, F, H, W, 3)`` uint8 RGB frames of each segment (a Zarr array read on
            demand, or an in-memory array).
        log_mel: ``(N, mel_frames, n_mels)`` float32 log-mel spectrogram of each segment.
        video_ids: ``(N,)`` str.
        segments: ``(N,)`` int64 segment index within its video.
        label_ids: ``(N,)`` int64, ``num_classes`` for background.
        subsets: ``(N,)`` str, train / validation / test.
        num_classes: K event classes.
        settings: how the segments were cut.
    """

    frames: Any
    log_mel: np.ndarray
    video_ids: np.ndarray
    segments: np.ndarray
    label_ids: np.ndarray
    subsets: np.ndarray
    num_classes: int
    settings: ClipSettings

    def indices(self, subset: str) -> np.ndarray:
        """Row indices of the segments of one subset."""
        return np.flatnonzero(self.subsets == subset)

    def videos(self, subset: str | None = None) -> list[np.ndarray]:
        """The row indices of each video (segment order), in file order; one subset or all."""
        rows = np.arange(len(self.video_ids)) if subset is None else self.indices(subset)
        starts = np.flatnonzero(np.r_[True, self.video_ids[rows][1:] != self.video_ids[rows][:-1]])
        return np.split(rows, starts[1:])


def read_segment_labels(
    segments_csv: str | Path, annotations_json: str | Path, num_classes: int
) -> list[SegmentLabel]:
    """Rows of segments.csv with the subset of their video, checked.

    Raises ValueError naming the file when the header, a label id, the background id or the
    segment numbering is wrong, or a video is missing from the annotations.
    """
    segments_csv, annotations_json = Path(segments_csv), Path(annotations_json)
    database = json.loads(annotations_json.read_text())["database"]
    labels: list[SegmentLabel] = []
    seen_videos: set[str] = set()
    with segments_csv.open(newline="") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != SEGMENTS_COLUMNS:
            raise ValueError(
                f"{segments_csv}: header must be {','.join(SEGMENTS_COLUMNS)}, got {header}"
            )
        for line, (video_id, segment, _, _, label, label_id) in enumerate(reader, start=2):
            where = f"{segments_csv}:{line}"
            if video_id not in database:
                raise ValueError(f"{where}: video {video_id} is not in {annotations_json}")
            label_id = int(label_id)
            if not 0 <= label_id <= num_classes or (label == BACKGROUND) != (
                label_id == num_classes
            ):
                raise ValueError(
                    f"{where}: label {label!r} with id {label_id} does not fit {num_classes} "
                    f"classes (ids 0..{num_classes - 1}, background = {num_classes}); "
                    "check --num-classes"
                )
            continues = bool(labels) and labels[-1].video_id == video_id
            if not continues and video_id in seen_videos:
                raise ValueError(f"{where}: the rows of {video_id} must be consecutive")
            seen_videos.add(video_id)
            expected = labels[-1].segment + 1 if continues else 0
            if int(segment) != expected:
                raise ValueError(f"{where}: segment {segment} of {video_id}, expected {expected}")
            entry = database[video_id]
            source = entry.get("source_video", video_id)
            labels.append(SegmentLabel(video_id, int(segment), label_id, entry["subset"], source))
    if not labels:
        raise ValueError(f"{segments_csv} lists no segments")
    return labels


def log_mel_spectrogram(waveforms: np.ndarray, settings: ClipSettings) -> np.ndarray:
    """``(S, N)`` float32 one-second waveforms -> ``(S, mel_frames, n_mels)`` float32 VGGish
    log-mel spectrograms (see the module docstring)."""
    front_end = LogMelSpectrogram(
        sample_rate=settings.sample_rate,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
        window_length=settings.window_length,
        power=1,  # magnitudes
        htk=True,
        norm=None,
        log_offset=settings.log_offset,
        fft_float64=True,
    )
    return front_end(waveforms, max_frames=settings.mel_frames)  # (S, mel_frames, n_mels)


def decode_video_segments(
    path: str | Path,
    num_segments: int,
    settings: ClipSettings,
    *,
    threads: int = 0,
    damage: dict[str, StreamDamage] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(S, F, H, W, 3)`` uint8 and log-mel ``(S, mel_frames, n_mels)`` of the first
    ``num_segments`` seconds of a video; ``threads``: the video decoder's (0: automatic,
    :func:`pipeline.decode.iter_frames`); ``damage``, when given, is filled in with the packets
    each decoder skipped, under ``"video"`` and ``"audio"``."""
    damage = damage if damage is not None else {}
    damage.setdefault("video", StreamDamage())
    damage.setdefault("audio", StreamDamage())
    fps = settings.frame_fps
    size = (settings.frame_width, settings.frame_height)
    frames = []
    for frame in iter_frames(path, float(fps), size, threads=threads, damage=damage["video"]):
        frames.append(frame)
        if len(frames) == num_segments * fps:
            break
    if len(frames) < num_segments * fps:
        raise ValueError(
            f"{path}: decoded {len(frames) / fps:.2f} s of video but the labels list "
            f"{num_segments} segments; regenerate the labels or the video"
        )
    frames_array = np.stack(frames).reshape(
        num_segments, fps, settings.frame_height, settings.frame_width, 3
    )  # (S, F, H, W, 3)
    samples = read_audio(path, settings.sample_rate, damage=damage["audio"])
    segment_samples = settings.sample_rate
    if len(samples) < num_segments * segment_samples:
        raise ValueError(
            f"{path}: {len(samples) / settings.sample_rate:.2f} s of audio but the labels list "
            f"{num_segments} segments; regenerate the labels or the video"
        )
    waveforms = samples[: num_segments * segment_samples].reshape(num_segments, segment_samples)
    return frames_array, log_mel_spectrogram(waveforms, settings)


def check_video_files(
    videos: dict[str, str | Path], labels: Sequence[SegmentLabel], where: str
) -> None:
    """Every labelled video has a file: raise naming the first missing one otherwise."""
    missing = sorted({label.source_video for label in labels} - set(videos))
    if missing:
        owner = next(label.video_id for label in labels if label.source_video == missing[0])
        raise FileNotFoundError(
            f"{where}: {len(missing)} labelled video(s) have no video file, e.g. {missing[0]} "
            f"(sample {owner}); add the file or remove its rows"
        )


def write_segment_clips(
    videos: dict[str, str | Path],
    labels: Sequence[SegmentLabel],
    num_classes: int,
    settings: ClipSettings,
    path: str | Path,
    *,
    threads: int = 0,
) -> Path:
    """Decode every video named in ``labels`` (file stem -> file in ``videos``) into the Zarr
    store ``path``, one video at a time, atomically (temporary name, then rename), with
    ``threads`` video decoder threads (0: automatic)."""
    check_video_files(videos, labels, "segment labels")
    order = list(dict.fromkeys(label.video_id for label in labels))
    counts = {video_id: 0 for video_id in order}
    for label in labels:
        counts[label.video_id] += 1
    source = {label.video_id: label.source_video for label in labels}
    fps, height, width = settings.frame_fps, settings.frame_height, settings.frame_width
    with atomic_directory(path) as partial:
        group = zarr.open_group(partial, mode="w", zarr_format=3)
        frames = group.create_array(
            "frames",
            shape=(len(labels), fps, height, width, 3),
            chunks=(1, 1, height, width, 3),
            dtype="uint8",
        )
        log_mel = np.zeros((len(labels), settings.mel_frames, settings.n_mels), np.float32)
        row = 0
        damaged: dict[str, dict[str, Any]] = {}  # video id -> {stream: figures}
        for video_id in order:
            damage: dict[str, StreamDamage] = {}
            video_frames, video_log_mel = decode_video_segments(
                videos[source[video_id]], counts[video_id], settings, threads=threads, damage=damage
            )
            if any(damage.values()):
                damaged[video_id] = decode_errors(damage)
            frames[row : row + counts[video_id]] = video_frames
            log_mel[row : row + counts[video_id]] = video_log_mel
            row += counts[video_id]
        group.create_array(
            "log_mel", data=log_mel, chunks=(min(4096, len(labels)), *log_mel.shape[1:])
        )
        group.attrs.update(
            {
                "video_ids": [label.video_id for label in labels],
                "segments": [label.segment for label in labels],
                "label_ids": [label.label_id for label in labels],
                "subsets": [label.subset for label in labels],
                "num_classes": num_classes,
                "settings": dataclasses.asdict(settings),
                # packets the decoders skipped, per video, as extraction records them
                "decode_errors": damaged,
            }
        )
    return Path(path)


IN_MEMORY_BYTES = 2 * 1024**3  # frames up to this size are read into memory at once


def load_clips(path: str | Path, max_in_memory_bytes: int = IN_MEMORY_BYTES) -> SegmentClips:
    """Open a store written by :func:`write_segment_clips`: frames up to
    ``max_in_memory_bytes`` (the CPU demo's) are read into memory, larger ones (the paper's
    16 frames of 256 x 256 per second) stay on disk and are read frame by frame."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"segment clips {path} do not exist; run pipeline.segments.clips")
    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    frames = group["frames"]
    if frames.nbytes <= max_in_memory_bytes:
        frames = np.asarray(frames[...])
    return SegmentClips(
        frames=frames,
        log_mel=np.asarray(group["log_mel"][...]),
        video_ids=np.array(attrs["video_ids"]),
        segments=np.array(attrs["segments"], dtype=np.int64),
        label_ids=np.array(attrs["label_ids"], dtype=np.int64),
        subsets=np.array(attrs["subsets"]),
        num_classes=int(attrs["num_classes"]),
        settings=from_dict(ClipSettings, attrs["settings"]),
    )


@user_errors(DecodeError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="video files; the id is the file name stem")
    parser.add_argument("--segments", required=True, help="AVE-style segments.csv")
    parser.add_argument("--annotations", required=True, help="annotations.json (subsets)")
    parser.add_argument("--num-classes", type=int, required=True, help="K (background = K)")
    parser.add_argument("--out", required=True, help="clips .zarr store to write")
    parser.add_argument("--settings", default="{}", help=settings_help(ClipSettings))
    parser.add_argument(
        "--threads",
        type=decoder_threads,
        default=0,
        help="video decoder threads (Snakemake passes the job's)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = check_settings(ClipSettings, settings_argument(args.settings), "--settings")
    started = time.perf_counter()
    labels = read_segment_labels(args.segments, args.annotations, args.num_classes)
    videos = {Path(video).stem: video for video in args.videos}
    write_segment_clips(videos, labels, args.num_classes, settings, args.out, threads=args.threads)
    log.info(
        "%d segments of %d videos in %.1f s -> %s",
        len(labels),
        len({label.video_id for label in labels}),
        time.perf_counter() - started,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
