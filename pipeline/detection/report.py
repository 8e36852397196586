"""Markdown report comparing detection runs: mAP tables, throughput, plots, extraction summary.

A run folder holds ``metrics.json`` (:mod:`pipeline.detection.evaluate` for one training, or
:mod:`pipeline.detection.seeds` over the run's seeds; required), ``train_summary.json``
(parameters, training throughput, selected epochs) and the PNG files listed in
``metrics.json["plots"]``. Numbers are shown in percent with two decimals, mAP as the mean ± the
standard deviation over seeds when there are several, with its 95 % interval over test videos
where ``metrics.json`` has one (``42.05 ± 1.20 [38.1, 45.9]``, :mod:`pipeline.detection.bootstrap`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cli import user_errors
from pipeline.detection.bootstrap import interval_text
from pipeline.detection.seeds import difference_interval, spread_text


@dataclass(frozen=True)
class RunRecord:
    """What the report shows of one run."""

    name: str  # run name (train_summary.json) or the folder name
    folder: Path  # the run folder
    metrics: dict[str, Any]  # metrics.json
    summary: dict[str, Any] | None  # train_summary.json, when present


def load_run(folder: str | Path) -> RunRecord:
    """Read a run folder; a missing ``metrics.json`` raises naming it."""
    folder = Path(folder)
    metrics_path = folder / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(
            f"{metrics_path} does not exist; run pipeline.detection.evaluate first"
        )
    metrics = json.loads(metrics_path.read_text())
    summary_path = folder / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    name = summary["name"] if summary else folder.name
    return RunRecord(name=name, folder=folder, metrics=metrics, summary=summary)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _count(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.0f}{unit}"


def _interval(metrics: dict[str, Any], key: str) -> str:
    """`` ± std`` over seeds (with several) and `` [lo, hi]`` of mAP at threshold ``key`` or of
    the ``"average"``; "" without either."""
    if key == "average":
        std, interval = metrics.get("average_mAP_std"), metrics.get("average_mAP_ci95")
    else:
        std = metrics.get("mAP_std", {}).get(key)
        interval = metrics.get("mAP_ci95", {}).get(key)
    return spread_text(std) + interval_text(interval)


def comparison_table(runs: Sequence[RunRecord]) -> str:
    """Rows = runs, columns = mAP at each threshold and the average; best per column in bold."""
    thresholds = sorted({key for run in runs for key in run.metrics["mAP"]}, key=float)
    columns = [*(f"mAP@{key}" for key in thresholds), "average"]
    values = [
        [*(run.metrics["mAP"].get(key) for key in thresholds), run.metrics["average_mAP"]]
        for run in runs
    ]
    best = [
        max((row[col] for row in values if row[col] is not None), default=None)
        for col in range(len(columns))
    ]
    lines = ["| run | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for run, row in zip(runs, values, strict=True):
        cells = []
        for col, value in enumerate(row):
            text = _percent(value)
            same = value is not None and round(100 * value, 2) == round(100 * best[col], 2)
            key = thresholds[col] if col < len(thresholds) else "average"
            cells.append((f"**{text}**" if same else text) + _interval(run.metrics, key))
        lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_run_sentence(runs: Sequence[RunRecord]) -> str:
    """Which run has the best average mAP, and by how many points over the next one."""
    ranked = sorted(runs, key=lambda run: -run.metrics["average_mAP"])
    best, score = ranked[0], ranked[0].metrics["average_mAP"]
    if len(ranked) == 1:
        return f"Only one run: **{best.name}**, average mAP {_percent(score)} %."
    tied = [run.name for run in ranked if _percent(run.metrics["average_mAP"]) == _percent(score)]
    if len(tied) > 1:
        names = ", ".join(f"**{name}**" for name in tied)
        return f"Runs {names} tie for the best average mAP ({_percent(score)} %)."
    runner_up = ranked[1].metrics["average_mAP"]
    gap = 100 * (score - runner_up)
    relative = f", {gap / (100 * runner_up):+.0%} relative" if runner_up > 0 else ""
    sentence = (
        f"**{best.name}** has the best average mAP ({_percent(score)} %), {gap:.2f} points above "
        f"the next best run, {ranked[1].name} ({_percent(runner_up)} %{relative})"
    )
    interval = difference_interval(best.metrics, ranked[1].metrics, "average")  # None: unpaired
    if interval is None:
        return sentence + "."
    low, high = interval
    verdict = "a tie within noise" if low <= 0 <= high else "beyond the noise"
    return (
        f"{sentence}; 95 % interval of the difference over the same test-video resamples "
        f"and the seeds [{100 * low:.2f}, {100 * high:.2f}]: {verdict}."
    )


def run_section(run: RunRecord, report_dir: Path) -> str:
    """Per-run section: mAP table, parameters, throughput and links to the plots."""
    metrics, summary = run.metrics, run.summary or {}
    inference = metrics.get("inference", {})
    lines = [f"### {run.name}", ""]
    lines.append(
        f"- evaluated on {metrics.get('num_videos', '–')} {metrics.get('split', '')} videos, "
        f"{metrics.get('num_events', '–')} events, "
        f"{metrics.get('num_predictions', '–')} predictions"
    )
    lines.append(f"- parameters: {_count(summary.get('num_parameters'))}")
    lines.append(
        f"- training throughput: {_count(summary.get('train_snippets_per_s'), ' snippets/s')}"
        + (f" on {summary['device']}" if "device" in summary else "")
    )
    lines.append(
        f"- inference throughput: {_count(inference.get('snippets_per_s'), ' snippets/s')}"
        + (f" on {inference['device']}" if "device" in inference else "")
    )
    if "best_epoch" in summary:
        lines.append(
            f"- model selected at epoch {summary['best_epoch']} of {summary['epochs']} "
            f"(validation average mAP {_percent(summary['best_val_average_map'])} %)"
        )
    if "best_epochs" in summary:  # a run over seeds (pipeline.detection.seeds)
        epochs = ", ".join(
            f"{epoch} (seed {seed})" for seed, epoch in summary["best_epochs"].items()
        )
        lines.append(
            f"- models selected at epochs {epochs} of {summary['epochs']} "
            f"(mean validation average mAP {_percent(summary['best_val_average_map'])} %)"
        )
    per_seed = metrics.get("per_seed", {})
    if len(per_seed) > 1:
        lines.append(
            "- test average mAP per seed: "
            + ", ".join(f"{_percent(v['average_mAP'])} (seed {k})" for k, v in per_seed.items())
        )
    lines += ["", "| tIoU | mAP (%) | recall@1x (%) | recall@5x (%) |", "|---|---|---|---|"]
    for key, value in sorted(metrics["mAP"].items(), key=lambda item: float(item[0])):
        recall_1x, recall_5x = metrics.get("recall_1x", {}), metrics.get("recall_5x", {})
        lines.append(
            f"| {key} | {_percent(value)}{_interval(metrics, key)} "
            f"| {_percent(recall_1x.get(key))} | {_percent(recall_5x.get(key))} |"
        )
    average = f"**{_percent(metrics['average_mAP'])}**{_interval(metrics, 'average')}"
    lines.append(f"| **average** | {average} | | |")
    plots = [run.folder / path for path in metrics.get("plots", [])]
    if plots:
        links = [
            f"[{path.stem}]({Path(os.path.relpath(path, report_dir)).as_posix()})" for path in plots
        ]
        lines += ["", "Plots: " + ", ".join(links)]
    return "\n".join(lines)


def extraction_section(index_path: str | Path) -> str:
    """Videos extracted and failed, encoders and snippet grid, from ``index.json``."""
    index = json.loads(Path(index_path).read_text())
    encoders = index.get("encoders", {})
    names = ", ".join(
        f"{m}: {cfg.get('name', '?')} ({cfg.get('dim', '?')}-d)" for m, cfg in encoders.items()
    )
    lines = [
        f"- videos extracted: {len(index['videos'])}; failed: {len(index['failed'])}",
        f"- encoders ({index.get('encoder_set', '?')}): {names}",
        f"- snippet grid: window {index['window_s']} s, stride {index['stride_s']} s",
    ]
    for video_id, message in sorted(index["failed"].items())[:20]:
        lines.append(f"  - failed `{video_id}`: {message}")
    if len(index["failed"]) > 20:
        lines.append(f"  - ... and {len(index['failed']) - 20} more (see {index_path})")
    return "\n".join(lines)


def build_report(
    title: str,
    run_dirs: Sequence[str | Path],
    *,
    out_path: str | Path,
    index_path: str | Path | None = None,
) -> str:
    """Write the markdown report to ``out_path`` and return its text."""
    if not run_dirs:
        raise ValueError("the report needs at least one run folder (--runs)")
    out_path = Path(out_path)
    runs = [load_run(folder) for folder in run_dirs]
    splits = sorted({run.metrics.get("split", "?") for run in runs})
    parts = [
        f"# {title}",
        "",
        f"Detection runs evaluated on the **{', '.join(splits)}** split (mAP in %, "
        "best per column in bold; in brackets the 95 % interval of a bootstrap over test "
        "videos, where evaluated with one).",
        "",
        "## Comparison",
        "",
        comparison_table(runs),
        "",
        best_run_sentence(runs),
        "",
        "## Runs",
    ]
    for run in runs:
        parts += ["", run_section(run, out_path.parent)]
    if index_path is not None:
        parts += ["", "## Feature extraction", "", extraction_section(index_path)]
    text = "\n".join(parts) + "\n"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    return text


@user_errors(KeyError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", required=True, help="report title")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders (metrics.json)")
    parser.add_argument("--index", help="index.json of the features, for the extraction summary")
    parser.add_argument("--out", required=True, help="markdown file to write")
    args = parser.parse_args(argv)
    build_report(args.title, args.runs, out_path=args.out, index_path=args.index)
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
