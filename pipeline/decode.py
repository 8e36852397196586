"""Video and audio decoding onto one time axis, the snippet grid and the frames it samples.

The time axis is the one :mod:`pipeline.probe` defines: second 0 is the first presentation
timestamp of the video stream (of the audio stream in audio-only files) and the axis ends
where the container ends. Frames and audio samples both live on this axis. Probing itself
(:func:`probe`, :class:`VideoInfo`, :class:`DecodeError`) lives in :mod:`pipeline.probe` and is
re-exported here, so ``from pipeline.decode import probe`` keeps working.

Truncated files (a download cut off part-way) always raise :class:`DecodeError`: either the
container cannot be opened (an MP4 whose index sits at the end), or the decoded stream ends
more than ``TRUNCATION_TOLERANCE_S`` before its declared end, in which case
:func:`iter_frames` raises after yielding the frames it could decode, before yielding any
padded ones, and :func:`read_audio` raises instead of returning.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.probe import (
    DecodeError,
    VideoInfo,
    checked_media_path,
    declared_stream_end_s,
    first_video_stream,
    open_media,
    probe,
    probe_container,
)

__all__ = [
    "TRUNCATION_TOLERANCE_S",
    "DecodeError",
    "NoAudioStream",
    "VideoInfo",
    "ffmpeg_executable",
    "frame_indices",
    "iter_frames",
    "probe",
    "read_audio",
    "snippet_grid",
]

TRUNCATION_TOLERANCE_S = 0.5  # a stream may end this much before its declared end


class NoAudioStream(DecodeError):  # noqa: N818 (name fixed by the extraction stage)
    """The file has no audio stream (the extractor writes zero audio features)."""


def ffmpeg_executable() -> str:
    """Path of an ``ffmpeg`` binary: the system one on PATH, else imageio-ffmpeg's."""
    system = shutil.which("ffmpeg")
    if system is not None:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _truncation_error(
    path: Path, kind: str, decoded_end_s: float, declared_end_s: float
) -> DecodeError:
    return DecodeError(
        f"{path}: the {kind} stream decodes only up to {decoded_end_s:.2f} s but declares "
        f"{declared_end_s:.2f} s; the file is probably truncated, re-download or re-encode it"
    )


class _FrameConverter:
    """Resize a decoded frame in its own pixel format, then convert it to RGB at the small
    size: about twice as fast as one swscale call that scales straight into rgb24. The frame's
    colour matrix and range are passed on (PyAV would otherwise assume limited BT.601).

    Args:
        width: output width in pixels.
        height: output height in pixels.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.resizer = VideoReformatter()  # each keeps one cached swscale context
        self.to_rgb = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB copy of ``frame`` at the output size."""
        small = self.resizer.reformat(frame, width=self.width, height=self.height)
        rgb = self.to_rgb.reformat(
            small,
            format="rgb24",
            src_colorspace=frame.colorspace,
            src_color_range=frame.color_range,
            dst_color_range="JPEG",
        )
        return rgb.to_ndarray()


