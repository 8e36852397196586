"""One detection run over its training seeds: the mean of its mAP, the seeds' spread and intervals.

Each seed of a run is trained, run and evaluated on its own (``runs/{run}/seed{N}/``); this stage
writes the run's ``metrics.json`` and ``train_summary.json`` in ``runs/{run}/``, which the report,
the benchmark table, the comparison and the viewer read:

- the point estimates (mAP at each threshold, its average, recalls, per-class AP) are the means
  over the seeds;
- ``mAP_std`` and ``average_mAP_std`` are the seeds' sample standard deviations (None with one
  seed): the training noise;
- ``mAP_ci95`` and ``average_mAP_ci95`` are 95 % intervals of the mean over test videos: every
  seed was evaluated on the same test videos with the same bootstrap resamples
  (:mod:`pipeline.detection.bootstrap`), so the mean over seeds of the per-resample values is
  the per-resample value of the mean, kept in ``bootstrap`` for paired comparisons;
- ``per_seed`` keeps each seed's figures, and the plots are the first seed's.

Two runs differ beyond the noise when the 95 % interval of the difference of their means
excludes 0, its variance summing the two sources (:func:`difference_interval`): the test videos
(the paired bootstrap) and the training seeds (s_a^2 / n_a + s_b^2 / n_b, the variance of a
difference of two independent means), after Bouthillier et al., "Accounting for Variance in
Machine Learning Benchmarks" (MLSys 2021), who count both.

Usage: ``python -m pipeline.detection.seeds --seeds results/demo/runs/fusion/seed0 ...
--out results/demo/runs/fusion``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.detection.bootstrap import (
    STORED_DIGITS,
    Z_SCORE,
    normal_interval,
    resampled_values,
    unpaired_reason,
)
from pipeline.io import read_json, write_json_atomic

# Keys that every seed's evaluation must share: the same test set, judged the same way.
SHARED_KEYS = ("split", "tiou_thresholds", "num_videos", "num_events", "num_ground_truth")


def _std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof 1); None for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _mean_of(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, float]:
    """Per-threshold mean of the ``{threshold: value}`` mapping ``key`` of every record."""
    return {k: float(np.mean([record[key][k] for record in records])) for k in records[0][key]}


def combine_seeds(
    metrics_by_seed: Mapping[int, Mapping[str, Any]], seed_folders: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """The run's ``metrics.json`` from its seeds' (module docstring), seeds in the given order.

    Args:
        metrics_by_seed: each seed's ``metrics.json`` (:mod:`pipeline.detection.evaluate`).
        seed_folders: each seed's folder relative to the run's (``"seed0"``), to which the first
            seed's plot paths are re-rooted.

    Raises:
        ValueError: no seed, or seeds evaluated on different test sets or bootstraps.
    """
    if not metrics_by_seed:
        raise ValueError("a run needs at least one seed's metrics")
    seeds = list(metrics_by_seed)
    records = [metrics_by_seed[seed] for seed in seeds]
    first = records[0]
    for seed, record in zip(seeds[1:], records[1:], strict=True):
        for key in SHARED_KEYS:
            if record.get(key) != first.get(key):
                raise ValueError(
                    f"seed {seed} was evaluated with {key} {record.get(key)!r}, seed {seeds[0]} "
                    f"with {first.get(key)!r}: the seeds of a run must share one test set"
                )
        reason = unpaired_reason(first, record) if "bootstrap" in first else None
        if reason is not None:
            raise ValueError(f"seeds {seeds[0]} and {seed}: {reason}")
    keys = list(first["mAP"])
    averages = [record["average_mAP"] for record in records]
    combined: dict[str, Any] = {
        "seeds": seeds,
        **{key: first[key] for key in SHARED_KEYS if key in first},
        "mAP": _mean_of(records, "mAP"),
        "average_mAP": float(np.mean(averages)),
        "mAP_std": {k: _std([record["mAP"][k] for record in records]) for k in keys},
        "average_mAP_std": _std(averages),
        "recall_1x": _mean_of(records, "recall_1x"),
        "recall_5x": _mean_of(records, "recall_5x"),
        "ap_per_class": {
            name: _mean_of([record["ap_per_class"] for record in records], name)
            for name in first["ap_per_class"]
        },
        "num_predictions": round(float(np.mean([r["num_predictions"] for r in records]))),
        "per_seed": {
            str(seed): {"average_mAP": record["average_mAP"], "mAP": record["mAP"]}
            for seed, record in zip(seeds, records, strict=True)
        },
    }
    if "inference" in first:
        combined["inference"] = {
            **first["inference"],
            "snippets_per_s": float(
                np.mean([r["inference"]["snippets_per_s"] for r in records if "inference" in r])
            ),
        }
    folder = (seed_folders or {}).get(seeds[0])
    combined["plots"] = [
        (Path(folder) / path).as_posix() if folder else path for path in first.get("plots", [])
    ]
    if all("bootstrap" in record for record in records):
        combined.update(_mean_bootstrap(records, keys, combined))
    return combined


def _mean_bootstrap(
    records: Sequence[Mapping[str, Any]], keys: list[str], combined: Mapping[str, Any]
) -> dict[str, Any]:
    """Intervals of the mean over seeds from the mean of their per-resample values."""
    per_tiou = np.mean([[resampled_values(r, k) for k in keys] for r in records], axis=0)  # (K, B)
    average = np.mean([resampled_values(r, "average") for r in records], axis=0)  # (B,)
    points = np.array([combined["mAP"][k] for k in keys])
    digits = STORED_DIGITS
    return {
        "mAP_ci95": dict(zip(keys, normal_interval(points, per_tiou.T).T.tolist(), strict=True)),
        "average_mAP_ci95": normal_interval(combined["average_mAP"], average).tolist(),
        "bootstrap": {
            **records[0]["bootstrap"],
            "method": "video bootstrap of the mean over seeds, point +- 1.96 standard deviations",
            "average_mAP": np.round(average, digits).tolist(),
            "mAP": {
                k: np.round(row, digits).tolist() for k, row in zip(keys, per_tiou, strict=True)
            },
        },
    }


def spread_text(std: float | None) -> str:
    """`` ± 1.20``: a standard deviation over seeds in points, as the tables print it after a
    mean; "" for None (a single seed)."""
    return "" if std is None else f" ± {100 * std:.2f}"


def seed_variance(metrics: Mapping[str, Any], key: str) -> float:
    """Variance of a run's mean over seeds due to the seeds, s^2 / n, at ``key`` ("average" or
    a threshold); 0 for a run with one seed (its training noise is unknown)."""
    std = (
        metrics.get("average_mAP_std") if key == "average" else metrics.get("mAP_std", {}).get(key)
    )
    return 0.0 if std is None else std**2 / len(metrics.get("seeds", [None]))


def difference_interval(
    a: Mapping[str, Any], b: Mapping[str, Any], key: str
) -> tuple[float, float] | None:
    """95 % interval of run ``a``'s mean minus ``b``'s at ``key``: the paired bootstrap over test
    videos widened by both runs' seed variances (module docstring); None when the two runs'
    evaluations cannot be paired."""
    if unpaired_reason(a, b) is not None:
        return None
    resampled = (resampled_values(a, key), resampled_values(b, key))
    if any(values is None for values in resampled):
        return None
    points = [m["average_mAP"] if key == "average" else m["mAP"][key] for m in (a, b)]
    video_variance = np.nanvar(resampled[0] - resampled[1], ddof=1)  # paired over resamples
    spread = Z_SCORE * np.sqrt(video_variance + seed_variance(a, key) + seed_variance(b, key))
    difference = points[0] - points[1]
    return float(difference - spread), float(difference + spread)


def combine_summaries(summaries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The run's ``train_summary.json`` from its seeds': name, model and size (shared), mean
    training throughput, and each seed's selected epoch and validation mAP."""
    seeds = list(summaries)
    first = summaries[seeds[0]]
    return {
        "name": first["name"],
        "seeds": seeds,
        "model": first["model"],
        "epochs": first["epochs"],
        "num_parameters": first["num_parameters"],
        "device": first["device"],
        "train_snippets_per_s": float(
            np.mean([summary["train_snippets_per_s"] for summary in summaries.values()])
        ),
        "best_val_average_map": float(
            np.mean([summary["best_val_average_map"] for summary in summaries.values()])
        ),
        "best_epochs": {str(seed): summaries[seed]["best_epoch"] for seed in seeds},
    }


