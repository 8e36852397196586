"""One report comparing the methods of every task on a data set, and saying who wins what.

Three tables, each on the test split, each with the parameters and the training throughput of
every row:

- temporal detection: the detection runs (``results/{dataset}/runs/*``: audio-only,
  visual-only, early-fusion ActionFormer, MRAV-FF, LoCo by default), mAP at tIoU 0.5 to 0.9
  and the average over all configured thresholds, as mean ± std over the training seeds
  (:mod:`pipeline.detection.seeds`), the average with its 95 % interval over test videos;
- segment classification (the AVE task): ``segments/metrics.json`` of
  :mod:`pipeline.segments.table`, segment accuracy;
- spatial sound localisation: ``spatial/metrics.json`` of :mod:`pipeline.spatial.table`, the
  field's metrics under their evaluators' names (CIoU and AUC of EZ-VSL, AP and max-F1 of
  SLAVC, mIoU and F-score of AVSBench) as mean ± std over the training seeds.

The first section lists, per task and metric, the winning row and its margin over the next. A
detection run is called the winner only when the 95 % interval of its difference to every other
run excludes 0, the interval counting both the test videos (the same bootstrap resamples in both
runs' ``metrics.json``, paired: :mod:`pipeline.detection.bootstrap`) and the training seeds
(:func:`pipeline.detection.seeds.difference_interval`); otherwise the line says "tie within
noise" and gives the figures. The spatial section keeps its Welch's t-test verdict.
Tasks whose inputs are not given are left out (a data set without boxes has no spatial table).

Usage: ``python -m pipeline.comparison --title demo --runs results/demo/runs/fusion ...
--segments results/demo/segments/metrics.json --spatial results/demo/spatial/metrics.json
--out results/demo/comparison.md --json results/demo/comparison.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models import check_detector_config
from pipeline.cli import user_errors
from pipeline.detection.bootstrap import interval_text, resampled_values, unpaired_reason
from pipeline.detection.report import RunRecord, load_run
from pipeline.detection.seeds import difference_interval, spread_text
from pipeline.display_names import SPATIAL_HEADLINE, spatial_display_name
from pipeline.io import read_json

DETECTION_THRESHOLDS = ("0.5", "0.6", "0.7", "0.8", "0.9")
SPATIAL_METRICS = SPATIAL_HEADLINE  # (family, metric, title) of pipeline.spatial.table


def describe_detector(model: Mapping[str, Any] | None) -> str:
    """A short name of a detection run's model config (``name``, modalities, neck), read from
    the config as :func:`models.check_detector_config` resolves it, so an omitted key takes
    the model's own default."""
    if not model:
        return "–"
    model = check_detector_config(model)
    modalities = list(model["modalities"])
    if model["name"] == "loco":
        lcc = "no LCC" if model["lcc_weight"] == 0 else "LCC"
        attention = model["cross_attention"]
        attention = "no" if attention == "none" else attention
        return f"LoCo ({attention} cross-attention, {lcc})"
    if model["name"] != "actionformer":
        return model["name"]
    if model["neck"]["name"] == "mravff":
        neck = model["neck"]
        if not neck["gate"]:
            gate = "no gate"
        elif (neck["gate_shape"], neck["gate_form"]) == ("scalar", "convex"):
            gate = "gated"  # the paper's gate (models.necks_mravff)
        else:
            gate = f"{neck['gate_shape']} gate, {neck['gate_form']}"
        return f"ActionFormer + MRAV-FF ({gate})"
    if modalities == ["audio"]:
        return "ActionFormer, audio only"
    if modalities == ["visual"]:
        return "ActionFormer, visual only"
    return f"ActionFormer, early fusion ({' + '.join(modalities)})"


def _best(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None and not math.isnan(value)]
    return max(present) if present else None


