"""The published-results file: every benchmark's published numbers with their sources.

Published numbers live in ``pipeline/data/published_results.yaml``, each with its source (paper
title, arXiv id, DOI or URL, table or README) and a ``status``: ``verified`` numbers were read in
the source, ``derived`` ones computed from numbers stated there (the entry says how), ``not found``
ones are null and print as ``n/a``. :func:`load_published` refuses a file that breaks that rule (a
number without a source, a verified entry with a null). A source that prints only some columns
(an average without the per-threshold numbers) says which in ``reported``; the others stay null.
An entry may name the paper table it
belongs to (``group``) and what its row varies (``setting``, e.g. ``{modality: audio}``), so an
ablation row with several numbers is one entry per number; :func:`published_entries` lists them
for the tasks' table modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
    where = f"published results, benchmark {key!r}, entry {entry_label(entry)!r}"
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
    reported = entry.get("reported", list(columns))
    if not set(reported) <= set(columns) or not reported:
        raise PublishedResultsError(f"{where}: 'reported' {reported} must name some of {columns}")
    filled = sorted(column for column, value in values.items() if value is not None)
    if status != "not found" and filled != sorted(reported):
        raise PublishedResultsError(
            f"{where}: a {status} entry fills exactly its reported columns {sorted(reported)} "
            f"(every column unless 'reported' names the ones the source gives), not {filled}"
        )
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


def identifier(source: Mapping[str, Any]) -> str:
    if source.get("arxiv"):
        return f"arXiv {source['arxiv']}"
    return f"doi {source['doi']}" if source.get("doi") else str(source["url"])


def _citation(source: Mapping[str, Any]) -> str:
    """'"Title", venue, arXiv id / DOI / URL, table' of a source."""
    venue = source.get("journal") or source.get("authors")
    parts = (f'"{source["title"]}"', venue, identifier(source), source.get("table"))
    return ", ".join(str(part) for part in parts if part)


def _shown(value: Any) -> str:
    """A setting's value as the papers print it: booleans as ✓/✕, 0.030 as 0.03."""
    if isinstance(value, bool):
        return "✓" if value else "✕"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def entry_label(entry: Mapping[str, Any]) -> str:
    """The method with its setting: ``AV-BT + MLP (modality=audio)``."""
    setting = ", ".join(f"{name}={_shown(v)}" for name, v in (entry.get("setting") or {}).items())
    return f"{entry.get('method')} ({setting})" if setting else str(entry.get("method"))
