"""Markdown tables of our detection runs next to published results, with the difference in points.

The published numbers come from :mod:`pipeline.published`. Our numbers come from each run's
``metrics.json``: ``mAP`` per tIoU and ``average_mAP`` (:mod:`pipeline.detection.evaluate`,
fractions) or ``test_accuracy`` (AVE segment classifiers), printed in percent. A benchmark's
``average`` column is the mean over its own ``average_over`` thresholds, recomputed from our
per-threshold mAP; when a run was not evaluated at all of them the cell is ``n/a``. A data set
without published results (the synthetic one) gets a ``published`` row of ``n/a`` and columns from
our runs' thresholds. Where ``metrics.json`` has a bootstrap over test videos
(:mod:`pipeline.detection.bootstrap`), our mAP cells show its 95 % interval: ``42.05 [38.1, 45.9]``
(for a benchmark's ``average``, recomputed from the per-resample mAP of its thresholds); a run
over several training seeds (:mod:`pipeline.detection.seeds`) shows the mean and the seeds'
standard deviation: ``42.05 ± 1.20 [38.1, 45.9]``.

CLI: ``python -m pipeline.detection.table --benchmark unav100 --runs results/X/runs/a ...
--out results/X/table.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.detection.bootstrap import interval_text, normal_interval, resampled_values
from pipeline.detection.report import load_run
from pipeline.detection.seeds import spread_text
from pipeline.published import (
    PUBLISHED_PATH,
    Benchmark,
    entry_label,
    identifier,
    load_published,
)


def _map_at(metrics: Mapping[str, Any], threshold: float) -> float | None:
    """Our mAP (fraction) at one threshold; keys are matched by value ("0.5" == 0.50)."""
    for key, value in metrics.get("mAP", {}).items():
        if math.isclose(float(key), threshold, abs_tol=1e-9):
            return float(value)
    return None


def our_values(metrics: Mapping[str, Any], benchmark: Benchmark) -> dict[str, float | None]:
    """Our numbers (percent) in the benchmark's columns; ``None`` where the run lacks one."""
    if benchmark.metric == "accuracy":
        accuracy = metrics.get("test_accuracy", metrics.get("accuracy"))
        return {"accuracy": None if accuracy is None else 100 * float(accuracy)}
    values: dict[str, float | None] = {}
    for column in benchmark.columns:
        if column == "average":
            at = [_map_at(metrics, t) for t in benchmark.average_over]
            if not benchmark.average_over:
                average = metrics.get("average_mAP")
                values[column] = None if average is None else 100 * float(average)
            else:
                values[column] = None if None in at else 100 * sum(at) / len(at)
        else:
            value = _map_at(metrics, float(column))
            values[column] = None if value is None else 100 * value
    return values


def _key_at(metrics: Mapping[str, Any], threshold: float) -> str | None:
    """The ``mAP`` key of ``metrics`` at ``threshold``, matched by value."""
    for key in metrics.get("mAP", {}):
        if math.isclose(float(key), threshold, abs_tol=1e-9):
            return key
    return None


def _seed_spread(metrics: Mapping[str, Any], keys: Sequence[str] | None) -> str:
    """`` ± std`` (points) over the run's seeds of the mean of mAP at ``keys`` (None: the
    average), "" with fewer than two seeds."""
    per_seed = list(metrics.get("per_seed", {}).values())
    if len(per_seed) < 2:
        return ""
    values = [
        seed["average_mAP"] if keys is None else np.mean([seed["mAP"][key] for key in keys])
        for seed in per_seed
    ]
    return spread_text(float(np.std(values, ddof=1)))


def our_intervals(metrics: Mapping[str, Any], benchmark: Benchmark) -> dict[str, str]:
    """`` ± std`` over seeds (with several) and `` [lo, hi]`` (percent) of our mAP in each
    column; "" where the run has neither."""
    texts = {column: "" for column in benchmark.columns}
    if benchmark.metric == "accuracy":
        return texts
    for column in benchmark.columns:
        if column == "average" and not benchmark.average_over:
            texts[column] = _seed_spread(metrics, None) + interval_text(
                metrics.get("average_mAP_ci95")
            )
            continue
        over = benchmark.average_over if column == "average" else (float(column),)
        keys = [_key_at(metrics, threshold) for threshold in over]
        if None in keys:
            continue
        texts[column] = _seed_spread(metrics, keys)
        if "bootstrap" not in metrics:
            continue
        resampled = [resampled_values(metrics, key) for key in keys]
        if any(values is None for values in resampled):
            continue
        point = float(np.mean([metrics["mAP"][key] for key in keys]))
        texts[column] += interval_text(normal_interval(point, np.mean(resampled, axis=0)))
    return texts


