"""The published-results file: its rules hold for the shipped file and refuse a broken one."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.published import PUBLISHED_PATH, PublishedResultsError, load_published

ENTRY = {
    "method": "Some method",
    "values": {"0.5": 40.0, "average": 30.0},
    "status": "verified",
    "source": {"title": "A paper", "arxiv": "0000.00000", "table": "Table 1"},
    "checked": "read in the paper",
}


def _write(tmp_path, entry):
    benchmark = {"name": "b", "metric": "map", "columns": ["0.5", "average"], "entries": [entry]}
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"benchmarks": {"b": benchmark}}))
    return path


def test_the_shipped_file_keeps_its_rules():
    benchmarks = load_published()
    sound = benchmarks["perception_test_sound"]
    fusion = next(e for e in sound.entries if e["method"] == sound.reference)
    assert fusion["values"]["average"] == 33.1 and fusion["values"]["0.1"] is None
    verb = benchmarks["epic_kitchens_100_verb"]
    assert {e["method"] for e in verb.entries} >= {"ActionFormer", "TriDet"}
    assert PUBLISHED_PATH.is_file()


def test_a_source_that_prints_only_the_average_says_so(tmp_path):
    partial = copy.deepcopy(ENTRY)
    partial["values"]["0.5"] = None
    with pytest.raises(PublishedResultsError, match="reported columns"):
        load_published(_write(tmp_path, partial))
    partial["reported"] = ["average"]
    assert load_published(_write(tmp_path, partial))["b"].entries[0]["values"]["0.5"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reported": ["0.9"]}, "must name some of"),
        ({"status": "not found"}, "holds numbers"),
        ({"source": {"title": "A paper"}}, "arXiv id or URL"),
        ({"checked": ""}, "where the numbers were checked"),
        ({"status": "derived"}, "derivation"),
    ],
)
def test_a_broken_entry_is_refused_naming_it(tmp_path, change, message):
    with pytest.raises(PublishedResultsError, match=message) as error:
        load_published(_write(tmp_path, {**ENTRY, **change}))
    assert "Some method" in str(error.value)
