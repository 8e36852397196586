"""Progress lines of a long job: items done of the total, seconds of video per second, time left.

A job logs its progress (``logging``, into the job's log file) and, where the rule gives it one,
writes the same lines to a second stream: the rules pass the terminal on file descriptor 3
(``3>&2`` before the ``> {log} 2>&1`` redirection, so the descriptor is Snakemake's own stderr)
and name it in the environment, ``AVLOC_PROGRESS_FD=3`` (:func:`terminal_stream`). On SLURM
that stream is the job's SLURM log.

A line is written after the first item, then at most every ``interval_s`` seconds, and after the
last item::

    extract shard 3: 12/25 videos (2 cached or skipped), 301 s of video in 40 s (7.5 s/s),
    about 43 s left

The time left is the remaining items times the mean time of the items done so far that did work
(cached items cost nothing and are left out of the rate).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import IO

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0  # seconds between two lines
FD_VARIABLE = "AVLOC_PROGRESS_FD"  # names the descriptor of the terminal in a job's environment


def terminal_stream() -> IO[str] | None:
    """A line-buffered text stream on the descriptor that :data:`FD_VARIABLE` names, or None
    when it is unset, not a number or not open (the job then reports to its log only)."""
    value = os.environ.get(FD_VARIABLE)
    if not value:
        return None
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):
        log.info(
            "%s=%s is not an open file descriptor: progress goes to the log only",
            FD_VARIABLE,
            value,
        )
        return None
    return open(fd, "w", buffering=1, encoding="utf-8", closefd=False)


def _duration(seconds: float) -> str:
    """``43 s``, ``12 min``, ``2.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts the items of a job and writes progress lines (module docstring).

    Args:
        what: the job, first on each line (``"extract shard 3"``).
        total: items the job will process.
        unit: what an item is (``"videos"``).
        stream: a second destination of the lines besides the log; by default the terminal's
            (:func:`terminal_stream`), when the job was given one.
        interval_s: least seconds between two lines (the first and last items always print).
        clock: seconds, monotonic (a test passes its own).
    """

    def __init__(
        self,
        what: str,
        total: int,
        unit: str = "videos",
        *,
        stream: IO[str] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = terminal_stream() if stream is None else stream
        self.interval_s, self.clock = interval_s, clock
        self.started = clock()
        self.done = 0
        self.cached = 0  # items that did no work
        self.media_s = 0.0  # seconds of video processed by the items that worked
        self.busy_s = 0.0  # seconds spent on the items that worked
        self._item_started = self.started
        self._last_line: float | None = None

    def advance(self, media_s: float | None = None, *, cached: bool = False) -> None:
        """One item is done: ``media_s`` seconds of video (None: unknown), ``cached`` when it
        needed no work. Writes a line when one is due."""
        now = self.clock()
        self.done += 1
        if cached:
            self.cached += 1
        else:
            self.busy_s += now - self._item_started
            self.media_s += media_s or 0.0
        self._item_started = now
        due = self._last_line is None or now - self._last_line >= self.interval_s
        if due or self.done == self.total:
            self._last_line = now
            self.write(self.line())

    def skip(self) -> None:
        """One item failed or was left out: it counts as done, without a rate."""
        self.advance(cached=True)

    def line(self) -> str:
        """The current progress line."""
        elapsed = self.clock() - self.started
        parts = [f"{self.what}: {self.done}/{self.total} {self.unit}"]
        if self.cached:
            parts[0] += f" ({self.cached} cached or skipped)"
        if self.media_s > 0 and self.busy_s > 0:
            rate = self.media_s / self.busy_s
            parts.append(
                f"{_duration(self.media_s)} of video in {_duration(elapsed)} ({rate:.1f} s/s)"
            )
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
        left = self.total - self.done
        worked = self.done - self.cached
        if left == 0:
            parts.append("done")
        elif worked:
            parts.append(f"about {_duration(left * self.busy_s / worked)} left")
        return ", ".join(parts)

    def write(self, line: str) -> None:
        log.info("%s", line)
        if self.stream is not None:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except OSError:  # the terminal went away; the log still has the line
                self.stream = None