def _unpublished(dataset_key: str, our_metrics: Mapping[str, Mapping[str, Any]]) -> Benchmark:
    """A benchmark with no published rows, its columns taken from our runs."""
    thresholds = sorted({float(key) for m in our_metrics.values() for key in m.get("mAP", {})})
    return Benchmark(
        key=dataset_key,
        name=f"{dataset_key} (no published results)",
        metric="map",
        columns=(*(f"{t:g}" for t in thresholds), "average"),
        average_over=(),
        reference=None,
        entries=(),
    )


def _cell(value: float | None, reference: float | None = None, interval: str = "") -> str:
    if value is None:
        return "n/a"
    if reference is None:
        return f"{value:.2f}{interval}"
    return f"{value:.2f}{interval} ({value - reference:+.2f})"


def render_table(
    dataset_key: str,
    our_metrics: Mapping[str, Mapping[str, Any]],
    benchmarks: Mapping[str, Benchmark],
) -> str:
    """The Markdown text of :func:`write_table`."""
    benchmark = benchmarks.get(dataset_key) or _unpublished(dataset_key, our_metrics)
    headers = [
        f"mAP@{column}" if benchmark.metric == "map" and column != "average" else column
        for column in benchmark.columns
    ]
    lines = [
        f"# {benchmark.name}: our runs and published results",
        "",
        "| method | features | source | " + " | ".join(headers) + " |",
        "|---" * (3 + len(headers)) + "|",
    ]
    reference = {}
    for entry in benchmark.entries:
        source = entry["source"]
        cite = identifier(source)
        if source.get("table"):
            cite += f", {source['table']}"
        if entry["status"] == "derived":
            cite += "; derived"
        cells = [_cell(entry["values"][column]) for column in benchmark.columns]
        features = entry.get("features") or "–"
        lines.append(f"| {entry_label(entry)} | {features} | {cite} | {' | '.join(cells)} |")
        if entry["method"] == benchmark.reference:
            reference = entry["values"]
    if not benchmark.entries:
        na = " | ".join("n/a" for _ in benchmark.columns)
        lines.append(f"| published | – | none for this data set | {na} |")
    for run_name, metrics in our_metrics.items():
        values, intervals = our_values(metrics, benchmark), our_intervals(metrics, benchmark)
        cells = [
            _cell(values[column], reference.get(column), intervals[column])
            for column in benchmark.columns
        ]
        lines.append(
            f"| **ours: {run_name}** | this pipeline | metrics.json | {' | '.join(cells)} |"
        )
    lines.append("")
    if benchmark.reference:
        lines.append(
            f"Our cells show (in parentheses) ours − {benchmark.reference}, in points, where that "
            "published number exists."
        )
    if benchmark.average_over:
        over = ", ".join(f"{t:g}" for t in benchmark.average_over)
        lines.append(f"`average` is the mean mAP over tIoU {over}.")
    lines.append(
        "`n/a`: not published for this data set, not found in the source, or not evaluated."
    )
    if any("bootstrap" in metrics for metrics in our_metrics.values()):
        lines.append(
            "In brackets: the 95 % interval of our mAP over test videos (bootstrap, "
            "pipeline/detection/bootstrap.py)."
        )
    if benchmark.entries:
        lines += ["", "Sources (pipeline/data/published_results.yaml):", ""]
        for entry in benchmark.entries:
            source = entry["source"]
            derivation = " ".join(str(entry.get("derivation", "")).split())
            lines.append(
                f'- {entry_label(entry)}: "{source["title"]}"'
                + (f", {identifier(source)}" if source.get("arxiv") or source.get("doi") else "")
                + f"; status: {entry['status']}; {' '.join(str(entry['checked']).split())}"
                + (f" Derivation: {derivation}" if derivation else "")
            )
    return "\n".join(lines) + "\n"


def write_table(
    dataset_key: str,
    our_metrics: Mapping[str, Mapping[str, Any]],
    out_path: str | Path,
    *,
    published_path: str | Path = PUBLISHED_PATH,
) -> str:
    """Write the Markdown table of ``our_metrics`` (run name -> metrics.json dict) and return it.

    Args:
        dataset_key: a benchmark of the published-results file, or any other name (no
            published rows, e.g. the synthetic ``demo``).
        our_metrics: run name -> the run's ``metrics.json`` content.
        out_path: Markdown file to write.
        published_path: the published-results YAML.
    """
    if not our_metrics:
        raise ValueError(f"no run to put in {out_path}; pass at least one run folder")
    text = render_table(dataset_key, our_metrics, load_published(published_path))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    return text


@user_errors()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True, help="benchmark key (unav100, ave, ...)")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders with metrics.json")
    parser.add_argument("--out", required=True, help="Markdown table to write")
    parser.add_argument("--published", default=str(PUBLISHED_PATH), help="published results YAML")
    args = parser.parse_args(argv)
    runs = [load_run(folder) for folder in args.runs]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"runs {args.runs} have repeated names {names}; pass each run once")
    write_table(
        args.benchmark,
        {run.name: run.metrics for run in runs},
        args.out,
        published_path=args.published,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
