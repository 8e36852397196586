"""Markdown tables of our runs next to published results, with the difference in points.

Published numbers live in ``pipeline/data/published_results.yaml``, each with its source (paper
title, arXiv id, DOI or URL, table or README) and a ``status``: ``verified`` numbers were read in
the source, ``derived`` ones computed from numbers stated there (the entry says how), ``not found``
ones are null and print as ``n/a``. :func:`load_published` refuses a file that breaks that rule (a
number without a source, a verified entry with a null). An entry may name the paper table it
belongs to (``group``) and what its row varies (``setting``, e.g. ``{modality: audio}``), so an
ablation row with several numbers is one entry per number; :func:`published_entries` lists them
for other modules.

Our numbers come from each run's ``metrics.json``: ``mAP`` per tIoU and ``average_mAP``
(:mod:`pipeline.evaluate`, fractions) or ``test_accuracy`` (AVE segment classifiers), printed in
percent. A benchmark's ``average`` column is the mean over its own ``average_over`` thresholds,
recomputed from our per-threshold mAP; when a run was not evaluated at all of them the cell is
``n/a``. A data set without published results (the synthetic one) gets a ``published`` row of
``n/a`` and columns from our runs' thresholds.

CLI: ``python -m pipeline.paper_tables --benchmark unav100 --runs results/X/runs/a ...
--out results/X/table.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.report import load_run

PUBLISHED_PATH = Path(__file__).parent / "data" / "published_results.yaml"
STATUSES = ("verified", "derived", "not found")


class PublishedResultsError(ValueError):
    """The published-results file breaks its rules; the message names the benchmark and entry."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the published-results file."""

    key: str  # key in the file, e.g. "unav100"
    name: str  # heading of the table
    metric: str  # "map" (tIoU columns + average) or "accuracy"
    columns: tuple[str, ...]  # e.g. ("0.5", ..., "average") or ("accuracy",)
    average_over: tuple[float, ...]  # thresholds the average column is the mean over
    reference: str | None  # entry our runs are compared with
    entries: tuple[dict[str, Any], ...]  # published rows, as in the file


@dataclass(frozen=True)
class PublishedEntry:
    """One published entry, as :func:`published_entries` gives it to other modules."""

    method: str  # e.g. "AV-BT + TACMA"
    group: str | None  # paper table the entry belongs to, e.g. "AV-BT Table 4"; None if not given
    setting: dict[str, Any]  # what the row varies, e.g. {"theta": 0.03}; empty if nothing
    values: dict[str, float | None]  # column -> percent, None where not found
    status: str  # one of STATUSES
    citation: str  # title, venue, arXiv id / DOI / URL and table, on one line

    @property
    def value(self) -> float | None:
        """The number of a one-column benchmark (``accuracy``)."""
        if len(self.values) != 1:
            raise ValueError(f"{self.method!r} has columns {list(self.values)}; read .values")
        return next(iter(self.values.values()))


def _check_entry(key: str, columns: Sequence[str], entry: Mapping[str, Any]) -> None:
    where = f"published results, benchmark {key!r}, entry {_label(entry)!r}"
    group, setting = entry.get("group"), entry.get("setting")
    if group is not None and not (isinstance(group, str) and group):
        raise PublishedResultsError(f"{where}: 'group' must be a non-empty string, not {group!r}")
    if setting is not None and not (
        isinstance(setting, Mapping)
        and all(isinstance(name, str) for name in setting)
        and all(isinstance(value, str | bool | int | float) for value in setting.values())
    ):
        raise PublishedResultsError(f"{where}: 'setting' must map names to plain values")
    values = entry.get("values", {})
    if sorted(values) != sorted(columns):
        raise PublishedResultsError(f"{where}: values {sorted(values)} != columns {columns}")
    status = entry.get("status")
    if status not in STATUSES:
        raise PublishedResultsError(f"{where}: status must be one of {STATUSES}, not {status!r}")
    source = entry.get("source") or {}
    if not source.get("title") or not any(source.get(k) for k in ("arxiv", "doi", "url")):
        raise PublishedResultsError(
            f"{where}: a source needs a title and an arXiv id or URL, or DOI"
        )
    numbers = [value for value in values.values() if value is not None]
    if status == "not found" and numbers:
        raise PublishedResultsError(f"{where}: status 'not found' but it holds numbers")
    if status != "not found" and len(numbers) != len(values):
        raise PublishedResultsError(f"{where}: {status} entries need every column filled")
    if status == "derived" and not entry.get("derivation"):
        raise PublishedResultsError(
            f"{where}: say how a derived number was computed ('derivation')"
        )
    if not entry.get("checked"):
        raise PublishedResultsError(f"{where}: say where the numbers were checked ('checked')")