def iter_frames(path: str | Path, fps: float, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Stream RGB frames ``(H, W, 3)`` uint8 at a constant ``fps``, resized to ``size``.

    Output frame ``i`` shows time ``i / fps`` for every ``i`` with ``i / fps < duration_s``:
    the latest source frame whose pts is at or before that time (within one stream tick;
    the first source frame for times before it, the last one for times after the video
    stream ends but the container goes on), so VFR sources and any source rate map onto the
    same grid. Only kept frames are colour-converted and resized; a source
    frame shown at several output times is converted again for each (fresh arrays).

    Args:
        path: media file with a video stream.
        fps: output frame rate (> 0).
        size: output ``(width, height)`` in pixels.
    """
    width, height = size
    if not fps > 0 or width < 1 or height < 1:
        raise ValueError(f"iter_frames needs fps > 0 and a positive size, got {fps=}, {size=}")
    path = checked_media_path(path)
    with open_media(path) as container:
        info, time_zero_s = probe_container(path, container, scan_vfr=False)
        stream = first_video_stream(container)
        if stream is None:
            raise DecodeError(f"{path} has no video stream; it cannot be used as a video")
        stream.thread_type = "AUTO"
        num_outputs = math.ceil(info.duration_s * fps - 1e-9)
        time_base = float(stream.time_base)
        tolerance_s = min(time_base, 0.25 / fps)  # pts are rounded to whole ticks
        frame_gap_s = 1.0 / info.fps if info.fps else 0.0
        convert = _FrameConverter(width, height)

        held, held_time_s = None, -math.inf
        next_output = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None:  # no timestamp: assume the average gap
                    frame_time_s = held_time_s + frame_gap_s if held is not None else 0.0
                else:
                    frame_time_s = frame.pts * time_base - time_zero_s
                if held is not None:
                    while next_output < num_outputs and next_output / fps + tolerance_s < (
                        frame_time_s
                    ):
                        yield convert(held)
                        next_output += 1
                if next_output >= num_outputs:
                    return
                held, held_time_s = frame, frame_time_s
        except av.FFmpegError as err:
            raise DecodeError(
                f"{path}: video decoding failed after {held_time_s:.2f} s: {err}"
            ) from err
        if held is None:
            raise DecodeError(f"{path}: the video stream holds no decodable frames; replace it")
        declared_end_s = declared_stream_end_s(stream, info, time_zero_s)
        if held_time_s + frame_gap_s < declared_end_s - TRUNCATION_TOLERANCE_S:
            raise _truncation_error(path, "video", held_time_s + frame_gap_s, declared_end_s)
        while next_output < num_outputs:
            yield convert(held)
            next_output += 1


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream as mono float32 ``(N,)`` in [-1, 1] at ``sample_rate``.

    ``N = round(duration_s * sample_rate)``: samples are placed on the module's time axis
    (leading zeros if the audio starts after time zero, samples before it dropped) and the
    end is zero-padded or trimmed. Multi-channel audio is downmixed by libswresample
    (stereo: each channel at -3 dB), and the result is clipped to [-1, 1].

    Args:
        path: media file with an audio stream (else :class:`NoAudioStream`).
        sample_rate: output rate in Hz (> 0).
    """
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise ValueError(f"read_audio needs a positive integer sample_rate, got {sample_rate!r}")
    path = checked_media_path(path)
    with open_media(path) as container:
        info, time_zero_s = probe_container(path, container, scan_vfr=False)
        if not container.streams.audio:
            raise NoAudioStream(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time_s = None
        try:
            for frame in container.decode(stream):
                if first_time_s is None and frame.time is not None:
                    first_time_s = frame.time - time_zero_s
                chunks.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray()[0] for out in resampler.resample(None))
        except av.FFmpegError as err:
            raise DecodeError(f"{path}: audio decoding failed: {err}") from err
        declared_end_s = declared_stream_end_s(stream, info, time_zero_s)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)  # (N_decoded,)
    offset = round((first_time_s or 0.0) * sample_rate)
    samples = np.pad(samples, (offset, 0)) if offset > 0 else samples[-offset:]
    decoded_end_s = len(samples) / sample_rate
    if decoded_end_s < declared_end_s - TRUNCATION_TOLERANCE_S:
        raise _truncation_error(path, "audio", decoded_end_s, declared_end_s)
    num_samples = round(info.duration_s * sample_rate)
    samples = np.pad(samples[:num_samples], (0, max(0, num_samples - len(samples))))
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def snippet_grid(duration_s: float, window_s: float, stride_s: float) -> np.ndarray:
    """Snippet ``[start, end]`` times ``(T, 2)`` float64: snippet k covers
    ``[k * stride_s, k * stride_s + window_s]``.

    ``T = floor((duration_s - window_s) / stride_s + 1e-9) + 1`` when the video is at least
    one window long; a shorter video gets the single snippet ``[0, window_s]``.
    """
    if not window_s > 0:
        raise ValueError(f"snippet window_s must be > 0 seconds, got {window_s}")
    if not stride_s > 0:
        raise ValueError(f"snippet stride_s must be > 0 seconds, got {stride_s}")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s}")
    if duration_s < window_s:
        return np.array([[0.0, window_s]], dtype=np.float64)
    num_snippets = math.floor((duration_s - window_s) / stride_s + 1e-9) + 1
    starts = np.arange(num_snippets, dtype=np.float64) * stride_s  # (T,)
    return np.stack([starts, starts + window_s], axis=1)  # (T, 2)


def frame_indices(timestamps: np.ndarray, frames_per_snippet: int, fps: float) -> np.ndarray:
    """(T, F) indices into the stream resampled to ``fps`` of the frames sampled per snippet.

    Frame j of snippet k is taken at ``start_k + (j + 0.5) * window / F``, the centre of the j-th
    of F equal parts of the window, and rounded down to the resampled frame shown at that time.
    """
    starts = timestamps[:, :1]  # (T, 1)
    windows = timestamps[:, 1:] - starts  # (T, 1)
    offsets = (np.arange(frames_per_snippet) + 0.5) / frames_per_snippet  # (F,)
    times = starts + windows * offsets  # (T, F)
    return np.floor(times * fps + 1e-6).astype(np.int64)
