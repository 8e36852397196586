"""Audio features of a benchmark's own videos, on the grid of its released visual features.

ActionFormer-format releases (THUMOS14 I3D, EPIC-Kitchens-100 SlowFast; arXiv 2202.07925) carry
visual features only. MRAV-FF (arXiv 2310.03456) adds audio on EPIC-Kitchens-100 and THUMOS14,
so the audio must describe the same seconds as the released rows: visual row ``i`` covers frames
``[i * feat_stride, i * feat_stride + num_frames)`` at ``fps`` (:class:`FrameGrid`), and audio row
``i`` is the configured audio encoder (``extraction.audio``) applied to exactly that window of the
video's sound, ``[i * feat_stride / fps, (i * feat_stride + num_frames) / fps]`` seconds.

The sound is decoded once per video by :func:`pipeline.decode.iter_audio` (mono, at the
encoder's sample rate, on the axis whose second 0 is the first video frame, the frame the
release's row 0 starts at) and cut as it streams by :func:`pipeline.audio.iter_windows` with the
extraction stage's windowing (:func:`pipeline.video_extraction.window_starts`: start sample
``round(start_s * sample_rate)``, zero-padded past the end), one batch of rows at a time, so an
hour-long EPIC-Kitchens video never holds its whole waveform or all its windows.

Before any decoding :func:`check_grid_duration` compares the rows with the video's length (the
annotations' ``duration``, then the probed file's); see :data:`GRID_SLACK_STRIDES` for the
tolerance. A video that cannot give audio (unreadable, no audio stream) raises
:class:`~pipeline.importers.common.VideoExtractionError`, which the import turns into a failed
job or a ``failed`` entry of the index (``extraction.on_error``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import iter_windows
from pipeline.config import settings_argument
from pipeline.decode import (
    DecodeError,
    NoAudioStream,
    StreamDamage,
    decode_errors,
    iter_audio,
    probe,
)
from pipeline.encoders import AudioEncoder, build_audio_encoder
from pipeline.importers.common import (
    FeatureImportError,
    FrameGrid,
    MissingFeaturesError,
    VideoExtractionError,
)
from pipeline.video_extraction import window_starts

# Extensions tried, in any letter case, for ``{vid}{ext}`` when no pattern is given.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")

# Tolerance of check_grid_duration beyond the extent a correct release can have (see there).
GRID_SLACK_STRIDES = 1.0  # in strides
GRID_SLACK_FRACTION = 0.01  # of the video's duration


class GridMismatchError(FeatureImportError):
    """A video's feature rows do not fit its duration; the message names the file and video."""


def check_grid_duration(
    video_id: str,
    num_rows: int,
    grid: FrameGrid,
    duration_s: float,
    *,
    features_file: str | Path,
    duration_source: str,
) -> None:
    """Refuse ``num_rows`` rows whose span ``num_rows * stride_s`` does not fit ``duration_s``.

    A correct release lies in ``[duration - window_s, duration + stride_s]``: an extractor that
    keeps only whole windows ends its last row inside the video, ``num_frames - feat_stride``
    frames short of the end at most (THUMOS14's video_validation_0000051: 5094 frames, 1269
    rows, 0.59 s short, ActionFormer's issue #5); one that pads the last clips starts its last
    row before the end.
    Beyond that range we allow ``slack = max(GRID_SLACK_STRIDES strides, GRID_SLACK_FRACTION of
    the duration)``: one more stride absorbs the rounding of the stored durations (two
    decimals) and of the last partial row, so short videos may end at most two strides beyond
    the end; 1 % absorbs frame rates stored rounded (29.97 written as 30 drifts 0.1 %) on long
    videos. A wrong frame rate or stride (25 vs 30 fps is 17 %, a factor 2 or 4 in
    feat_stride) or another video's file fall outside for any video longer than a few seconds.

    Args:
        video_id: the video, named in the error.
        num_rows: rows of its released features (T).
        grid: the release's grid for this video.
        duration_s: the video's duration to check against, in seconds.
        features_file: the feature file, named in the error.
        duration_source: where ``duration_s`` comes from, e.g. ``"the annotations"``.

    Raises:
        GridMismatchError: naming the video, the file, both extents and the tolerance.
    """
    span_s = num_rows * grid.stride_s
    slack_s = max(GRID_SLACK_STRIDES * grid.stride_s, GRID_SLACK_FRACTION * duration_s)
    low_s = duration_s - grid.window_s - slack_s
    high_s = duration_s + grid.stride_s + slack_s
    if not low_s <= span_s <= high_s:
        side = "past the end of" if span_s > high_s else "short of the end of"
        raise GridMismatchError(
            f"video {video_id}: the {num_rows} feature rows of {features_file} span "
            f"{span_s:.2f} s (rows * feat_stride / fps, feat_stride {grid.stride_frames:g}, fps "
            f"{grid.fps:g}), which ends {side} the video: {duration_s:.2f} s by "
            f"{duration_source} (allowed span {max(low_s, 0.0):.2f} to {high_s:.2f} s). Check "
            "the release's fps and feat_stride (dataset.import.release) and that the file "
            "belongs to this video"
        )