def load_published(path: str | Path = PUBLISHED_PATH) -> dict[str, Benchmark]:
    """Read and check the published-results file."""
    content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    benchmarks = {}
    for key, spec in content["benchmarks"].items():
        if spec["metric"] not in ("map", "accuracy"):
            raise PublishedResultsError(f"{path}: benchmark {key!r} has metric {spec['metric']!r}")
        columns = tuple(str(column) for column in spec["columns"])
        for entry in spec["entries"]:
            _check_entry(key, columns, entry)
        methods = [entry["method"] for entry in spec["entries"]]
        if spec.get("reference") is not None and spec["reference"] not in methods:
            raise PublishedResultsError(f"{path}: {key!r} reference is not one of {methods}")
        if spec.get("reference") is not None and methods.count(spec["reference"]) > 1:
            raise PublishedResultsError(
                f"{path}: {key!r} reference {spec['reference']!r} names several entries; "
                "give the others another method name"
            )
        benchmarks[key] = Benchmark(
            key=key,
            name=spec["name"],
            metric=spec["metric"],
            columns=columns,
            average_over=tuple(float(t) for t in spec.get("average_over", ())),
            reference=spec.get("reference"),
            entries=tuple(spec["entries"]),
        )
    return benchmarks


def published_entries(
    benchmark: str, group: str | None = None, *, path: str | Path = PUBLISHED_PATH
) -> list[PublishedEntry]:
    """The published entries of ``benchmark`` (of one paper table if ``group``), in file order.

    Args:
        benchmark: a benchmark key of the published-results file, e.g. ``"ave"``.
        group: keep only the entries of this group, e.g. ``"AV-BT Table 4"``.
        path: the published-results YAML.
    """
    benchmarks = load_published(path)
    if benchmark not in benchmarks:
        raise PublishedResultsError(
            f"{path}: no benchmark {benchmark!r}; one of {list(benchmarks)}"
        )
    entries = benchmarks[benchmark].entries
    groups = list(dict.fromkeys(entry["group"] for entry in entries if entry.get("group")))
    if group is not None and group not in groups:
        raise PublishedResultsError(
            f"{path}: {benchmark!r} has no group {group!r}; one of {groups}"
        )
    return [
        PublishedEntry(
            method=entry["method"],
            group=entry.get("group"),
            setting=dict(entry.get("setting") or {}),
            values=dict(entry["values"]),
            status=entry["status"],
            citation=_citation(entry["source"]),
        )
        for entry in entries
        if group is None or entry.get("group") == group
    ]


def _identifier(source: Mapping[str, Any]) -> str:
    if source.get("arxiv"):
        return f"arXiv {source['arxiv']}"
    return f"doi {source['doi']}" if source.get("doi") else str(source["url"])


def _citation(source: Mapping[str, Any]) -> str:
    """'"Title", venue, arXiv id / DOI / URL, table' of a source."""
    venue = source.get("journal") or source.get("authors")
    parts = (f'"{source["title"]}"', venue, _identifier(source), source.get("table"))
    return ", ".join(str(part) for part in parts if part)


def _shown(value: Any) -> str:
    """A setting's value as the papers print it: booleans as ✓/✕, 0.030 as 0.03."""
    if isinstance(value, bool):
        return "✓" if value else "✕"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _label(entry: Mapping[str, Any]) -> str:
    """The method with its setting: ``AV-BT + MLP (modality=audio)``."""
    setting = ", ".join(f"{name}={_shown(v)}" for name, v in (entry.get("setting") or {}).items())
    return f"{entry.get('method')} ({setting})" if setting else str(entry.get("method"))


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


def _cell(value: float | None, reference: float | None = None) -> str:
    if value is None:
        return "n/a"
    if reference is None:
        return f"{value:.2f}"
    return f"{value:.2f} ({value - reference:+.2f})"


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
        cite = _identifier(source)
        if source.get("table"):
            cite += f", {source['table']}"
        if entry["status"] == "derived":
            cite += "; derived"
        cells = [_cell(entry["values"][column]) for column in benchmark.columns]
        features = entry.get("features") or "–"
        lines.append(f"| {_label(entry)} | {features} | {cite} | {' | '.join(cells)} |")
        if entry["method"] == benchmark.reference:
            reference = entry["values"]
    if not benchmark.entries:
        na = " | ".join("n/a" for _ in benchmark.columns)
        lines.append(f"| published | – | none for this data set | {na} |")
    for run_name, metrics in our_metrics.items():
        values = our_values(metrics, benchmark)
        cells = [_cell(values[column], reference.get(column)) for column in benchmark.columns]
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
    if benchmark.entries:
        lines += ["", "Sources (pipeline/data/published_results.yaml):", ""]
        for entry in benchmark.entries:
            source = entry["source"]
            derivation = " ".join(str(entry.get("derivation", "")).split())
            lines.append(
                f'- {_label(entry)}: "{source["title"]}"'
                + (f", {_identifier(source)}" if source.get("arxiv") or source.get("doi") else "")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True, help="benchmark key (unav100, ave, ...)")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders with metrics.json")
    parser.add_argument("--out", required=True, help="Markdown table to write")
    parser.add_argument("--published", default=str(PUBLISHED_PATH), help="published results YAML")
    args = parser.parse_args(argv)
    try:
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
    except (FileNotFoundError, PublishedResultsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
