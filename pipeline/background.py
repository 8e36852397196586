"""Run an iterator in a thread of its own, a few items ahead of the code that consumes it.

Extraction decodes a video's frames and sound while the encoders embed what was decoded
(:mod:`pipeline.video_extraction`), as ffmpeg's command line runs its demuxer, decoders and muxer in
threads of their own: libavcodec releases the GIL while it decodes, so decoding and embedding
overlap on a machine with a second core.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()  # put after the last item
_POLL_S = 0.05  # how often a producer blocked on a full queue checks whether it should stop


class _Raised:
    """The exception the source raised, passed to the consumer in the item's place."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


@contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Let threads take turns with the GIL every ``seconds`` inside the block (process-wide;
    restored after it). Python's default, 5 ms, is long against a video frame's decode
    (under 1 ms at 360p): a decoding thread whose frame is done waits up to that long for the
    GIL while the encoders hold it, so the decoder idles instead of overlapping them."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a SLURM job's cgroup narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Background(Generic[T]):
    """Iterate over ``items`` in a daemon thread, at most ``depth`` items ahead of the consumer.

    Iterating over the object yields the items in order and raises the source's exception where
    the source raised it; :meth:`ready` yields only the items already produced. Use it as a
    context manager: leaving the block stops the thread (it closes ``items`` in the thread that
    runs it, so a decoder's file is closed) and waits for it, on success and on error alike.

    Args:
        items: the iterator to run; it must not be touched by the caller afterwards.
        depth: items produced ahead of the consumer (>= 1); bounds the memory held.
        name: the thread's name (shown by debuggers and ``threading.enumerate``).
    """

    def __init__(self, items: Iterator[T], *, depth: int, name: str) -> None:
        if depth < 1:
            raise ValueError(f"Background needs depth >= 1, got {depth!r}")
        self._items = items
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False  # the consumer has seen the end or the error
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless the consumer stopped first; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    break
            else:
                self._put(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(_Raised(error))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _take(self, item: object) -> object:
        """``item`` itself, or ``_END`` at the end; the source's error is raised."""
        if item is _END:
            self._done = True
        elif isinstance(item, _Raised):
            self._done = True
            raise item.error
        return item

    def __iter__(self) -> Iterator[T]:
        while not self._done:
            item = self._take(self._queue.get())
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def ready(self) -> Iterator[T]:
        """The items produced so far, without waiting for more (the source's error raised in
        its place, as :meth:`__iter__` would)."""
        while not self._done:
            try:
                item = self._take(self._queue.get_nowait())
            except queue.Empty:
                return
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the thread and wait for it (it finishes the item it is producing first)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Background[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
