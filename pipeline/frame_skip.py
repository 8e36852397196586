"""Which video packets the decoder may drop: frames no output time shows and no frame refers to.

:func:`pipeline.decode.iter_frames` shows, at output time ``i / fps``, the latest source frame
whose time is at or before it (within a tolerance). At 8 frames a second from a 25 fps source,
two source frames in three are shown at no output time; those that are also non-reference
frames (most B-frames of H.264 and HEVC, every B-frame of MPEG-4 part 2, VP8/VP9's
non-reference frames) need not be decoded at all: libavcodec drops them when its
``skip_frame`` is ``NONREF`` while they are sent. A reference frame is decoded whatever the
setting, so only frames nothing else needs are lost, and the frames shown are bit for bit those
of a full decode (``tests/pipeline/test_frame_skip.py`` checks it on H.264, MPEG-4 and VFR
sources at several rates).

Whether a frame is shown depends on the next frame's time in presentation order, which the
packets' decoding order does not give directly; it is read from the packets around the one
being sent (``window`` before and after it in decoding order). A window that misses the true
next frame finds a later one or none, which can only make a frame look needed: the choice errs
on the side of decoding.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from itertools import chain

import av

# Packets looked at on each side: more than any B-frame reordering depth in practice (H.264
# allows 16 frames in its decoded picture buffer).
WINDOW = 16


class UnneededFrames:
    """Marks each packet of a video stream that may be dropped before it is decoded.

    Args:
        fps: the output rate of :func:`pipeline.decode.iter_frames`.
        num_outputs: output frames, at times ``i / fps`` for ``i < num_outputs``.
        time_base: the stream's time base (seconds per pts tick).
        time_zero_s: the time axis's zero, in stream seconds.
        tolerance_s: the output times' tolerance, as ``iter_frames`` applies it.
        window: packets looked at on each side of the packet being sent.
    """

    def __init__(
        self,
        *,
        fps: float,
        num_outputs: int,
        time_base: float,
        time_zero_s: float,
        tolerance_s: float,
        window: int = WINDOW,
    ) -> None:
        self.fps, self.num_outputs = fps, num_outputs
        self.time_base, self.time_zero_s = time_base, time_zero_s
        self.tolerance_s, self.window = tolerance_s, window
        self.dropped = 0  # packets marked droppable (the decoder drops those it may)
        self.earliest: int | None = None  # the smallest pts marked so far

    def _time_s(self, pts: int) -> float:
        return pts * self.time_base - self.time_zero_s

    def shown(self, time_s: float, next_time_s: float) -> bool:
        """Whether a frame at ``time_s`` followed (in presentation order) by one at
        ``next_time_s`` is shown at some output time: an ``i < num_outputs`` with
        ``time_s <= i / fps + tolerance_s < next_time_s``, with a margin for rounding that
        counts borderline frames as shown."""
        margin = 1e-9
        first = max(0, math.ceil((time_s - self.tolerance_s) * self.fps) - 1)
        for i in (first, first + 1):
            output_s = i / self.fps + self.tolerance_s
            if (
                i < self.num_outputs
                and time_s - margin <= output_s
                and output_s < next_time_s + margin
            ):
                return True
        return False

    def mark(self, packets: Iterator[av.Packet]) -> Iterator[tuple[av.Packet, bool]]:
        """Yield ``(packet, droppable)`` for each packet of the stream in order (once per
        stream). A packet without a pts, the earliest so far (it may be the first frame, shown
        at every time before it) or without a later packet in reach is never droppable. A read
        error of ``packets`` is raised after the packets already read are yielded."""
        ahead: deque[av.Packet] = deque()
        behind: deque[int] = deque(maxlen=self.window)  # pts of the packets before
        error: av.FFmpegError | None = None
        try:
            for packet in packets:
                ahead.append(packet)
                if len(ahead) > self.window:
                    yield self._send(ahead, behind)
        except av.FFmpegError as read_error:
            error = read_error
        while ahead:
            yield self._send(ahead, behind)
        if error is not None:
            raise error

    def _send(self, ahead: deque[av.Packet], behind: deque[int]) -> tuple[av.Packet, bool]:
        """Take the first packet of ``ahead``, mark it and move its pts to ``behind``."""
        packet = ahead.popleft()
        droppable = self._droppable(packet, behind, ahead)
        if packet.pts is not None:
            behind.append(packet.pts)
        return packet, droppable

    def _droppable(self, packet: av.Packet, behind: deque[int], ahead: deque[av.Packet]) -> bool:
        """Whether ``packet`` may be dropped; keeps :attr:`earliest` up to date."""
        pts = packet.pts
        if pts is None or not packet.size:  # no time, or the flush packet at the end
            return False
        if self.earliest is None or pts <= self.earliest:
            self.earliest = pts
            return False
        later = [p for p in chain(behind, (q.pts for q in ahead)) if p is not None and p > pts]
        if not later:
            return False
        droppable = not self.shown(self._time_s(pts), self._time_s(min(later)))
        self.dropped += droppable
        return droppable
