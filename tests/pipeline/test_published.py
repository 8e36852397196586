"""The published-results file: its rules hold for the shipped file and refuse a broken one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from pipeline.config import SPATIAL_BENCHMARK_FORMATS
from pipeline.display_names import SPATIAL_HEADLINE
from pipeline.published import (
    LOCALISATION_BENCHMARKS,
    LOCALISATION_COLUMNS,
    PUBLISHED_PATH,
    PublishedResultsError,
    load_published,
    localisation_benchmark,
    localisation_key,
    published_entries,
)
from pipeline.spatial.metrics import frame_scores, summarise

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


# ------------------------------------------------------------------- localisation benchmarks

LOCALISATION_ENTRY = {
    "method": "EZ-VSL",
    "setting": {"train": "Flickr 10k"},
    "values": {"ciou": 81.93, "auc": 62.58},
    "status": "verified",
    "source": {"title": "A paper", "arxiv": "0000.00000", "table": "README"},
    "checked": "read in the README",
}


def _write_localisation(tmp_path, entry, **benchmark):
    spec = {
        "name": "Flickr",
        "metric": "localisation",
        "test_set": "249 pairs",
        "columns": ["ciou", "auc"],
        "reference": None,
        "entries": [entry],
        **benchmark,
    }
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"benchmarks": {"flickr": spec}}))
    return path


def test_the_shipped_localisation_benchmarks():
    benchmarks = load_published()
    # one benchmark per spatial import format, each a localisation one
    assert set(LOCALISATION_BENCHMARKS) == set(SPATIAL_BENCHMARK_FORMATS)
    for import_format in SPATIAL_BENCHMARK_FORMATS:
        benchmark = localisation_benchmark(localisation_key(import_format))
        assert benchmark.metric == "localisation" and benchmark.test_set
    flickr = published_entries("flickr_soundnet")
    ezvsl = next(e for e in flickr if e.setting == {"train": "Flickr 10k"})
    assert ezvsl.values == {"ciou": 81.93, "auc": 62.58, "ap": None, "max_f1": None,
                            "precision": None}  # fmt: skip
    assert ezvsl.comparable and "arXiv 2203.09324" in ezvsl.citation
    slavc = next(e for e in flickr if e.method == "SLAVC")
    assert not slavc.comparable and "Extended Flickr-SoundNet" in slavc.test_set
    assert (slavc.values["ap"], slavc.values["max_f1"], slavc.values["precision"]) == (
        51.63, 59.10, 83.60,
    )  # fmt: skip
    vggss = {
        e.setting["train"]: e.values["ciou"] for e in published_entries("vggss") if e.comparable
    }
    assert vggss == {"VGG-Sound 10k": 37.18, "VGG-Sound 144k": 38.85, "VGG-Sound Full": 39.34}
    for key in ("vggsound_single", "vgginstruments", "avsbench_s4"):  # M2VSL: tables not read
        m2vsl = next(e for e in published_entries(key) if e.method == "M2VSL")
        assert m2vsl.status == "not found" and set(m2vsl.values.values()) == {None}
    wsavs = next(e for e in published_entries("avsbench_s4") if e.method == "WS-AVS")
    assert wsavs.values == {"miou": 34.13, "fscore": 51.76} and "2311.15080" in wsavs.citation
    assert benchmarks["ave"].test_set is None


def test_localisation_columns_are_keys_of_our_metrics():
    # summarise's families and metrics on one frame: the keys our metrics.json "overall" has
    heatmap = np.array([[0.9, 0.5, -0.2, -0.6], [0.7, 0.1, -0.4, -1.0]])
    gt = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    overall = summarise([frame_scores(heatmap, gt, [])], [np.array([0.2, 0.6])])
    for column, (family, metric) in LOCALISATION_COLUMNS.items():
        assert isinstance(overall[family][metric], float), column
    # every headline metric of the spatial table has a published column
    assert {(f, m) for f, m, _ in SPATIAL_HEADLINE} <= set(LOCALISATION_COLUMNS.values())


def test_a_localisation_entry_with_another_test_set(tmp_path):
    entry = {**LOCALISATION_ENTRY, "test_set": "Extended Flickr, with negatives"}
    (loaded,) = published_entries("flickr", path=_write_localisation(tmp_path, entry))
    assert not loaded.comparable and loaded.test_set == "Extended Flickr, with negatives"
    assert loaded.setting == {"train": "Flickr 10k"}


@pytest.mark.parametrize(
    "entry_change, benchmark_change, message",
    [
        ({"values": {"ciou": 81.93, "iou": 62.58}}, {}, r"values \['ciou', 'iou'\] != columns"),
        ({"values": {"ciou": 81.93, "iou": 62.58}}, {"columns": ["ciou", "iou"]},
         r"name each at most once, from \['ciou', 'auc', 'ap'"),
        ({}, {"columns": ["ciou", "auc", "ciou"]}, "name each at most once"),
        ({}, {"test_set": None}, "name the test set our importer reads"),
        ({}, {"reference": "EZ-VSL"}, "takes no 'reference'"),
        ({}, {"metric": "recall"}, "not one of"),
        ({"test_set": ["Extended"]}, {}, "'test_set' is a localisation entry's other test set"),
        ({"values": {"ciou": 81.93, "auc": None}}, {}, "reported columns"),
    ],
)  # fmt: skip
def test_a_broken_localisation_benchmark_is_refused(
    tmp_path, entry_change, benchmark_change, message
):
    path = _write_localisation(tmp_path, {**LOCALISATION_ENTRY, **entry_change}, **benchmark_change)
    with pytest.raises(PublishedResultsError, match=message):
        load_published(path)


def test_test_set_belongs_to_localisation_benchmarks_only(tmp_path):
    with pytest.raises(PublishedResultsError, match="'test_set' is a localisation entry's"):
        load_published(_write(tmp_path, {**ENTRY, "test_set": "another"}))
    path = tmp_path / "map.yaml"
    benchmark = {"name": "b", "metric": "map", "columns": ["0.5", "average"], "test_set": "x"}
    path.write_text(yaml.safe_dump({"benchmarks": {"b": {**benchmark, "entries": [ENTRY]}}}))
    with pytest.raises(PublishedResultsError, match="for localisation benchmarks only"):
        load_published(path)


def test_localisation_keys_and_benchmarks_are_refused_by_name():
    with pytest.raises(PublishedResultsError, match=r"dataset\.import\.format 'unav100'"):
        localisation_key("unav100")
    with pytest.raises(PublishedResultsError, match="'ave' has metric 'accuracy'"):
        localisation_benchmark("ave")
    with pytest.raises(PublishedResultsError, match="no benchmark 'flickr'"):
        localisation_benchmark("flickr")