def _winner(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The winning row on ``key``, its value, the runner-up and the margin (None if no value)."""
    ranked = sorted(
        (row for row in rows if row.get(key) is not None and not math.isnan(row[key])),
        key=lambda row: -row[key],
    )
    if not ranked:
        return None
    best = ranked[0]
    tied = [row["name"] for row in ranked if row[key] == best[key]]
    runner_up = next((row for row in ranked if row[key] < best[key]), None)
    return {
        "metric": key,
        "winners": tied,
        "value": best[key],
        "runner_up": None if runner_up is None else runner_up["name"],
        "runner_up_value": None if runner_up is None else runner_up[key],
    }


def detection_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per detection run: mAP per threshold, the average, size and throughput."""
    rows = []
    for run in runs:
        summary = run.summary or {}
        row = {
            "name": run.name,
            "method": describe_detector(summary.get("model")),
            "seeds": len(run.metrics.get("seeds", [None])),
            "average": run.metrics["average_mAP"],
            "average_std": run.metrics.get("average_mAP_std"),
            "average_ci95": run.metrics.get("average_mAP_ci95"),
            "num_parameters": summary.get("num_parameters"),
            "train_per_s": summary.get("train_snippets_per_s"),
            "inference_per_s": run.metrics.get("inference", {}).get("snippets_per_s"),
        }
        for key in DETECTION_THRESHOLDS:
            row[key] = run.metrics["mAP"].get(key)
            row[f"{key}_std"] = run.metrics.get("mAP_std", {}).get(key)
        rows.append(row)
    return rows


def segment_rows(segments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per segment classifier of :mod:`pipeline.segments.table`'s JSON."""
    return [
        {
            "name": row["name"],
            "accuracy": row["test_accuracy"],
            "num_parameters": row["classifier_parameters"] + row["encoder_parameters"],
            "train_per_s": row["train_segments_per_s"],
        }
        for row in segments["rows"]
    ]


def spatial_rows(spatial: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per localiser of :mod:`pipeline.spatial.table`'s JSON (means over seeds), its
    metrics under ``"family.metric"`` keys (``"ezvsl.ciou"``)."""
    rows = []
    for name, stats in spatial["methods"].items():
        row = {
            "name": spatial_display_name(name, stats["method"]),
            "seeds": len(stats["seeds"]),
            "num_parameters": stats["num_parameters"],
            "train_cpu_seconds": stats["mean"]["train_cpu_seconds"],
            "inference_per_s": stats["mean"]["throughput_frames_per_s"],
        }
        for family, metric, _ in SPATIAL_METRICS:
            row[f"{family}.{metric}"] = stats["mean"][family][metric]
            row[f"{family}.{metric}_std"] = stats["std"][family][metric]
        rows.append(row)
    return rows


def _cell(value: float | None, best: float | None, scale: float = 100.0, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "–"
    text = f"{scale * value:.{digits}f}"
    return f"**{text}**" if best is not None and round(value, 6) == round(best, 6) else text


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def detection_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = [*DETECTION_THRESHOLDS, "average"]
    best = {key: _best([row[key] for row in rows]) for key in columns}
    lines = [
        "| Run | Method | Seeds | "
        + " | ".join(f"mAP@{key}" for key in DETECTION_THRESHOLDS)
        + " | average [95 % interval] | Parameters | Training (snippets/s) "
        "| Inference (snippets/s) |",
        "|---|---|" + "---:|" * (len(columns) + 4),
    ]
    for row in rows:
        cells = " | ".join(
            _cell(row[key], best[key]) + spread_text(row[f"{key}_std"]) for key in columns
        )
        lines.append(
            f"| {row['name']} | {row['method']} | {row['seeds']} | {cells}"
            f"{interval_text(row['average_ci95'])} | {_count(row['num_parameters'])} "
            f"| {_count(row['train_per_s'])} | {_count(row['inference_per_s'])} |"
        )
    return lines


def segment_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    best = _best([row["accuracy"] for row in rows])
    lines = [
        "| Method | Test accuracy (%) | Parameters (encoders + classifier) "
        "| Classifier training (segments/s) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {_cell(row['accuracy'], best, digits=1)} "
            f"| {_count(row['num_parameters'])} | {_count(row['train_per_s'])} |"
        )
    return lines


def spatial_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    keys = [f"{family}.{metric}" for family, metric, _ in SPATIAL_METRICS]
    best = {key: _best([row[key] for row in rows]) for key in keys}
    lines = [
        "| Method | Seeds | "
        + " | ".join(title for _, _, title in SPATIAL_METRICS)
        + " | Parameters | Training CPU (s) | Inference (frames/s) |",
        "|---|---:|" + "---:|" * (len(SPATIAL_METRICS) + 3),
    ]
    for row in rows:
        cells = " | ".join(
            f"{_cell(row[key], best[key], scale=1.0, digits=3)} ± {row[f'{key}_std']:.3f}"
            for key in keys
        )
        lines.append(
            f"| {row['name']} | {row['seeds']} | {cells} | {_count(row['num_parameters'])} "
            f"| {row['train_cpu_seconds']:.1f} | {_count(row['inference_per_s'])} |"
        )
    return lines


def win_sentence(task: str, title: str, win: dict[str, Any] | None, unit: str, scale: float) -> str:
    """``- task, title: **winner** value, margin over the runner-up``."""
    if win is None:
        return f"- {task}, {title}: no run has a value."
    digits = 2 if scale == 100 else 3
    value = f"{scale * win['value']:.{digits}f}{unit}"
    names = " and ".join(f"**{name}**" for name in win["winners"])
    if win["runner_up"] is None:
        rest = " (no other run to compare)" if len(win["winners"]) == 1 else " (tie)"
        return f"- {task}, {title}: {names} {value}{rest}."
    margin = scale * (win["value"] - win["runner_up_value"])
    return (
        f"- {task}, {title}: {names} {value}, {margin:.{digits}f} above "
        f"{win['runner_up']} ({scale * win['runner_up_value']:.{digits}f}{unit})."
    )


def _detection_value(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics["average_mAP"] if key == "average" else metrics["mAP"].get(key)
    return None if value is None or math.isnan(value) else value


def detection_noise(
    win: dict[str, Any] | None, metrics_by_run: Mapping[str, Mapping[str, Any]], key: str
) -> dict[str, Any] | None:
    """The winner's 95 % interval against every other run on ``key``, over test videos
    (paired) and seeds (:func:`pipeline.detection.seeds.difference_interval`).

    Returns ``{"against": [{"run", "value", "difference", "ci95", "tie"}]}`` (best first), or
    ``{"unknown": reason}`` when a run cannot be paired; None without a single winner.
    """
    if win is None or len(win["winners"]) != 1 or win["runner_up"] is None:
        return None
    best = metrics_by_run[win["winners"][0]]
    against = []
    for name, metrics in metrics_by_run.items():
        value = _detection_value(metrics, key)
        if name == win["winners"][0] or value is None:
            continue
        reason = unpaired_reason(best, metrics)
        resampled = (resampled_values(best, key), resampled_values(metrics, key))
        if reason is None and any(values is None for values in resampled):
            reason = f"no bootstrap at tIoU {key}"
        if reason is not None:
            return {"unknown": f"{name}: {reason}"}
        low, high = difference_interval(best, metrics, key)
        against.append(
            {
                "run": name,
                "value": value,
                "difference": win["value"] - value,
                "ci95": [low, high],
                "tie": low <= 0,  # the interval is centred on a difference >= 0
            }
        )
    return {"against": sorted(against, key=lambda row: -row["value"])}


def detection_sentence(title: str, win: dict[str, Any] | None) -> str:
    """``win_sentence`` of a detection metric, with its noise: "**A** beats B by x [lo, hi]
    points" or "tie within noise: A x %, B y % (difference x [lo, hi])"."""
    noise = None if win is None else win.get("noise")
    task = "Temporal detection"
    if noise is None:
        return win_sentence(task, title, win, " %", 100)
    if "unknown" in noise:
        text = win_sentence(task, title, win, " %", 100)
        return f"{text[:-1]}; noise unknown ({noise['unknown']})."
    best = win["winners"][0]
    tied = [row for row in noise["against"] if row["tie"]]
    beaten = [row["run"] for row in noise["against"] if not row["tie"]]

    def interval(row: Mapping[str, Any]) -> str:
        low, high = row["ci95"]
        return f"{100 * row['difference']:.2f} [{100 * low:.2f}, {100 * high:.2f}]"

    if tied:
        figures = ", ".join(
            f"{row['run']} {100 * row['value']:.2f} % (difference {interval(row)})" for row in tied
        )
        rest = f"; {best} beats {', '.join(beaten)} beyond the noise" if beaten else ""
        return (
            f"- {task}, {title}: tie within noise: {best} {100 * win['value']:.2f} %, "
            f"{figures}{rest}."
        )
    runner_up = noise["against"][0]
    rest = f"; it beats {', '.join(beaten[1:])} beyond the noise too" if beaten[1:] else ""
    return (
        f"- {task}, {title}: **{best}** beats {runner_up['run']} by {interval(runner_up)} points "
        f"({100 * win['value']:.2f} % vs {100 * runner_up['value']:.2f} %){rest}."
    )


def build_comparison(
    title: str,
    run_dirs: Sequence[str | Path],
    segments: Mapping[str, Any] | None = None,
    spatial: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The Markdown report and its numbers as one JSON-ready dict."""
    if not run_dirs and segments is None and spatial is None:
        raise ValueError("the comparison needs detection runs, segment or spatial metrics")
    tasks: dict[str, Any] = {}
    wins: list[str] = []
    sections: list[str] = []
    if run_dirs:
        runs = [load_run(folder) for folder in run_dirs]
        rows = detection_rows(runs)
        results = {key: _winner(rows, key) for key in ("average", *DETECTION_THRESHOLDS)}
        metrics_by_run = {run.name: run.metrics for run in runs}
        for key, win in results.items():
            if (noise := detection_noise(win, metrics_by_run, key)) is not None:
                win["noise"] = noise
        tasks["detection"] = {"rows": rows, "winners": results}
        wins += [
            detection_sentence("average mAP", results["average"]),
            *(detection_sentence(f"mAP@{key}", results[key]) for key in DETECTION_THRESHOLDS),
        ]
        sections += [
            "## Temporal detection",
            "",
            "mAP (%) on the test split at tIoU 0.5 to 0.9; `average` is the mean over all "
            "configured thresholds, with its 95 % interval over test videos. Each figure is the "
            "mean ± standard deviation over the run's training seeds. Throughput on the device "
            "and threads of each job. A winner is called only when the 95 % interval of its "
            "difference to each other run excludes 0 (in points, in brackets): its spread adds "
            "the test videos' (the same bootstrap resamples for both runs, paired) and the "
            "seeds'.",
            "",
            *detection_table(rows),
            "",
        ]
    if segments is not None:
        rows = segment_rows(segments)
        result = _winner(rows, "accuracy")
        tasks["segments"] = {
            "rows": rows,
            "winners": {"accuracy": result},
            "majority_baseline": segments["majority_baseline"],
        }
        baseline = segments["majority_baseline"]["test_accuracy"]
        wins.append(
            win_sentence("Segment classification", "test accuracy", result, " %", 100)[:-1]
            + f"; majority class {100 * baseline:.2f} %."
        )
        sections += [
            "## Segment classification (AVE task)",
            "",
            f"Accuracy over all {segments['num_segments']['test']} one-second test segments "
            f"({segments['num_classes']} classes + background); the majority class scores "
            f"{100 * baseline:.1f} %.",
            "",
            *segment_table(rows),
            "",
        ]
    if spatial is not None:
        rows = spatial_rows(spatial)
        titles = {f"{family}.{metric}": title for family, metric, title in SPATIAL_METRICS}
        results = {key: _winner(rows, key) for key in titles}
        tasks["spatial"] = {"rows": rows, "winners": results, "verdict": spatial["verdict"]}
        wins += [
            win_sentence("Spatial localisation", title, results[key], "", 1)
            for key, title in titles.items()
        ]
        sections += [
            "## Spatial sound localisation",
            "",
            f"{spatial['num_frames']} test frames with a sounding object; mean ± std over the "
            "training seeds. " + spatial["verdict"],
            "",
            *spatial_table(rows),
            "",
        ]
    text = "\n".join(
        [
            f"# Method comparison: {title}",
            "",
            "Every number is on the test split; model selection used the validation split "
            "only. Best per column in bold.",
            "",
            "## Who wins what",
            "",
            *wins,
            "",
            *sections,
        ]
    )
    return text, {"title": title, "tasks": tasks}


def _optional_json(path: str | None, what: str) -> dict[str, Any] | None:
    return None if path is None else read_json(path, what)


@user_errors(KeyError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", required=True, help="data set name for the heading")
    parser.add_argument("--runs", nargs="*", default=[], help="detection run folders")
    parser.add_argument("--segments", help="metrics.json of pipeline.segments.table")
    parser.add_argument("--spatial", help="metrics.json of pipeline.spatial.table")
    parser.add_argument("--out", required=True, help="Markdown file to write")
    parser.add_argument("--json", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    text, numbers = build_comparison(
        args.title,
        args.runs,
        _optional_json(args.segments, "segment metrics"),
        _optional_json(args.spatial, "spatial metrics"),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.json).write_text(json.dumps(numbers, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
