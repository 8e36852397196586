"""The sound of a media file decoded onto the time axis of :mod:`pipeline.probe` (second 0 is
the first presentation timestamp of the video stream, of the audio stream in audio-only files),
mono at the rate asked for: :func:`iter_audio` streams it block by block as it decodes, so memory
does not grow with a file's duration, and :func:`read_audio` gathers the blocks into one
waveform. Damage and truncation are handled as :mod:`pipeline.stream_damage` describes: a packet
that does not decode is heard as silence of its length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from av.audio.frame import format_dtypes

from pipeline.probe import (
    DecodeError,
    checked_media_path,
    declared_stream_end_s,
    open_media,
    probe_container,
)
from pipeline.stream_damage import (
    MAX_DAMAGED_FRACTION,
    TRUNCATION_TOLERANCE_S,
    DamageGuard,
    StreamDamage,
    check_fraction,
    decode_skipping,
    truncation_error,
)


class NoAudioStream(DecodeError):  # noqa: N818 (name fixed by the extraction stage)
    """The file has no audio stream (the extractor writes zero audio features)."""


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
            raise truncation_error(path, "audio", decoded_end_s, declared_end_s)
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
    check_fraction(max_damaged_fraction)
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
        guard = DamageGuard(path, "audio", damage, max_damaged_fraction, packet_s)
        resampler = av.AudioResampler(
            format="flt",
            layout="mono",
            rate=sample_rate,
            frame_size=round(RESAMPLED_FRAME_S * sample_rate),
        )
        placer = _TimeAxisPlacer(round(info.duration_s * sample_rate), sample_rate)
        last_frame = None
        for item in decode_skipping(container, stream, guard):
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

    ``N = round(duration_s * sample_rate)``: samples are placed on the time axis
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
