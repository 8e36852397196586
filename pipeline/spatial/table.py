"""The sound-localisation table: every method's metrics side by side, as Markdown and JSON.

Runs of the same method (one per training seed) are averaged: the table shows mean and standard
deviation over seeds, because weakly supervised localisers vary a lot from seed to seed. The
columns are the field's metrics under their evaluators' names (:mod:`pipeline.spatial.metrics`)
and ours, labelled "(ours)". Every localiser is compared with the similarity-map baseline on the
field's metrics; a difference of the seed means is "within noise" unless Welch's t-test over the
seeds gives p < 0.05.

For a sound-source localisation benchmark, ``--published KEY`` (a ``localisation`` benchmark of
``pipeline/data/published_results.yaml``, :mod:`pipeline.published`) adds a "Published" block:
each published row in the field's columns, divided by 100 to our rows' scale (fractions), with
its status and source; rows measured on another test set are printed apart, as not comparable.

Usage: ``python -m pipeline.spatial.table --runs results/demo/spatial/m2vsl/seed0 ...
--out results/demo/spatial/table.md --json results/demo/spatial/metrics.json
[--published flickr_soundnet]``; each run folder holds ``metrics.json``
(:mod:`pipeline.spatial.evaluate`) and ``train_summary.json`` (:mod:`pipeline.spatial.train`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from pipeline.cli import user_errors
from pipeline.display_names import SPATIAL_HEADLINE, spatial_display_name
from pipeline.io import read_json
from pipeline.published import (
    LOCALISATION_COLUMNS,
    PUBLISHED_PATH,
    entry_label,
    localisation_benchmark,
    published_entries,
)

FAMILIES = ("ezvsl", "slavc", "avsbench", "ours")  # metric families of metrics.json "overall"
HEADLINE = SPATIAL_HEADLINE  # the field's metrics; SLAVC's Precision is EZ-VSL's CIoU here
COLUMNS = (  # (family, metric, column title) of the per-method statistics shown
    *HEADLINE[:4],
    ("slavc", "precision", "Precision (SLAVC)"),
    *HEADLINE[4:],
    ("ours", "ciou_gt_area", "cIoU@|GT| ≥ 0.5 (ours)"),
    ("ours", "pointing_accuracy", "Pointing (ours)"),
    ("ours", "peak_on_silent_rate", "Peak on silent (ours)"),
)
FIELD_COLUMNS = tuple(column for column in COLUMNS if column[0] != "ours")  # published block's
PUBLISHED_DIVISOR = 100.0  # published percent / 100: the scale of our rows (fractions)
NOT_REPORTED = "–"  # a column the published source does not report
NOISE_P_VALUE = 0.05  # Welch's t-test p at or above it: the difference is within noise
ONE_SEED = "one seed: no noise estimate"


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's metrics and training summary, merged."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "metrics.json", "spatial metrics (run the evaluation first)")
    summary = read_json(run_dir / "train_summary.json", "training summary (train first)")
    return {
        **metrics,
        "name": summary.get("name", metrics["method"]),
        "seed": summary["train_config"]["seed"],
        "train_seconds": summary["train_seconds"],
        "train_cpu_seconds": summary["train_cpu_seconds"],
        "run": str(run_dir),
    }


def run_values(run: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one run that the table aggregates: every metric of the families of
    ``overall`` (None as NaN), throughput and training time."""
    values: dict[str, Any] = {
        family: {
            metric: np.nan if value is None else float(value)
            for metric, value in run["overall"][family].items()
        }
        for family in FAMILIES
    }
    values["throughput_frames_per_s"] = run["throughput_frames_per_s"]
    values["train_cpu_seconds"] = run["train_cpu_seconds"]
    return values


