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

Three kinds of benchmark (``metric``): ``map`` (tIoU columns and their average), ``accuracy``
(one column) and ``localisation`` (sound-source localisation: columns among
:data:`LOCALISATION_COLUMNS`, each the field's metric under the (family, metric) key of our
spatial ``metrics.json``). A localisation benchmark names the ``test_set`` our importer reads
(the import format of :data:`LOCALISATION_BENCHMARKS`); an entry measured on another test set
names its own, and :attr:`PublishedEntry.comparable` is then False.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PUBLISHED_PATH = Path(__file__).parent / "data" / "published_results.yaml"
STATUSES = ("verified", "derived", "not found")
METRICS = ("map", "accuracy", "localisation")  # the kinds of benchmark
# Columns of a localisation benchmark -> (family, metric) of our spatial metrics.json "overall"
# (pipeline.spatial.metrics.summarise): the field's metrics under their evaluators' names.
LOCALISATION_COLUMNS = {
    "ciou": ("ezvsl", "ciou"),  # EZ-VSL "CIoU": fraction of samples with cIoU >= 0.5
    "auc": ("ezvsl", "auc"),  # EZ-VSL "AUC" of that fraction over cIoU thresholds
    "ap": ("slavc", "ap"),  # SLAVC AP, negatives counted
    "max_f1": ("slavc", "max_f1"),  # SLAVC max-F1, negatives counted
    "precision": ("slavc", "precision"),  # SLAVC Precision over the visible samples
    "miou": ("avsbench", "miou"),  # AVSBench mIoU
    "fscore": ("avsbench", "fscore"),  # AVSBench F-score, beta^2 = 0.3
}
# dataset.import.format of a sound-source localisation benchmark -> its benchmark key here.
LOCALISATION_BENCHMARKS = {
    "flickr_soundnet": "flickr_soundnet",
    "vggss": "vggss",
    "vggsound_single": "vggsound_single",
    "vgginstruments": "vgginstruments",
    "avsbench_s4": "avsbench_s4",
}


class PublishedResultsError(ValueError):
    """The published-results file breaks its rules; the message names the benchmark and entry."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the published-results file."""

    key: str  # key in the file, e.g. "unav100"
    name: str  # heading of the table
    metric: str  # one of METRICS
    columns: tuple[str, ...]  # e.g. ("0.5", ..., "average"), ("accuracy",) or ("ciou", "auc")
    average_over: tuple[float, ...]  # thresholds the average column is the mean over
    reference: str | None  # entry our runs are compared with
    entries: tuple[dict[str, Any], ...]  # published rows, as in the file
    test_set: str | None = None  # localisation: the test set our importer reads


@dataclass(frozen=True)
class PublishedEntry:
    """One published entry, as :func:`published_entries` gives it to other modules."""

    method: str  # e.g. "AV-BT + TACMA"
    group: str | None  # paper table the entry belongs to, e.g. "AV-BT Table 4"; None if not given
    setting: dict[str, Any]  # what the row varies, e.g. {"theta": 0.03}; empty if nothing
    values: dict[str, float | None]  # column -> percent, None where not found
    status: str  # one of STATUSES
    citation: str  # title, venue, arXiv id / DOI / URL and table, on one line
    features: str | None = None  # the encoders or features behind the numbers, if given
    test_set: str | None = None  # localisation: another test set than the benchmark's, if any

    @property
    def comparable(self) -> bool:
        """Measured on the benchmark's own test set (no ``test_set`` of its own)."""
        return self.test_set is None

    @property
    def value(self) -> float | None:
        """The number of a one-column benchmark (``accuracy``)."""
        if len(self.values) != 1:
            raise ValueError(f"{self.method!r} has columns {list(self.values)}; read .values")
        return next(iter(self.values.values()))


def _check_entry(key: str, metric: str, columns: Sequence[str], entry: Mapping[str, Any]) -> None:
    where = f"published results, benchmark {key!r}, entry {entry_label(entry)!r}"
    test_set = entry.get("test_set")
    if test_set is not None and not (metric == "localisation" and isinstance(test_set, str)):
        raise PublishedResultsError(
            f"{where}: 'test_set' is a localisation entry's other test set, a string; "
            f"not {test_set!r} on a {metric!r} benchmark"
        )
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
        if spec["metric"] not in METRICS:
            raise PublishedResultsError(
                f"{path}: benchmark {key!r} has metric {spec['metric']!r}, not one of {METRICS}"
            )
        columns = tuple(str(column) for column in spec["columns"])
        if spec["metric"] == "localisation":
            _check_localisation(path, key, spec, columns)
        elif spec.get("test_set") is not None:
            raise PublishedResultsError(
                f"{path}: benchmark {key!r}: 'test_set' is for localisation benchmarks only"
            )
        for entry in spec["entries"]:
            _check_entry(key, spec["metric"], columns, entry)
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
            test_set=spec.get("test_set"),
        )
    return benchmarks


def _check_localisation(
    path: str | Path, key: str, spec: Mapping[str, Any], columns: Sequence[str]
) -> None:
    """A localisation benchmark: known, distinct columns, its test set named, no reference (the
    spatial table prints no difference to a published row)."""
    unknown = [column for column in columns if column not in LOCALISATION_COLUMNS]
    if unknown or not columns or len(set(columns)) < len(columns):
        raise PublishedResultsError(
            f"{path}: localisation benchmark {key!r} has columns {list(columns)}; name each at "
            f"most once, from {list(LOCALISATION_COLUMNS)}"
        )
    if not (isinstance(spec.get("test_set"), str) and spec["test_set"]):
        raise PublishedResultsError(
            f"{path}: localisation benchmark {key!r}: name the test set our importer reads "
            "('test_set')"
        )
    if spec.get("reference") is not None or spec.get("average_over"):
        raise PublishedResultsError(
            f"{path}: localisation benchmark {key!r} takes no 'reference' or 'average_over' "
            "(our runs are compared with the similarity-map baseline, not a published row)"
        )


def localisation_key(import_format: str) -> str:
    """The benchmark key of a spatial import format (:data:`LOCALISATION_BENCHMARKS`).

    Raises:
        PublishedResultsError: the format has no localisation benchmark.
    """
    if import_format not in LOCALISATION_BENCHMARKS:
        raise PublishedResultsError(
            f"no published localisation benchmark for dataset.import.format {import_format!r}; "
            f"one of {list(LOCALISATION_BENCHMARKS)}"
        )
    return LOCALISATION_BENCHMARKS[import_format]


def localisation_benchmark(key: str, *, path: str | Path = PUBLISHED_PATH) -> Benchmark:
    """Benchmark ``key`` of the published-results file, refused unless it is a localisation one.

    Raises:
        PublishedResultsError: no such benchmark, or not ``metric: localisation``.
    """
    benchmarks = load_published(path)
    if key not in benchmarks:
        raise PublishedResultsError(f"{path}: no benchmark {key!r}; one of {list(benchmarks)}")
    if benchmarks[key].metric != "localisation":
        localisation = [k for k, b in benchmarks.items() if b.metric == "localisation"]
        raise PublishedResultsError(
            f"{path}: benchmark {key!r} has metric {benchmarks[key].metric!r}, not "
            f"'localisation'; one of {localisation}"
        )
    return benchmarks[key]


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
            features=entry.get("features"),
            test_set=entry.get("test_set"),
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