class VideoFolder:
    """Finds a video's file in ``videos_dir`` by its id.

    Args:
        videos_dir: folder of the benchmark's videos.
        pattern: path under ``videos_dir`` with ``{vid}`` for the id, glob wildcards allowed
            (EPIC-Kitchens-100: ``"*/videos/{vid}.MP4"``); ``None``: ``{vid}`` plus any of
            :data:`VIDEO_EXTENSIONS` in any letter case, directly in ``videos_dir``.
    """

    def __init__(self, videos_dir: str | Path, pattern: str | None = None) -> None:
        self.videos_dir = Path(videos_dir)
        if not self.videos_dir.is_dir():
            raise FileNotFoundError(
                f"videos folder {self.videos_dir} does not exist (dataset.import.videos_dir)"
            )
        if pattern is not None and "{vid}" not in pattern:
            raise ValueError(
                f"video pattern {pattern!r} lacks '{{vid}}' (dataset.import.video_pattern), "
                "e.g. '*/videos/{vid}.MP4'"
            )
        self.pattern = pattern
        self._by_stem: dict[str, list[Path]] | None = None

    def describe(self, video_id: str) -> str:
        """Where the video of ``video_id`` is looked for, for errors."""
        if self.pattern is not None:
            return str(self.videos_dir / self.pattern.format(vid=video_id))
        return f"{self.videos_dir / video_id}{{{','.join(VIDEO_EXTENSIONS)}}} (any letter case)"

    def find(self, video_id: str) -> Path:
        """The video file of ``video_id``.

        Raises:
            MissingFeaturesError: no file (the import's ``missing`` policy applies).
            FeatureImportError: more than one file matches.
        """
        if self.pattern is not None:
            matches = sorted(self.videos_dir.glob(self.pattern.format(vid=video_id)))
        else:
            if self._by_stem is None:  # one listing of the folder serves every video
                self._by_stem = {}
                for path in sorted(self.videos_dir.iterdir()):
                    if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
                        self._by_stem.setdefault(path.stem, []).append(path)
            matches = self._by_stem.get(video_id, [])
        if not matches:
            raise MissingFeaturesError(
                f"video {video_id}: no video file matches {self.describe(video_id)}"
            )
        if len(matches) > 1:
            raise FeatureImportError(
                f"video {video_id}: {len(matches)} video files match: "
                f"{', '.join(map(str, matches))}; keep one"
            )
        return matches[0]


