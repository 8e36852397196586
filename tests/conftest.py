"""Test ordering for the two workers of ``pytest -n 2 --dist loadfile``: the workflow tests
(marked ``slow``, minutes each) are handed out first, so the quick unit tests fill the other
worker's time instead of one long file starting last and running alone."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept
