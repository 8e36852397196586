"""pipeline.background: an iterator run in a thread of its own, a bounded number of items ahead."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from pipeline.background import Background, switch_interval, usable_cpus


def _wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_background_yields_every_item_in_order_from_another_thread():
    threads = []

    def numbers():
        for number in range(100):
            threads.append(threading.current_thread())
            yield number

    with Background(numbers(), depth=3, name="numbers") as items:
        assert list(items) == list(range(100))
    assert {thread.name for thread in threads} == {"numbers"}
    assert threading.current_thread() not in threads


def test_background_raises_the_sources_error_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise ValueError("broken at 3")

    received = []
    with (
        Background(failing(), depth=1, name="failing") as items,
        pytest.raises(ValueError, match="broken at 3"),
    ):
        for item in items:
            received.append(item)
    assert received == [1, 2]


def test_background_runs_at_most_depth_items_ahead():
    produced = []

    def counted():
        for number in range(50):
            produced.append(number)
            yield number

    with Background(counted(), depth=4, name="counted") as items:
        _wait_until(lambda: len(produced) >= 5)
        time.sleep(0.1)  # time to run further ahead, were it not bounded
        # 4 items queued and the fifth made, waiting for room
        assert len(produced) == 5
        assert next(iter(items)) == 0
        _wait_until(lambda: len(produced) >= 6)
        time.sleep(0.1)
        assert len(produced) == 6


def test_ready_yields_only_what_was_produced_without_waiting():
    release = threading.Event()

    def gated():
        yield "a"
        yield "b"
        release.wait()
        yield "c"

    with Background(gated(), depth=5, name="gated") as items:
        _wait_until(lambda: items._queue.qsize() == 2)
        started = time.monotonic()
        assert list(items.ready()) == ["a", "b"]
        assert list(items.ready()) == []
        assert time.monotonic() - started < 1.0  # did not wait for "c"
        release.set()
        assert list(items) == ["c"]
        assert list(items.ready()) == [] and list(items) == []


def test_ready_raises_the_sources_error_in_its_place():
    def failing():
        yield 1
        raise OSError("read failed")

    with Background(failing(), depth=5, name="failing") as items:
        _wait_until(lambda: items._queue.qsize() == 2)
        ready = items.ready()
        assert next(ready) == 1
        with pytest.raises(OSError, match="read failed"):
            next(ready)


def test_leaving_the_block_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    with Background(endless(), depth=2, name="endless") as items:
        assert next(iter(items)) == 0
        thread = items._thread
    assert closed.is_set()
    assert not thread.is_alive()


def test_an_error_in_the_consumer_stops_the_thread_too():
    def numbers():
        yield from range(1000)

    with (
        pytest.raises(RuntimeError, match="consumer failed"),
        Background(numbers(), depth=2, name="numbers") as items,
    ):
        thread = items._thread
        for _ in items:
            raise RuntimeError("consumer failed")
    assert not thread.is_alive()


def test_background_refuses_a_depth_below_one():
    with pytest.raises(ValueError, match="depth >= 1"):
        Background(iter([]), depth=0, name="none")


def test_switch_interval_is_restored_after_the_block_even_on_error():
    before = sys.getswitchinterval()
    with pytest.raises(KeyError), switch_interval(0.0007):
        assert sys.getswitchinterval() == pytest.approx(0.0007)
        raise KeyError("x")
    assert sys.getswitchinterval() == before


def test_usable_cpus_counts_the_affinity_mask(monkeypatch):
    """A SLURM job's cgroup or ``taskset`` narrows the mask below the machine's cores."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert usable_cpus() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert usable_cpus() == 3