class GridAudioExtractor:
    """The audio encoder, built once, applied to each video's sound on its release grid.

    Args:
        encoder_config: ``{"name": ..., **kwargs}`` of the audio encoder (``extraction.audio``).
        batch_size: windows per encoder call.
        device: device of torch encoders (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        fp16: half-precision inference on CUDA (``extraction.fp16``).
    """

    def __init__(
        self,
        encoder_config: Mapping[str, Any],
        *,
        batch_size: int = 64,
        device: str = "auto",
        fp16: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encoder: AudioEncoder = build_audio_encoder(
            dict(encoder_config), device=device, fp16=fp16
        )
        self.batch_size = batch_size

    def config(self) -> dict[str, Any]:
        """The encoder's resolved config with its width (recorded in every store)."""
        return {**self.encoder.config(), "dim": self.encoder.dim}

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    def extract(
        self,
        video_id: str,
        video_path: Path,
        timestamps: np.ndarray,
        *,
        damage: StreamDamage | None = None,
    ) -> np.ndarray:
        """(T, D) audio features of ``video_path``, row ``i`` from seconds ``timestamps[i]``.

        Args:
            video_id: the video, named in errors.
            video_path: its file.
            timestamps: (T, 2) ``[start_s, end_s]`` of the release's rows (equal widths).
            damage: filled in with the audio packets the decoder skipped, when given.

        Raises:
            VideoExtractionError: unreadable file or no audio stream, naming id and file.
        """
        starts, window_samples = window_starts(timestamps, self.sample_rate)
        rows: list[np.ndarray] = []
        try:
            samples = iter_audio(video_path, self.sample_rate, damage=damage)  # mono blocks
            for batch in iter_windows(samples, starts, window_samples, self.batch_size):
                rows.append(self.encoder.encode_batch(batch))  # (B, D)
        except NoAudioStream as err:
            raise VideoExtractionError(
                f"video {video_id}: {video_path} has no audio stream, so it has no audio "
                f"features ({err})"
            ) from err
        except (DecodeError, FileNotFoundError) as err:
            raise VideoExtractionError(
                f"video {video_id}: cannot read the sound of {video_path}: {err}"
            ) from err
        return np.concatenate(rows).astype(np.float32, copy=False)  # (T, D)


def probed_duration(video_id: str, video_path: Path) -> tuple[float, dict[str, Any]]:
    """The probed duration (s) of ``video_path`` and its probe report, for the stores.

    Raises:
        VideoExtractionError: the file cannot be probed, naming id and file.
    """
    try:
        info = probe(video_path)
    except (DecodeError, FileNotFoundError) as err:
        raise VideoExtractionError(f"video {video_id}: cannot read {video_path}: {err}") from err
    if not (info.duration_s > 0 and math.isfinite(info.duration_s)):
        raise VideoExtractionError(f"video {video_id}: {video_path} has zero duration")
    return info.duration_s, info.to_dict()


def audio_on_grid(
    videos: VideoFolder,
    extractor: GridAudioExtractor,
    video_id: str,
    grid: FrameGrid,
    num_rows: int,
    *,
    features_file: str | Path,
) -> tuple[np.ndarray, dict[str, Any], Path]:
    """One video's audio features on its release grid: find the file, check the grid against
    the probed duration, extract.

    Args:
        videos: where the benchmark's videos lie.
        extractor: the audio encoder.
        video_id: the video.
        grid: its release grid.
        num_rows: rows of its released visual features.
        features_file: the visual feature file, named in errors.

    Returns:
        ``(audio (T, D), store attributes (the video file, its probe report and the audio
        packets its decoder skipped: ``decode_errors``), video file)``.

    Raises:
        MissingFeaturesError: no video file.
        GridMismatchError: the rows do not fit the file's duration.
        VideoExtractionError: unreadable file or no audio stream.
    """
    video_path = videos.find(video_id)
    probed_s, info = probed_duration(video_id, video_path)
    check_grid_duration(
        video_id,
        num_rows,
        grid,
        probed_s,
        features_file=features_file,
        duration_source=f"the video file {video_path}",
    )
    damage = StreamDamage()
    audio = extractor.extract(video_id, video_path, grid.timestamps(num_rows), damage=damage)
    attrs = {
        "source": str(video_path),
        "source_video": info,
        # skipped packets, as extraction records them (the index lists them)
        "decode_errors": decode_errors({"audio": damage}),
    }
    return audio, attrs, video_path  # audio (T, D)


def add_grid_audio_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLI options of audio on a released grid (``import_*``'s keyword arguments)."""
    parser.add_argument(
        "--videos-dir", help="the benchmark's videos: extract audio on the released grid"
    )
    parser.add_argument(
        "--video-pattern", help="a video's path under --videos-dir, e.g. '*/videos/{vid}.MP4'"
    )
    parser.add_argument(
        "--audio-encoder",
        help='audio encoder config as JSON (extraction.audio), default {"name": "classic"}',
    )
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="a video without readable sound stops the import (fail) or is listed (skip)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="audio windows per batch")
    parser.add_argument("--device", default="auto", help="device of torch audio encoders")
    parser.add_argument("--fp16", action="store_true", help="half-precision audio on CUDA")


def grid_audio_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments :func:`add_grid_audio_arguments`' options give."""
    return {
        "videos_dir": args.videos_dir,
        "video_pattern": args.video_pattern,
        "audio_encoder": None
        if args.audio_encoder is None
        else settings_argument(args.audio_encoder, "--audio-encoder"),
        "on_error": args.on_error,
        "batch_size": args.batch_size,
        "device": args.device,
        "fp16": args.fp16,
    }
