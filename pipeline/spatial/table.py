"""The sound-localisation table: every method's metrics side by side, as Markdown and JSON.

Runs of the same method (one per training seed) are averaged: the table shows mean and standard
deviation over seeds, because weakly supervised localisers vary a lot from seed to seed.

Usage: ``python -m pipeline.spatial.table --runs results/demo/spatial/m2vsl/seed0 ...
--out results/demo/spatial/table.md --json results/demo/spatial/metrics.json``; each run folder
holds ``metrics.json`` (:mod:`pipeline.spatial.evaluate`) and ``train_summary.json``
(:mod:`pipeline.spatial.train`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import user_errors
from pipeline.display_names import spatial_display_name
from pipeline.io import read_json

HEADLINE = (  # (key, column title); higher is better for all of them
    ("ciou_ap50", "CIoU (AP50)"),
    ("ciou_auc", "AUC"),
    ("miou", "mIoU"),
    ("fscore", "F-score"),
)
COLUMNS = (  # (key, column title) of the per-method statistics shown
    ("ciou_ap50", "CIoU (AP50)"),
    ("ciou_auc", "AUC"),
    ("ciou_mean", "mean cIoU"),
    ("miou", "mIoU"),
    ("fscore", "F-score"),
    ("pointing_accuracy", "Pointing"),
    ("peak_on_silent_rate", "Peak on silent"),
)


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


def run_values(run: dict[str, Any]) -> dict[str, float]:
    """The numbers of one run that the table aggregates."""
    silent = run.get("with_silent_distractor")
    values = {key: run["overall"][key] for key, _ in COLUMNS if key != "peak_on_silent_rate"}
    values["peak_on_silent_rate"] = np.nan if silent is None else silent["peak_on_silent_rate"]
    values["throughput_frames_per_s"] = run["throughput_frames_per_s"]
    values["train_cpu_seconds"] = run["train_cpu_seconds"]
    return values


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per run name (in order of appearance): method, seeds, mean and sample std of every
    value over the seeds."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        methods.setdefault(run["name"], []).append(run)
    result = {}
    for name, method_runs in methods.items():
        kinds = {run["method"] for run in method_runs}
        if len(kinds) > 1:
            raise ValueError(f"run {name} mixes methods {sorted(kinds)}; name each run once")
        values = [run_values(run) for run in method_runs]
        keys = list(values[0])
        stacked = {key: np.array([v[key] for v in values], dtype=float) for key in keys}
        result[name] = {
            "method": method_runs[0]["method"],
            "seeds": [run["seed"] for run in method_runs],
            "num_parameters": method_runs[0]["num_parameters"],
            "mean": {key: float(np.mean(x)) for key, x in stacked.items()},
            "std": {
                key: float(np.std(x, ddof=1)) if len(x) > 1 else 0.0 for key, x in stacked.items()
            },
            "runs": [run["run"] for run in method_runs],
        }
    return result


def verdict(methods: dict[str, dict[str, Any]]) -> str:
    """Which run wins on the headline metrics, with the numbers: each localiser against the
    first similarity-map baseline run, or the best CIoU when there is no pair to compare."""
    baselines = [name for name, stats in methods.items() if stats["method"] == "similarity"]
    others = [name for name, stats in methods.items() if stats["method"] != "similarity"]
    if not baselines or not others:
        best = max(methods, key=lambda name: methods[name]["mean"]["ciou_ap50"])
        return (
            f"{spatial_display_name(best, methods[best]['method'])} has the best CIoU (AP50), "
            f"{methods[best]['mean']['ciou_ap50']:.3f}."
        )
    base_name = baselines[0]
    return " ".join(_versus(name, methods[name], base_name, methods[base_name]) for name in others)


def _versus(name: str, ours: dict[str, Any], base_name: str, base: dict[str, Any]) -> str:
    """One sentence: run ``name`` against the baseline on each headline metric."""
    label = spatial_display_name(name, ours["method"])
    base_label = (
        "the similarity-map baseline"
        if base_name == "similarity"
        else f"the similarity-map baseline ({base_name})"
    )
    wins = [key for key, _ in HEADLINE if ours["mean"][key] > base["mean"][key]]
    numbers = "; ".join(
        f"{title} {ours['mean'][key]:.3f} ± {ours['std'][key]:.3f} vs "
        f"{base['mean'][key]:.3f} ± {base['std'][key]:.3f}"
        for key, title in HEADLINE
    )
    if len(wins) == len(HEADLINE):
        lead = f"{label} beats {base_label} on every headline metric"
    elif not wins:
        lead = f"{label} does not beat {base_label} on any headline metric"
    else:
        titles = ", ".join(title for key, title in HEADLINE if key in wins)
        lead = f"{label} beats {base_label} on {titles} only"
    seeds = f"{len(ours['seeds'])} and {len(base['seeds'])} seeds"
    gap = ours["mean"]["ciou_ap50"] - base["mean"]["ciou_ap50"]
    spread = max(ours["std"]["ciou_ap50"], base["std"]["ciou_ap50"])
    firmness = (
        f" The CIoU gap ({gap:+.3f}) is within one seed's standard deviation ({spread:.3f}):"
        " more seeds are needed to rank the two firmly."
        if abs(gap) <= spread
        else ""
    )
    return f"{lead} (mean ± std over {seeds}, {label} first: {numbers}).{firmness}"


def _cell(stats: dict[str, Any], key: str, digits: int = 3) -> str:
    mean, std = stats["mean"][key], stats["std"][key]
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(stats["seeds"]) > 1 else f"{mean:.3f}"


def markdown_table(runs: Sequence[dict[str, Any]], title: str) -> str:
    """The Markdown report: counts, the table, the verdict and the protocol."""
    first, methods = runs[0], aggregate(runs)
    header = " | ".join(name for _, name in COLUMNS)
    lines = [
        f"# Visual sound localisation: {title}",
        "",
        f"Split `{first['split']}`: {first['num_frames']} evaluated frames (grid frames with at "
        f"least one sounding object) of {first['num_snippets']} snippets; "
        f"{first['num_frames_with_silent_distractor']} of them also show a silent distractor.",
        "",
        f"| Method | Seeds | {header} | Parameters | Throughput (frames/s) | Train CPU (s) |",
        "|---" * (len(COLUMNS) + 5) + "|",
    ]
    for name, stats in methods.items():
        cells = " | ".join(_cell(stats, key) for key, _ in COLUMNS)
        lines.append(
            f"| {spatial_display_name(name, stats['method'])} | {len(stats['seeds'])} | {cells} "
            f"| {stats['num_parameters']:,} | {stats['mean']['throughput_frames_per_s']:,.0f} "
            f"| {stats['mean']['train_cpu_seconds']:.1f} |"
        )
    oracle = first["grid_oracle"]
    oracle_cells = " | ".join(
        "n/a" if key == "peak_on_silent_rate" else f"{oracle[key]:.3f}" for key, _ in COLUMNS
    )
    lines.append(f"| Grid oracle (GT coverage per cell) | - | {oracle_cells} | - | - | - |")
    lines += [
        "",
        verdict(methods),
        "",
        "cIoU uses the adaptive threshold (the |GT| highest pixels); CIoU (AP50) is the fraction "
        "of frames with cIoU >= 0.5 and AUC the area under that fraction over thresholds 0..1 "
        "(Chen et al., CVPR 2021). mIoU and F-score (beta^2 = 0.3, AVSBench) binarise the "
        "min-max normalised heatmap at 0.5. Pointing: the heatmap's maximum lies in a sounding "
        "box; peak on silent: on frames with a silent distractor, the maximum lies on a silent "
        "object instead. Throughput: heatmaps at frame resolution per second on CPU with "
        f"{first['torch_threads']} thread(s), from stored features; train CPU: process time. "
        "The grid oracle scores each grid cell by the fraction of it inside the ground truth: "
        "the ceiling of any heatmap computed on the grid.",
        "",
    ]
    return "\n".join(lines)


def write_table(
    run_dirs: Sequence[str | Path], out_path: str | Path, json_path: str | Path, title: str
) -> dict[str, dict[str, Any]]:
    """Write the Markdown table and the merged metrics JSON; return the per-method stats."""
    runs = [load_run(run_dir) for run_dir in run_dirs]
    if not runs:
        raise ValueError("the spatial table needs at least one run folder")
    for key in ("split", "num_frames"):
        if len({run[key] for run in runs}) > 1:
            raise ValueError(f"the runs differ in {key}; evaluate them on the same split")
    methods = aggregate(runs)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(markdown_table(runs, title))
    merged = {
        "verdict": verdict(methods),
        "split": runs[0]["split"],
        "num_frames": runs[0]["num_frames"],
        "num_frames_with_silent_distractor": runs[0]["num_frames_with_silent_distractor"],
        "methods": methods,
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
    args = parser.parse_args(argv)
    methods = write_table(args.runs, args.out, args.json, args.title)
    print(verdict(methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
