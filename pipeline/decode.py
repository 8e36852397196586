"""Video and audio decoding onto one time axis, the snippet grid and the frames it samples.

The time axis is the one :mod:`pipeline.probe` defines: second 0 is the first presentation
timestamp of the video stream (of the audio stream in audio-only files) and the axis ends
where the container ends. Frames and audio samples both live on this axis. Probing itself
(:func:`probe`, :class:`VideoInfo`, :class:`DecodeError`) lives in :mod:`pipeline.probe` and is
re-exported here, so ``from pipeline.decode import probe`` keeps working. The video stream is the
main one (:func:`pipeline.probe.main_video_stream`), and its frames are turned as its display
matrix asks, the way players show them.

Damaged data is decoded the way ``ffmpeg`` decodes it: a packet the decoder rejects is skipped
and the stream goes on (a video shows the previous frame, audio is silent for the packet's
length), and frames the decoder marks corrupt are kept. Both are counted in a
:class:`StreamDamage` and logged; when they cover more than ``max_damaged_fraction`` of the
time axis the file is refused with :class:`DecodeError`, naming the figures.

Truncated files (a download cut off part-way) always raise :class:`DecodeError`: either the
container cannot be opened (an MP4 whose index sits at the end), or the decoded stream ends
more than ``TRUNCATION_TOLERANCE_S`` before its declared end (the container's duration, or an
AVI header's length), in which case :func:`iter_frames` raises after yielding the frames it
could decode, before yielding any padded ones, :func:`iter_audio` likewise after its decoded
samples, before the padding, and :func:`read_audio` raises instead of returning.

Both streams are decoded as streams: :func:`iter_frames` yields frames and :func:`iter_audio`
blocks of samples as they decode, so memory does not grow with a file's duration;
:func:`read_audio` gathers the blocks into one waveform. :func:`iter_frames` lets the decoder
drop the non-reference frames that no output time shows (:mod:`pipeline.frame_skip`), so
damage in such a frame goes unseen.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from av.audio.frame import format_dtypes
from av.video.reformatter import VideoReformatter

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

__all__ = [
    "MAX_DAMAGED_FRACTION",
    "TRUNCATION_TOLERANCE_S",
    "DecodeError",
    "NoAudioStream",
    "StreamDamage",
    "VideoInfo",
    "ffmpeg_executable",
    "frame_indices",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
    "snippet_grid",
]

log = logging.getLogger(__name__)

TRUNCATION_TOLERANCE_S = 0.5  # a stream may end this much before its declared end
MAX_DAMAGED_FRACTION = 0.05  # default share of the time axis undecodable data may cover


class NoAudioStream(DecodeError):  # noqa: N818 (name fixed by the extraction stage)
    """The file has no audio stream (the extractor writes zero audio features)."""


@dataclass
class StreamDamage:
    """Undecodable data met in one stream; :func:`iter_frames` and :func:`read_audio` fill in
    the one they are given (zeros: the stream decoded cleanly)."""

    packets: int = 0  # packets the decoder rejected, skipped as ffmpeg skips them
    frames: int = 0  # frames the decoder returned marked corrupt (error-concealed), kept
    seconds: float = 0.0  # stream time those packets and frames cover
    packets_read: int = 0  # packets of the stream read
    duration_s: float = 0.0  # length of the time axis, which ``fraction`` is a share of

    @property
    def fraction(self) -> float:
        """Share of the time axis the damage covers."""
        return self.seconds / self.duration_s if self.duration_s > 0 else 0.0

    def __bool__(self) -> bool:
        return bool(self.packets or self.frames)

    def to_dict(self) -> dict[str, int | float]:
        """JSON-ready figures (stored in feature-store attributes and ``index.json``)."""
        figures = asdict(self)
        del figures["duration_s"]
        return {**figures, "seconds": round(self.seconds, 6), "fraction": round(self.fraction, 6)}


def decode_errors(damage: Mapping[str, StreamDamage]) -> dict[str, dict[str, int | float]]:
    """The ``decode_errors`` record of a file's streams (``{stream: figures}``), kept in stores'
    attributes and ``index.json``: the damaged streams only, ``{}`` when all decoded cleanly."""
    return {kind: figures.to_dict() for kind, figures in damage.items() if figures}


class _DamageGuard:
    """Counts what a decoder skips in one stream and refuses the file past the allowed share.

    Args:
        path: the media file (named in the warning and the error).
        kind: ``"video"`` or ``"audio"``.
        damage: the record to fill in.
        max_fraction: share of ``damage.duration_s`` the damage may cover.
        typical_s: length of one packet when a packet does not say (a frame interval).
    """

    def __init__(
        self, path: Path, kind: str, damage: StreamDamage, max_fraction: float, typical_s: float
    ) -> None:
        self.path, self.kind, self.damage = path, kind, damage
        self.max_fraction, self.typical_s = max_fraction, typical_s

    def skipped(self, packet: av.Packet, err: av.FFmpegError) -> float:
        """Count a packet the decoder rejected; return the seconds it covers."""
        seconds = self.typical_s
        if packet.duration and packet.time_base is not None:
            seconds = float(packet.duration * packet.time_base)
        self.damage.packets += 1
        self.damage.seconds += seconds
        log.debug("%s: %s packet at pts %s skipped: %s", self.path, self.kind, packet.pts, err)
        self._check()
        return seconds

    def corrupt(self, seconds: float) -> None:
        """Count a frame the decoder marked corrupt, covering ``seconds``."""
        self.damage.frames += 1
        self.damage.seconds += seconds
        self._check()

    def _figures(self) -> str:
        damage = self.damage
        return (
            f"{damage.packets} undecodable packet(s) of {damage.packets_read} skipped and "
            f"{damage.frames} corrupt frame(s) kept, covering {damage.seconds:.3f} s of "
            f"{damage.duration_s:.2f} s ({damage.fraction:.2%})"
        )

    def _check(self) -> None:
        if self.damage.fraction > self.max_fraction:
            raise DecodeError(
                f"{self.path}: the {self.kind} stream is damaged beyond the allowed share: "
                f"{self._figures()}, more than {self.max_fraction:.2%} "
                "(extraction.max_damaged_fraction); re-download or re-encode the file, or raise "
                "the limit"
            )

    def report(self) -> None:
        """Log a warning when anything was skipped (extraction jobs log to their job log)."""
        if self.damage:
            log.warning("%s: %s stream: %s, as ffmpeg would", self.path, self.kind, self._figures())


def _check_fraction(max_damaged_fraction: float) -> None:
    if not 0.0 <= max_damaged_fraction <= 1.0:
        raise ValueError(
            f"max_damaged_fraction must be between 0 and 1, got {max_damaged_fraction!r}"
        )


def _decode_skipping(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    guard: _DamageGuard,
    unneeded: UnneededFrames | None = None,
) -> Iterator[av.VideoFrame | av.AudioFrame | float]:
    """Decode ``stream`` as ``ffmpeg`` does: yield its frames, and for each packet the decoder
    rejects, the seconds it covers (a float) instead; a packet that cannot be read raises.
    With ``unneeded``, the packets it marks are sent with ``skip_frame`` ``NONREF``, so the
    decoder drops those that are non-reference frames (:mod:`pipeline.frame_skip`)."""
    context = stream.codec_context
    packets = container.demux(stream)
    marked = unneeded.mark(packets) if unneeded else ((packet, False) for packet in packets)
    dropping = False
    try:
        for packet, droppable in marked:
            if droppable != dropping:
                context.skip_frame = "NONREF" if droppable else "DEFAULT"
                dropping = droppable
            if packet.size:  # the empty packet at the end flushes the decoder
                guard.damage.packets_read += 1
            try:
                frames = stream.decode(packet)
            except av.FFmpegError as err:
                yield guard.skipped(packet, err)
                continue
            yield from frames
    except av.FFmpegError as err:
        raise DecodeError(
            f"{guard.path}: reading {guard.kind} packets failed ({err}); is it truncated?"
        ) from err


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
    _check_fraction(max_damaged_fraction)
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
        guard = _DamageGuard(path, "video", damage, max_damaged_fraction, frame_gap_s)
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
        for frame in _decode_skipping(container, stream, guard, unneeded):
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
            raise _truncation_error(path, "video", held_time_s + frame_gap_s, declared_end_s)
        while next_output < num_outputs:
            yield convert(held)
            next_output += 1


def _silence(like: av.AudioFrame, seconds: float) -> av.AudioFrame:
    """A silent frame of ``seconds`` in the sample format, layout and rate of ``like``."""
    num_samples = max(1, round(seconds * like.sample_rate))
    channels = len(like.layout.channels)
    fmt = like.format
    shape = (channels, num_samples) if fmt.is_planar else (1, channels * num_samples)  # (C, N)
    level = 128 if fmt.name.startswith("u8") else 0  # unsigned 8-bit PCM is centred on 128
    samples = np.full(shape, level, dtype=format_dtypes[fmt.name])
    silence = av.AudioFrame.from_ndarray(samples, format=fmt.name, layout=like.layout.name)
    silence.sample_rate = like.sample_rate
    return silence


AUDIO_BLOCK_S = 10.0  # longest block of padding silence :func:`iter_audio` yields at once
# The resampler hands out frames of this many seconds instead of one per packet (AAC: 21 ms):
# the same samples in 50x fewer Python calls, about half the audio stream's decoding time.
RESAMPLED_FRAME_S = 1.0


class _TimeAxisPlacer:
    """Places decoded mono samples on the time axis as they come, as :func:`read_audio` places
    the whole waveform: ``offset`` leading zeros (or ``-offset`` samples dropped) once the first
    frame's time is known, the end trimmed or zero-padded to ``num_samples``, values clipped to
    [-1, 1]. Samples decoded before the offset is known wait in ``pending``.

    Args:
        num_samples: samples of the time axis, ``round(duration_s * sample_rate)``.
        sample_rate: Hz.
    """

    def __init__(self, num_samples: int, sample_rate: int) -> None:
        self.num_samples, self.sample_rate = num_samples, sample_rate
        self.offset: int | None = None  # samples to insert (> 0) or drop (< 0) at the start
        self.pending: list[np.ndarray] | None = []  # None once the offset is applied
        self.decoded = 0  # samples decoded so far
        self.emitted = 0  # samples placed on the axis so far
        self.to_drop = 0  # samples still to drop before time zero

    def start(self, first_time_s: float) -> None:
        """Fix the offset from the time of the first decoded sample."""
        self.offset = round(first_time_s * self.sample_rate)

    def _silence(self, num_samples: int) -> list[np.ndarray]:
        num_samples = min(num_samples, self.num_samples - self.emitted)
        block = max(1, round(AUDIO_BLOCK_S * self.sample_rate))
        blocks = [
            np.zeros(min(block, num_samples - done), np.float32)
            for done in range(0, num_samples, block)
        ]
        self.emitted += max(0, num_samples)
        return blocks

    def add(self, samples: np.ndarray) -> list[np.ndarray]:
        """Blocks ``(n,)`` float32 of the axis that decoded ``samples`` complete."""
        if self.offset is None:
            self.pending.append(samples)
            return []
        blocks: list[np.ndarray] = []
        if self.pending is not None:  # the first samples since the offset became known
            pending, self.pending = self.pending, None
            self.to_drop = max(0, -self.offset)
            blocks.extend(self._silence(self.offset))
            for earlier in pending:
                blocks.extend(self.add(earlier))
        self.decoded += len(samples)
        dropped = min(self.to_drop, len(samples))
        self.to_drop -= dropped
        kept = samples[dropped : dropped + self.num_samples - self.emitted]
        self.emitted += len(kept)
        if len(kept):
            blocks.append(np.clip(kept, -1.0, 1.0).astype(np.float32, copy=False))
        return blocks

    def finish(self, path: Path, declared_end_s: float) -> list[np.ndarray]:
        """The axis's last blocks (zero padding); :class:`DecodeError` when the decoded samples
        end more than ``TRUNCATION_TOLERANCE_S`` before ``declared_end_s``."""
        if self.offset is None:  # no frame had a time: the audio starts at time zero
            self.offset = 0
        blocks = self.add(np.zeros(0, np.float32)) if self.pending is not None else []
        decoded_end_s = max(0, self.decoded + self.offset) / self.sample_rate
        if decoded_end_s < declared_end_s - TRUNCATION_TOLERANCE_S:
            raise _truncation_error(path, "audio", decoded_end_s, declared_end_s)
        return blocks + self._silence(self.num_samples - self.emitted)


def iter_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_damaged_fraction: float = MAX_DAMAGED_FRACTION,
    damage: StreamDamage | None = None,
) -> Iterator[np.ndarray]:
    """Stream the first audio stream as consecutive mono float32 blocks ``(n,)`` on the time
    axis, as it decodes: together they are exactly :func:`read_audio`'s waveform, and only
    about :data:`RESAMPLED_FRAME_S` of samples is held at a time (everything decoded only while
    no decoded frame has a time yet).

    Raises (when iterated) :class:`NoAudioStream` before the first block, and
    :class:`DecodeError` for a truncated stream after the last decoded one. Arguments as
    :func:`read_audio`.
    """
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise ValueError(f"read_audio needs a positive integer sample_rate, got {sample_rate!r}")
    _check_fraction(max_damaged_fraction)
    path = checked_media_path(path)
    with open_media(path) as container:
        info, time_zero_s = probe_container(path, container, scan_video=False)
        if not container.streams.audio:
            raise NoAudioStream(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        context = stream.codec_context
        packet_s = context.frame_size / context.sample_rate if context.frame_size else 0.0
        damage = damage if damage is not None else StreamDamage()
        damage.duration_s = info.duration_s
        guard = _DamageGuard(path, "audio", damage, max_damaged_fraction, packet_s)
        resampler = av.AudioResampler(
            format="flt",
            layout="mono",
            rate=sample_rate,
            frame_size=round(RESAMPLED_FRAME_S * sample_rate),
        )
        placer = _TimeAxisPlacer(round(info.duration_s * sample_rate), sample_rate)
        last_frame = None
        for item in _decode_skipping(container, stream, guard):
            if isinstance(item, float):  # a skipped packet's seconds: silence in its place
                if last_frame is None or item <= 0:
                    continue  # before the first frame, the offset below places the audio
                frame = _silence(last_frame, item)
            else:
                frame = item
                guard.typical_s = frame.samples / frame.sample_rate  # for packets of no duration
                if placer.offset is None and frame.time is not None:
                    placer.start(frame.time - time_zero_s)
                if frame.is_corrupt:
                    guard.corrupt(frame.samples / frame.sample_rate)
            last_frame = frame
            for out in resampler.resample(frame):
                yield from placer.add(out.to_ndarray()[0])
        for out in resampler.resample(None):
            yield from placer.add(out.to_ndarray()[0])
        guard.report()
        declared_end_s = declared_stream_end_s(stream, info, time_zero_s)
    yield from placer.finish(path, declared_end_s)


def read_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_damaged_fraction: float = MAX_DAMAGED_FRACTION,
    damage: StreamDamage | None = None,
) -> np.ndarray:
    """Decode the first audio stream as mono float32 ``(N,)`` in [-1, 1] at ``sample_rate``.

    ``N = round(duration_s * sample_rate)``: samples are placed on the module's time axis
    (leading zeros if the audio starts after time zero, samples before it dropped) and the
    end is zero-padded or trimmed. Multi-channel audio is downmixed by libswresample
    (stereo: each channel at -3 dB), and the result is clipped to [-1, 1]. A packet that does
    not decode is skipped, counted and heard as silence of its length. :func:`iter_audio`
    streams the same samples block by block.

    Args:
        path: media file with an audio stream (else :class:`NoAudioStream`).
        sample_rate: output rate in Hz (> 0).
        max_damaged_fraction: share of the time axis undecodable audio may cover before
            :class:`DecodeError`.
        damage: filled in with what was skipped, when given.
    """
    blocks = list(
        iter_audio(path, sample_rate, max_damaged_fraction=max_damaged_fraction, damage=damage)
    )
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)  # (N,)


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
