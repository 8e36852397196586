"""Video decoding onto one time axis, the snippet grid and the frames it samples; the one module
the stages import decoding from.

The time axis is the one :mod:`pipeline.probe` defines: second 0 is the first presentation
timestamp of the video stream (of the audio stream in audio-only files) and the axis ends
where the container ends. Frames and audio samples both live on this axis. Probing itself
(:func:`probe`, :class:`VideoInfo`, :class:`DecodeError`) lives in :mod:`pipeline.probe`, the
sound (:func:`iter_audio`, :func:`read_audio`) in :mod:`pipeline.decode_audio` and the damage
accounting (:class:`StreamDamage`) in :mod:`pipeline.stream_damage`; all are re-exported here, so
``from pipeline.decode import probe, read_audio`` keeps working. The video stream is the main one
(:func:`pipeline.probe.main_video_stream`), and its frames are turned as its display matrix asks,
the way players show them.

Damaged data is decoded the way ``ffmpeg`` decodes it (:mod:`pipeline.stream_damage`): a packet
the decoder rejects is skipped (the previous frame stays on screen), frames it marks corrupt are
kept, and past ``max_damaged_fraction`` of the time axis the file is refused.

Truncated files (a download cut off part-way) always raise :class:`DecodeError`: either the
container cannot be opened (an MP4 whose index sits at the end), or the decoded stream ends
more than ``TRUNCATION_TOLERANCE_S`` before its declared end (the container's duration, or an
AVI header's length), in which case :func:`iter_frames` raises after yielding the frames it
could decode, before yielding any padded ones, :func:`iter_audio` likewise after its decoded
samples, before the padding, and :func:`read_audio` raises instead of returning.

:func:`iter_frames` yields frames as they decode, so memory does not grow with a file's
duration, and lets the decoder drop the non-reference frames that no output time shows
(:mod:`pipeline.frame_skip`), so damage in such a frame goes unseen.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.decode_audio import NoAudioStream, iter_audio, read_audio
from pipeline.frame_skip import UnneededFrames
from pipeline.probe import (
    DecodeError,
    DisplayTransform,
    VideoInfo,
    checked_media_path,
    declared_stream_end_s,
    main_video_stream,
    open_media,
    probe,
    probe_container,
)
from pipeline.stream_damage import (
    MAX_DAMAGED_FRACTION,
    TRUNCATION_TOLERANCE_S,
    DamageGuard,
    StreamDamage,
    check_fraction,
    decode_errors,
    decode_skipping,
    truncation_error,
)

__all__ = [
    "MAX_DAMAGED_FRACTION",
    "TRUNCATION_TOLERANCE_S",
    "DecodeError",
    "NoAudioStream",
    "StreamDamage",
    "VideoInfo",
    "decode_errors",
    "ffmpeg_executable",
    "frame_indices",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
    "snippet_grid",
]


def ffmpeg_executable() -> str:
    """Path of an ``ffmpeg`` binary: the system one on PATH, else imageio-ffmpeg's."""
    system = shutil.which("ffmpeg")
    if system is not None:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class _FrameConverter:
    """Resize a decoded frame in its own pixel format, then convert it to RGB at the small
    size: about twice as fast as one swscale call that scales straight into rgb24. The frame's
    colour matrix and range are passed on (PyAV would otherwise assume limited BT.601), and its
    display matrix is applied last (:class:`pipeline.probe.DisplayTransform`).

    Args:
        width: output width in pixels.
        height: output height in pixels.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.resizer = VideoReformatter()  # each keeps one cached swscale context
        self.to_rgb = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB copy of ``frame`` as displayed, at the output size."""
        transform = DisplayTransform.of_frame(frame)
        width, height = transform.display_size(self.width, self.height)  # before the turn
        small = self.resizer.reformat(frame, width=width, height=height)
        rgb = self.to_rgb.reformat(
            small,
            format="rgb24",
            src_colorspace=frame.colorspace,
            src_color_range=frame.color_range,
            dst_color_range="JPEG",
        )
        return transform.apply(rgb.to_ndarray())  # (H, W, 3)


