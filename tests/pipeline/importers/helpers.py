"""Shared helpers of the importer tests: the real data folder and a stage-2 read-back."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.annotations import load_annotations
from pipeline.detection.data import FeatureDataset

DATASETS = Path(__file__).resolve().parents[4] / "shared" / "datasets"


def real_file(*parts: str) -> Path:
    """A file of ``../shared/datasets``; the test is skipped when it is absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (real benchmark files live in ../shared/datasets)")
    return path


def read_back(
    annotations: Path, out_dir: Path, split: str, modalities: tuple[str, ...] = ("audio", "visual")
) -> FeatureDataset:
    """Stage 2's reader over an import: whole videos of ``split``, cached."""
    return FeatureDataset(
        load_annotations(annotations),
        split,
        out_dir / "index.json",
        out_dir / "stats.json",
        modalities=modalities,
        cache=True,
    )