def write_run(seed_folders: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Combine the seed folders (``metrics.json`` and ``train_summary.json`` inside, the seed read
    from the summary) into ``out_dir/metrics.json`` and ``out_dir/train_summary.json``."""
    out_dir = Path(out_dir)
    metrics, summaries, folders = {}, {}, {}
    for folder in map(Path, seed_folders):
        summary = read_json(folder / "train_summary.json", "training summary", "train the run")
        seed = summary["seed"]
        if seed in summaries:
            raise ValueError(f"{folder}: seed {seed} is given twice")
        summaries[seed] = summary
        metrics[seed] = read_json(folder / "metrics.json", "detection metrics", "evaluate it")
        folders[seed] = os.path.relpath(folder, out_dir)
    combined = combine_seeds(metrics, folders)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "metrics.json", combined, indent=1)
    write_json_atomic(out_dir / "train_summary.json", combine_summaries(summaries), indent=1)
    return combined


@user_errors()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", required=True, help="the run's seed folders")
    parser.add_argument("--out", required=True, help="the run's folder")
    args = parser.parse_args(argv)
    combined = write_run(args.seeds, args.out)
    print(
        f"{args.out}: average mAP {100 * combined['average_mAP']:.2f}"
        f"{spread_text(combined['average_mAP_std'])} "
        f"over seeds {', '.join(map(str, combined['seeds']))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