def iter_frames(
    path: str | Path,
    fps: float,
    size: tuple[int, int],
    *,
    max_damaged_fraction: float = MAX_DAMAGED_FRACTION,
    damage: StreamDamage | None = None,
    threads: int = 0,
    skip_unneeded: bool = True,
) -> Iterator[np.ndarray]:
    """Stream RGB frames ``(H, W, 3)`` uint8 at a constant ``fps``, resized to ``size``.

    Output frame ``i`` shows time ``i / fps`` for every ``i`` with ``i / fps < duration_s``:
    the latest source frame whose pts is at or before that time (within one stream tick;
    the first source frame for times before it, the last one for times after the video
    stream ends but the container goes on), so VFR sources and any source rate map onto the
    same grid. Only kept frames are colour-converted, resized and turned for display; a source
    frame shown at several output times is converted again for each (fresh arrays). A packet
    that does not decode is skipped (the previous frame stays on screen) and counted.

    Args:
        path: media file with a video stream.
        fps: output frame rate (> 0).
        size: output ``(width, height)`` in pixels, of the displayed (turned) picture.
        max_damaged_fraction: share of the time axis undecodable video may cover before
            :class:`DecodeError`.
        damage: filled in with what was skipped, when given.
        threads: the decoder's threads (frame and slice threads); 0 lets libavcodec choose
            from the machine's cores. An extraction job passes the threads Snakemake gave it,
            so that N jobs on N cores do not start N decoders of N threads each.
        skip_unneeded: let the decoder drop the non-reference frames no output time shows
            (:mod:`pipeline.frame_skip`; the same frames are yielded, about 8 % less decoding
            at 8 fps from 25 fps H.264). Damage in a dropped frame is neither seen nor counted.
    """
    width, height = size
    if not fps > 0 or width < 1 or height < 1:
        raise ValueError(f"iter_frames needs fps > 0 and a positive size, got {fps=}, {size=}")
    if not (isinstance(threads, int) and threads >= 0):
        raise ValueError(f"iter_frames needs threads >= 0 (0: automatic), got {threads!r}")
    check_fraction(max_damaged_fraction)
    path = checked_media_path(path)
    with open_media(path) as container:
        info, time_zero_s = probe_container(path, container, scan_video=False)
        stream = main_video_stream(container)
        if stream is None:
            raise DecodeError(f"{path} has no video stream; it cannot be used as a video")
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        num_outputs = math.ceil(info.duration_s * fps - 1e-9)
        time_base = float(stream.time_base)
        tolerance_s = min(time_base, 0.25 / fps)  # pts are rounded to whole ticks
        frame_gap_s = 1.0 / info.fps if info.fps else 0.0
        convert = _FrameConverter(width, height)
        damage = damage if damage is not None else StreamDamage()
        damage.duration_s = info.duration_s
        guard = DamageGuard(path, "video", damage, max_damaged_fraction, frame_gap_s)
        unneeded = None
        if skip_unneeded:
            unneeded = UnneededFrames(
                fps=fps,
                num_outputs=num_outputs,
                time_base=time_base,
                time_zero_s=time_zero_s,
                tolerance_s=tolerance_s,
            )

        held, held_time_s = None, -math.inf
        next_output = 0
        for frame in decode_skipping(container, stream, guard, unneeded):
            if isinstance(frame, float):  # a skipped packet's seconds: the held frame stays
                continue
            if frame.is_corrupt:
                guard.corrupt(frame_gap_s)
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
                guard.report()
                return
            held, held_time_s = frame, frame_time_s
        guard.report()
        if held is None:
            raise DecodeError(f"{path}: the video stream holds no decodable frames; replace it")
        declared_end_s = declared_stream_end_s(stream, info, time_zero_s)
        if held_time_s + frame_gap_s < declared_end_s - TRUNCATION_TOLERANCE_S:
            raise truncation_error(path, "video", held_time_s + frame_gap_s, declared_end_s)
        while next_output < num_outputs:
            yield convert(held)
            next_output += 1


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
