"""Damaged data in a media stream, decoded the way ``ffmpeg`` decodes it: a packet the decoder
rejects is skipped and the stream goes on (a video shows the previous frame, audio is silent for
the packet's length), and frames the decoder marks corrupt are kept. Both are counted in a
:class:`StreamDamage` and logged; when they cover more than ``max_damaged_fraction`` of the time
axis the file is refused with :class:`~pipeline.probe.DecodeError`, naming the figures
(:class:`DamageGuard`). A stream that ends more than :data:`TRUNCATION_TOLERANCE_S` before its
declared end is a truncated file (:func:`truncation_error`).

:mod:`pipeline.decode` (video frames) and :mod:`pipeline.decode_audio` (sound) both read their
stream through :func:`decode_skipping`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import av

from pipeline.frame_skip import UnneededFrames
from pipeline.probe import DecodeError

log = logging.getLogger(__name__)

TRUNCATION_TOLERANCE_S = 0.5  # a stream may end this much before its declared end
MAX_DAMAGED_FRACTION = 0.05  # default share of the time axis undecodable data may cover


@dataclass
class StreamDamage:
    """Undecodable data met in one stream; :func:`pipeline.decode.iter_frames` and
    :func:`pipeline.decode_audio.iter_audio` fill in the one they are given (zeros: the stream
    decoded cleanly)."""

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


class DamageGuard:
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


def check_fraction(max_damaged_fraction: float) -> None:
    """Refuse a ``max_damaged_fraction`` outside [0, 1] (ValueError)."""
    if not 0.0 <= max_damaged_fraction <= 1.0:
        raise ValueError(
            f"max_damaged_fraction must be between 0 and 1, got {max_damaged_fraction!r}"
        )


def decode_skipping(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    guard: DamageGuard,
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


def truncation_error(
    path: Path, kind: str, decoded_end_s: float, declared_end_s: float
) -> DecodeError:
    """The error for a ``kind`` stream of ``path`` that decodes only up to ``decoded_end_s``."""
    return DecodeError(
        f"{path}: the {kind} stream decodes only up to {decoded_end_s:.2f} s but declares "
        f"{declared_end_s:.2f} s; the file is probably truncated, re-download or re-encode it"
    )