def _over_seeds(values: Sequence[Any], reduce: Any) -> Any:
    """``reduce`` applied over the seeds' values, keeping the families' nesting."""
    if isinstance(values[0], dict):
        return {key: _over_seeds([v[key] for v in values], reduce) for key in values[0]}
    return float(reduce(np.array(values, dtype=float)))


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per run name (in order of appearance): method, seeds, mean and sample std of every
    value over the seeds (``mean["ezvsl"]["ciou"]``, ``mean["throughput_frames_per_s"]``)."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        methods.setdefault(run["name"], []).append(run)
    result = {}
    for name, method_runs in methods.items():
        kinds = {run["method"] for run in method_runs}
        if len(kinds) > 1:
            raise ValueError(f"run {name} mixes methods {sorted(kinds)}; name each run once")
        values = [run_values(run) for run in method_runs]
        result[name] = {
            "method": method_runs[0]["method"],
            "seeds": [run["seed"] for run in method_runs],
            "num_parameters": method_runs[0]["num_parameters"],
            "mean": _over_seeds(values, np.mean),
            "std": _over_seeds(values, lambda x: np.std(x, ddof=1) if len(x) > 1 else 0.0),
            "runs": [run["run"] for run in method_runs],
        }
    return result


def compare_with_baseline(ours: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Per headline metric: the difference of the seed means and whether it exceeds the noise.

    Welch's t-test on the two sets of seeds (``scipy.stats.ttest_ind(equal_var=False)``, here
    from their means and sample standard deviations): ``p >= 0.05`` is "within noise". With one
    seed on either side there is no noise estimate; with no spread on both, any difference
    counts. Each entry: ``metric`` (``"ezvsl.ciou"``), ``title``, ``difference``, ``p_value``
    (None without a test) and ``finding``: "higher", "lower", "within noise" or
    :data:`ONE_SEED`.
    """
    entries = []
    n_ours, n_base = len(ours["seeds"]), len(base["seeds"])
    for family, metric, title in HEADLINE:
        mean_ours, mean_base = ours["mean"][family][metric], base["mean"][family][metric]
        std_ours, std_base = ours["std"][family][metric], base["std"][family][metric]
        difference = mean_ours - mean_base
        p_value: float | None = None
        if min(n_ours, n_base) < 2:
            finding = ONE_SEED
        else:
            if std_ours == 0 and std_base == 0:
                p_value = 1.0 if difference == 0 else 0.0
            else:
                p_value = float(
                    scipy_stats.ttest_ind_from_stats(
                        mean_ours, std_ours, n_ours, mean_base, std_base, n_base, equal_var=False
                    ).pvalue
                )
            if p_value >= NOISE_P_VALUE:
                finding = "within noise"
            else:
                finding = "higher" if difference > 0 else "lower"
        entries.append(
            {
                "metric": f"{family}.{metric}",
                "title": title,
                "difference": difference,
                "p_value": p_value,
                "finding": finding,
            }
        )
    return entries


def _baseline(methods: dict[str, dict[str, Any]]) -> str | None:
    """The first similarity-map run, the baseline every other run is compared with."""
    return next((name for name, s in methods.items() if s["method"] == "similarity"), None)


def versus_baseline(methods: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """:func:`compare_with_baseline` of every run that is not a similarity-map run."""
    base_name = _baseline(methods)
    if base_name is None:
        return {}
    return {
        name: compare_with_baseline(stats, methods[base_name])
        for name, stats in methods.items()
        if stats["method"] != "similarity"
    }


def verdict(methods: dict[str, dict[str, Any]]) -> str:
    """Which run wins on the headline metrics, with the numbers: each localiser against the
    first similarity-map baseline run, or the best CIoU (EZ-VSL) when there is no pair."""
    comparisons = versus_baseline(methods)
    if not comparisons:
        best = max(methods, key=lambda name: methods[name]["mean"]["ezvsl"]["ciou"])
        return (
            f"{spatial_display_name(best, methods[best]['method'])} has the best CIoU (EZ-VSL), "
            f"{methods[best]['mean']['ezvsl']['ciou']:.3f}."
        )
    base_name = _baseline(methods)
    return " ".join(
        _versus(name, methods[name], base_name, methods[base_name], entries)
        for name, entries in comparisons.items()
    )


def _titles(entries: Sequence[dict[str, Any]]) -> str:
    return ", ".join(entry["title"] for entry in entries)


def _versus(
    name: str,
    ours: dict[str, Any],
    base_name: str,
    base: dict[str, Any],
    entries: Sequence[dict[str, Any]],
) -> str:
    """One sentence: run ``name`` against the baseline on each headline metric."""
    label = spatial_display_name(name, ours["method"])
    base_label = (
        "the similarity-map baseline"
        if base_name == "similarity"
        else f"the similarity-map baseline ({base_name})"
    )
    numbers = "; ".join(
        f"{title} {ours['mean'][family][metric]:.3f} ± {ours['std'][family][metric]:.3f} vs "
        f"{base['mean'][family][metric]:.3f} ± {base['std'][family][metric]:.3f}"
        + ("" if entry["p_value"] is None else f" (p = {entry['p_value']:.3f})")
        for (family, metric, title), entry in zip(HEADLINE, entries, strict=True)
    )
    seeds = f"mean ± std over {len(ours['seeds'])} and {len(base['seeds'])} seeds"
    if entries[0]["finding"] == ONE_SEED:
        higher = [entry for entry in entries if entry["difference"] > 0]
        lead = f"{label} against {base_label} ({ONE_SEED}): " + (
            f"higher mean on {_titles(higher)}"
            if higher
            else "no higher mean on any headline metric"
        )
        return f"{lead} ({seeds}, {label} first: {numbers})."
    better = [entry for entry in entries if entry["finding"] == "higher"]
    noise = [entry for entry in entries if entry["finding"] == "within noise"]
    worse = [entry for entry in entries if entry["finding"] == "lower"]
    if len(better) == len(entries):
        clauses = [f"beats {base_label} on every headline metric"]
    elif better:
        clauses = [f"beats {base_label} on {_titles(better)} only"]
    else:
        clauses = [f"does not beat {base_label} on any headline metric"]
    if noise:
        clauses.append(f"is within noise on {_titles(noise)} (Welch's t-test, p >= 0.05)")
    if worse:
        clauses.append(f"is beaten on {_titles(worse)}")
    return f"{label} {'; '.join(clauses)} ({seeds}, {label} first: {numbers})."


def _cell(stats: dict[str, Any], family: str, metric: str, digits: int = 3) -> str:
    mean, std = stats["mean"][family][metric], stats["std"][family][metric]
    if np.isnan(mean):
        return "n/a"
    if len(stats["seeds"]) > 1:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def _markdown(text: str) -> str:
    """Text for a Markdown table cell: ``|`` escaped."""
    return text.replace("|", "\\|")


def published_rows(key: str, path: str | Path = PUBLISHED_PATH) -> dict[str, Any]:
    """The published rows of localisation benchmark ``key``, for the table and metrics.json.

    Each entry: ``label`` (method and setting), ``status``, ``citation``, ``features``,
    ``test_set`` (its own, None on the benchmark's), ``comparable``, ``percent`` (column ->
    the published percent, None where not reported or not found) and ``values`` (our
    ``overall`` families: ``values["ezvsl"]["ciou"]`` = percent / 100).

    Raises:
        PublishedResultsError: no such benchmark, or not a localisation one.
    """
    benchmark = localisation_benchmark(key, path=path)
    entries = []
    for entry in published_entries(key, path=path):
        values: dict[str, dict[str, float | None]] = {}
        for column, percent in entry.values.items():
            family, metric = LOCALISATION_COLUMNS[column]
            values.setdefault(family, {})[metric] = (
                None if percent is None else percent / PUBLISHED_DIVISOR
            )
        entries.append(
            {
                "method": entry.method,
                "label": entry_label({"method": entry.method, "setting": entry.setting}),
                "setting": entry.setting,
                "status": entry.status,
                "citation": entry.citation,
                "features": entry.features,
                "test_set": entry.test_set,
                "comparable": entry.comparable,
                "percent": entry.values,
                "values": values,
            }
        )
    return {
        "benchmark": key,
        "name": benchmark.name,
        "test_set": benchmark.test_set,
        "scale": f"published percent / {PUBLISHED_DIVISOR:g} (fractions, as our rows)",
        "entries": entries,
    }


def _published_cell(entry: dict[str, Any], family: str, metric: str) -> str:
    """A published number on our scale, all its digits; ``n/a`` where the benchmark has the
    column but the number was not found, ``–`` where the source does not report the metric."""
    family_values = entry["values"].get(family, {})
    if metric not in family_values:  # not a column of the benchmark
        return NOT_REPORTED
    value = family_values[metric]
    if value is not None:
        return f"{value:.4f}"
    return "n/a" if entry["status"] == "not found" else NOT_REPORTED


def published_markdown(published: dict[str, Any] | None) -> list[str]:
    """The "Published" block's lines: the rows on our test set, those on another one apart,
    their sources; one line when the data set has no published numbers."""
    if published is None:
        return ["No published numbers for this data set.", ""]
    sources = list(dict.fromkeys(entry["citation"] for entry in published["entries"]))
    header = " | ".join(_markdown(title) for _, _, title in FIELD_COLUMNS)
    table_head = [
        f"| Published | Status | {header} | Encoders | Source |",
        "|---" * (len(FIELD_COLUMNS) + 4) + "|",
    ]

    def row(entry: dict[str, Any]) -> str:
        cells = " | ".join(_published_cell(entry, f, m) for f, m, _ in FIELD_COLUMNS)
        return (
            f"| {_markdown(entry['label'])} | {entry['status']} | {cells} "
            f"| {_markdown(entry['features'] or 'not stated')} "
            f"| [{sources.index(entry['citation']) + 1}] |"
        )

    same = [entry for entry in published["entries"] if entry["comparable"]]
    other = [entry for entry in published["entries"] if not entry["comparable"]]
    lines = [
        f"## Published: {published['name']}",
        "",
        f"Test set: {published['test_set']}. Published percentages divided by "
        f"{PUBLISHED_DIVISOR:g}, to the scale of our rows (every published digit kept); `n/a`: "
        f"not found in the source, `{NOT_REPORTED}`: not reported by it. Published rows use "
        "the authors' own encoders, trained end to end (training set in parentheses) by "
        "their protocol, and their evaluation code at 224 x 224; ours train only a localiser on "
        "fixed, pre-extracted features (extraction.visual and extraction.audio, listed in "
        "spatial_set/report.json), scored by this pipeline's evaluators. A difference is one of "
        "whole systems, not of localisers.",
        "",
    ]
    lines += [*table_head, *map(row, same)] if same else ["No published row on this test set."]
    if other:
        lines += ["", "On another test set, not comparable with our rows:", "", *table_head]
        lines += [row(entry) for entry in other]
        lines += [""] + [f"- {entry['label']}: {entry['test_set']}." for entry in other]
    lines += ["", "Sources (pipeline/data/published_results.yaml):", ""]
    lines += [f"{n}. {citation}" for n, citation in enumerate(sources, start=1)]
    return [*lines, ""]


def markdown_table(
    runs: Sequence[dict[str, Any]], title: str, published: dict[str, Any] | None = None
) -> str:
    """The Markdown report: counts, the table, the verdict, the published rows
    (:func:`published_rows`; None: the data set has none) and the protocol."""
    first, methods = runs[0], aggregate(runs)
    header = " | ".join(_markdown(name) for _, _, name in COLUMNS)
    lines = [
        f"# Visual sound localisation: {title}",
        "",
        f"Split `{first['split']}`: {first['num_frames']} evaluated frames (grid frames with a "
        f"visible sounding object) and {first['num_negatives']} negatives (no visible sounding "
        f"object) of {first['num_snippets']} snippets; "
        f"{first['num_frames_with_silent_distractor']} evaluated frames also show a silent "
        "distractor.",
        "",
        f"| Method | Seeds | {header} | Parameters | Throughput (frames/s) | Train CPU (s) |",
        "|---" * (len(COLUMNS) + 5) + "|",
    ]
    for name, stats in methods.items():
        cells = " | ".join(_cell(stats, family, metric) for family, metric, _ in COLUMNS)
        lines.append(
            f"| {spatial_display_name(name, stats['method'])} | {len(stats['seeds'])} | {cells} "
            f"| {stats['num_parameters']:,} | {stats['mean']['throughput_frames_per_s']:,.0f} "
            f"| {stats['mean']['train_cpu_seconds']:.1f} |"
        )
    oracle = first["grid_oracle"]
    oracle_cells = " | ".join(
        "n/a" if oracle[family][metric] is None else f"{oracle[family][metric]:.3f}"
        for family, metric, _ in COLUMNS
    )
    lines.append(f"| Grid oracle (GT coverage per cell) | - | {oracle_cells} | - | - | - |")
    lines += ["", verdict(methods), "", *published_markdown(published)]
    lines += [
        "The field's metrics, each as its authors' evaluator computes it, but at the frame size "
        "rather than 224 x 224. EZ-VSL: the min-max normalised heatmap at or above its median is "
        "the prediction (half the frame: cIoU >= 0.5 needs a ground truth covering at least a "
        "quarter of it); CIoU is the fraction of frames with cIoU >= 0.5, AUC the trapezoid "
        "area under that fraction over thresholds 0, 0.05, ..., 1. SLAVC: confidence = mean of "
        "the top quarter of (cosine + 1) / 2; AP and max-F1 count the negatives as false "
        "positives when confident; its Precision is EZ-VSL's CIoU by definition. AVSBench: mIoU "
        "of sigmoid(cosine) > 0.5 over all frames (a negative scores the fraction predicted "
        "background), F-score (beta^2 = 0.3) the max over 255 thresholds of the mean over the "
        "evaluated frames. Ours: cIoU@|GT| keeps the |GT| highest pixels; pointing: the "
        "heatmap's maximum lies on the ground truth; peak on silent (lower is better): on frames "
        "with a silent distractor, the maximum lies on it instead. The baseline comparison "
        "calls a difference of the seed means within noise when Welch's t-test gives p >= 0.05. "
        "Throughput: heatmaps at frame resolution per second on CPU with "
        f"{first['torch_threads']} thread(s), from stored features; train CPU: process time. "
        "The grid oracle scores each grid cell by 2 x the fraction of it inside the ground "
        "truth - 1: the ceiling of any heatmap computed on the grid.",
        "",
    ]
    return "\n".join(lines)


def write_table(
    run_dirs: Sequence[str | Path],
    out_path: str | Path,
    json_path: str | Path,
    title: str,
    published_key: str | None = None,
    published_path: str | Path = PUBLISHED_PATH,
) -> dict[str, dict[str, Any]]:
    """Write the Markdown table and the merged metrics JSON; return the per-method stats.

    Args:
        run_dirs: run folders, each with metrics.json and train_summary.json.
        out_path: table.md to write.
        json_path: merged metrics JSON to write (``published``: :func:`published_rows` or None).
        title: data set name, in the heading.
        published_key: a localisation benchmark of the published-results file; None: no
            published numbers (the synthetic data).
        published_path: the published-results YAML.
    """
    published = None if published_key is None else published_rows(published_key, published_path)
    runs = [load_run(run_dir) for run_dir in run_dirs]
    if not runs:
        raise ValueError("the spatial table needs at least one run folder")
    for key in ("split", "num_frames", "num_negatives"):
        if len({run[key] for run in runs}) > 1:
            raise ValueError(f"the runs differ in {key}; evaluate them on the same split")
    methods = aggregate(runs)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(markdown_table(runs, title, published))
    merged = {
        "verdict": verdict(methods),
        "split": runs[0]["split"],
        "num_frames": runs[0]["num_frames"],
        "num_negatives": runs[0]["num_negatives"],
        "num_frames_with_silent_distractor": runs[0]["num_frames_with_silent_distractor"],
        "methods": methods,
        "versus_baseline": versus_baseline(methods),
        "published": published,
        "runs": runs,
    }
    Path(json_path).write_text(json.dumps(_without_nan(merged), indent=1))
    return methods


def _without_nan(value: Any) -> Any:
    """A copy with NaN (no frame to compute a value on) replaced by None, for strict JSON."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


@user_errors()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run folders")
    parser.add_argument("--out", required=True, help="table.md to write")
    parser.add_argument("--json", required=True, help="merged metrics JSON to write")
    parser.add_argument("--title", default="synthetic benchmark", help="data set name")
    parser.add_argument(
        "--published",
        metavar="KEY",
        help="localisation benchmark of the published results (flickr_soundnet, vggss, ...)",
    )
    parser.add_argument(
        "--published-results", default=str(PUBLISHED_PATH), help="published results YAML"
    )
    args = parser.parse_args(argv)
    methods = write_table(
        args.runs, args.out, args.json, args.title, args.published, args.published_results
    )
    print(verdict(methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
