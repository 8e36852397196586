"""Shared by the tests that run a ``configs/papers/`` file end to end on fakes of its release:
the config merged with the test's overrides, as ``snakemake --configfile A B`` merges them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PAPERS = Path(__file__).resolve().parents[1] / "configs" / "papers"


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def paper_config(*names: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The ``configs/papers`` files ``names``, merged in order, then ``overrides``."""
    config: dict[str, Any] = {}
    for name in names:
        config = deep_merge(config, yaml.safe_load((PAPERS / name).read_text()))
    return deep_merge(config, overrides)


def shrink_runs(config: Mapping[str, Any], **model: Any) -> dict[str, Any]:
    """Every run's model with the sizes ``model`` (tiny, for CPU tests), all else kept."""
    runs = {
        name: {**run, "model": {**run["model"], **model}} for name, run in config["runs"].items()
    }
    return {**config, "runs": runs}
