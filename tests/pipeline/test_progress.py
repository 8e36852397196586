"""Progress lines: counts, rate and time left by hand, on a fake clock."""

from __future__ import annotations

import io
import os

import pytest

from pipeline import progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_count_rate_and_time_left() -> None:
    clock, stream = Clock(), io.StringIO()
    bar = progress.Progress("extract shard 3", 5, stream=stream, interval_s=10, clock=clock)
    clock.now += 4  # 20 s of video in 4 s
    bar.advance(20.0)
    bar.advance(cached=True)  # instantaneous, left out of the rate
    clock.now += 2  # too soon after the first line: no line
    bar.advance(10.0)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "extract shard 3: 1/5 videos, 20 s of video in 4 s (5.0 s/s), about 16 s left"
    ]  # 4 left x 4 s per worked video
    clock.now += 10
    bar.skip()  # a failed video
    clock.now += 1
    bar.advance(30.0)  # the last: always a line
    # worked 3 videos in 4 + 2 + 1 s (the skipped one's 10 s is not work), 60 s of video
    assert stream.getvalue().splitlines()[1:] == [
        "extract shard 3: 4/5 videos (2 cached or skipped), 30 s of video in 16 s (5.0 s/s), "
        "about 3 s left",
        "extract shard 3: 5/5 videos (2 cached or skipped), 60 s of video in 17 s (8.6 s/s), done",
    ]


def test_long_durations_read_in_minutes_and_hours() -> None:
    clock, stream = Clock(), io.StringIO()
    bar = progress.Progress("import unav100", 1000, stream=stream, clock=clock)
    clock.now += 600
    bar.advance(7200.0)
    assert stream.getvalue() == (
        "import unav100: 1/1000 videos, 2.0 h of video in 10 min (12.0 s/s), about 166.5 h left\n"
    )


def test_the_terminal_descriptor_comes_from_the_environment(monkeypatch) -> None:
    read_end, write_end = os.pipe()
    try:
        monkeypatch.setenv(progress.FD_VARIABLE, str(write_end))
        bar = progress.Progress("job", 1, clock=Clock())
        bar.advance(1.0)
        assert os.read(read_end, 1000).decode().startswith("job: 1/1 videos")
    finally:
        os.close(read_end)
        os.close(write_end)
    monkeypatch.setenv(progress.FD_VARIABLE, str(write_end))  # closed now: the log only
    assert progress.terminal_stream() is None
    monkeypatch.setenv(progress.FD_VARIABLE, "three")
    assert progress.terminal_stream() is None
    monkeypatch.delenv(progress.FD_VARIABLE)
    assert progress.terminal_stream() is None


def test_a_terminal_that_went_away_leaves_the_log(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("gone")

    bar = progress.Progress("job", 2, stream=Broken(), clock=Clock())
    with caplog.at_level("INFO", logger="pipeline.progress"):
        bar.advance(1.0)
        bar.advance(1.0)
    assert [r.message for r in caplog.records if r.message.startswith("job:")] == [
        "job: 1/2 videos, 0 s elapsed, about 0 s left",  # no time passed: no rate
        "job: 2/2 videos, 0 s elapsed, done",
    ]
