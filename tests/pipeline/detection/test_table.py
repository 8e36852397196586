"""Paper tables: the published-results file's rules, our numbers, differences, synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.detection.table import main, our_values, write_table
from pipeline.published import (
    PUBLISHED_PATH,
    PublishedResultsError,
    load_published,
    published_entries,
)

THUMOS_RUN = {"mAP": {"0.3": 0.80, "0.4": 0.75, "0.5": 0.70, "0.6": 0.60, "0.7": 0.45}}
AVBT_DOI = "10.3390/app122412622"
# The AV-BT + TACMA paper's text (Applied Sciences 2022), where the AV-BT numbers were read.
AVBT_PAPER = Path(__file__).parents[4] / "shared" / "papers" / "004_07b31ff8d5694594.txt"


def test_published_file_keeps_its_rules() -> None:
    benchmarks = load_published()
    assert {"unav100", "ave", "thumos14", "epic_kitchens_100_verb", "epic_kitchens_100_noun",
            "perception_test_sound"} <= set(benchmarks)  # fmt: skip
    actionformer = benchmarks["thumos14"].entries[0]
    assert actionformer["values"]["average"] == 66.83 and actionformer["status"] == "verified"
    for benchmark in benchmarks.values():
        for entry in benchmark.entries:
            numbers = [v for v in entry["values"].values() if v is not None]
            assert (entry["status"] in ("verified", "derived")) == bool(numbers)
            assert any(entry["source"].get(key) for key in ("arxiv", "doi", "url"))


def test_thumos_table_with_differences(tmp_path: Path) -> None:
    text = write_table("thumos14", {"visual_only": THUMOS_RUN}, tmp_path / "t.md")
    row = next(line for line in text.splitlines() if "ours: visual_only" in line)
    # 80.00 - 82.13 = -2.13; average (80 + 75 + 70 + 60 + 45) / 5 = 66.00, 66.00 - 66.83
    assert "| 80.00 (-2.13) |" in row and "| 45.00 (+1.13) |" in row
    assert row.endswith("| 66.00 (-0.83) |")
    assert "| ActionFormer |" in text and "arXiv 2202.07925" in text
    assert (tmp_path / "t.md").read_text() == text


def test_average_is_recomputed_over_the_benchmark_thresholds() -> None:
    benchmark = load_published()["thumos14"]
    metrics = {
        "mAP": {f"{t / 10:g}": t / 10 for t in range(1, 10)},  # mAP@t = t
        "average_mAP": 0.9,  # the run's own average: not THUMOS's, must not be used
    }
    values = our_values(metrics, benchmark)
    assert values["average"] == pytest.approx(50.0)  # mean of 0.3..0.7
    metrics["mAP"]["0.7"] = 0.2
    assert our_values(metrics, benchmark)["average"] == pytest.approx(100 * 2.0 / 5)
    del metrics["mAP"]["0.3"]
    values = our_values(metrics, benchmark)
    assert values["average"] is None and values["0.3"] is None


def test_not_found_numbers_print_as_na_without_difference(tmp_path: Path) -> None:
    metrics = {"mAP": {"0.5": 0.5, "0.6": 0.4, "0.7": 0.3, "0.8": 0.2, "0.9": 0.1}}
    text = write_table("unav100", {"fusion": metrics}, tmp_path / "u.md")
    ours = next(line for line in text.splitlines() if "ours: fusion" in line)
    assert "| 50.00 | 40.00 | 30.00 | 20.00 | 10.00 | n/a |" in ours  # no 0.1..0.4: no average
    baseline = next(line for line in text.splitlines() if line.startswith("| UnAV baseline"))
    assert baseline.count("n/a") == 6
    assert "status: not found" in text


def test_ave_accuracy(tmp_path: Path) -> None:
    text = write_table("ave", {"tacma": {"test_accuracy": 0.75}}, tmp_path / "a.md")
    assert "| **ours: tacma** | this pipeline | metrics.json | 75.00 (-2.80) |" in text


def test_synthetic_data_has_na_published_column(tmp_path: Path) -> None:
    runs = {
        "audio_only": {"mAP": {"0.1": 0.9, "0.5": 0.6}, "average_mAP": 0.75},
        "fusion": {"mAP": {"0.1": 1.0, "0.5": 0.8}, "average_mAP": 0.9},
    }
    text = write_table("demo", runs, tmp_path / "d.md")
    assert "| method | features | source | mAP@0.1 | mAP@0.5 | average |" in text
    assert "| published | – | none for this data set | n/a | n/a | n/a |" in text
    assert "| **ours: fusion** | this pipeline | metrics.json | 100.00 | 80.00 | 90.00 |" in text


def _by_method_and_setting(group: str) -> dict[tuple[str, str], float | None]:
    return {
        (entry.method, ", ".join(f"{k}={v}" for k, v in entry.setting.items())): entry.value
        for entry in published_entries("ave", group)
    }


def test_avbt_tables_2_to_4() -> None:
    assert _by_method_and_setting("AV-BT Table 2") == {
        ("AVEL (Tian et al.)", "modality=audio"): 59.5,
        ("AVEL (Tian et al.)", "modality=visual"): 55.3,
        ("AVEL (Tian et al.)", "modality=audio-visual"): 71.3,
        ("AV-BT + MLP", "modality=audio"): 63.5,
        ("AV-BT + MLP", "modality=visual"): 61.0,
        ("AV-BT + MLP", "modality=audio-visual"): 75.6,
    }
    table3 = [(entry.method, entry.value) for entry in published_entries("ave", "AV-BT Table 3")]
    assert table3 == [
        ("CMAN", 73.3), ("AVRB", 74.8), ("AVIN", 75.2), ("MPN", 75.2), ("JCAN", 76.2),
        ("PSP (without audio-visual pair similarity loss)", 76.6), ("AVT", 76.8),
        ("AV-BT + TACMA", 77.2),
    ]  # fmt: skip
    assert _by_method_and_setting("AV-BT Table 4") == {
        ("AV-BT baseline + MLP", "modality=audio-visual"): 75.6,
        ("AV-BT baseline + MLP", "modality=audio"): 63.5,
        ("AV-BT baseline + MLP", "modality=visual"): 61.0,
        ("AV-BT w/ AGVA + MLP", "modality=audio-visual"): 71.5,  # its unimodal cells are "-"
        ("AV-BT w/o sharing projector + MLP", "modality=audio-visual"): 72.5,
        ("AV-BT w/o sharing projector + MLP", "modality=audio"): 63.0,
        ("AV-BT w/o sharing projector + MLP", "modality=visual"): 60.4,
    }
    # PSP's own 77.8 (README, trained with its pair similarity loss) stays our reference
    psp = [entry for entry in published_entries("ave") if entry.method.startswith("PSP")]
    assert [(entry.group, entry.value) for entry in psp] == [(None, 77.8), ("AV-BT Table 3", 76.6)]
    assert load_published()["ave"].reference == "PSP"
    assert all(AVBT_DOI in entry.citation for entry in published_entries("ave", "AV-BT Table 3"))
    assert published_entries("ave", "AV-BT Table 4")[0].citation.endswith(
        "Applied Sciences 12(24) 12622 (2022), doi 10.3390/app122412622, Table 4"
    )


def test_avbt_fig6_theta() -> None:
    entries = {entry.setting["theta"]: entry for entry in published_entries("ave", "AV-BT Fig. 6")}
    assert sorted(entries) == [0.0, 0.01, 0.03, 0.06]
    table2 = published_entries("ave", "AV-BT Table 2")
    audio_visual = next(
        e for e in table2 if e.method == "AV-BT + MLP" and "audio-" in str(e.setting)
    )
    # theta = 0: "only improving by 0.4% compared to the result in Table 2" (Sec. 4.3.3)
    assert entries[0.0].status == "derived"
    assert entries[0.0].value == pytest.approx(audio_visual.value + 0.4)
    # theta = 0.03, the peak, is the model of Table 3
    assert entries[0.03].status == "verified" and entries[0.03].value == 77.2
    assert [(entries[t].status, entries[t].value) for t in (0.01, 0.06)] == [
        ("not found", None)
    ] * 2


def _avbt_table5_in_paper() -> list[tuple[tuple[str, ...], float]]:
    """Table 5 of the paper text: (six marks, accuracy) per row, marks as printed ("✓ *")."""
    cells = [line.strip() for line in AVBT_PAPER.read_text(encoding="utf-8").splitlines()]
    cells = [cell for cell in cells if cell]
    cells = cells[next(i for i, cell in enumerate(cells) if cell.startswith("Table 5. ")) :]
    cells = cells[cells.index("Accuracy (%)") + 1 :]
    assert len(cells) % 7 == 0
    return [(tuple(cells[i : i + 6]), float(cells[i + 6])) for i in range(0, len(cells), 7)]


def test_avbt_table5_augmentations() -> None:
    names = ("crop", "flip", "solarize", "grayscale", "jitter", "blur")
    rows = published_entries("ave", "AV-BT Table 5")
    marks = [
        (tuple("✓" if row.setting[name] else "✕" for name in names), row.value) for row in rows
    ]
    assert len(marks) == 10 and all(row.status == "verified" for row in rows)
    assert marks[5] == (("✓", "✕", "✕", "✕", "✕", "✓"), 75.6)  # crop + blur: the best
    assert marks[9] == (("✕",) * 6, 74.4)
    assert [row.setting.get("crop_scale") for row in rows] == ["smaller"] + [None] * 9
    if not AVBT_PAPER.exists():
        pytest.skip(f"{AVBT_PAPER} absent (needs ../shared/papers)")
    in_paper = _avbt_table5_in_paper()
    assert in_paper[0][0][0] == "✓ *"  # * marks the smaller crop scale
    smaller = [row.setting.get("crop_scale") == "smaller" for row in rows]
    assert smaller == ["*" in row[0] for row, _ in in_paper]
    assert marks == [(tuple(m.replace(" *", "") for m in row), acc) for row, acc in in_paper]


def test_every_verified_ave_number_names_its_table() -> None:
    for entry in load_published()["ave"].entries:
        source = entry["source"]
        if entry["status"] == "verified":
            assert source.get("table"), entry["method"]
        if source.get("doi") == AVBT_DOI:
            assert entry["group"].startswith("AV-BT ") and source["journal"]
            assert source["table"].startswith(
                ("Table 2", "Table 3", "Table 4", "Table 5", "Fig. 6")
            )
            assert "2026-12-01" in entry["checked"]


def test_ave_table_shows_settings_and_derived_numbers(tmp_path: Path) -> None:
    text = write_table("ave", {"tacma": {"test_accuracy": 0.75}}, tmp_path / "a.md")
    row = next(line for line in text.splitlines() if line.startswith("| AV-BT + TACMA (theta=0)"))
    assert "; derived |" in row and row.endswith("| 76.00 |")
    assert (
        "| AV-BT + MLP (crop=✓, flip=✕, solarize=✕, grayscale=✕, jitter=✕, blur=✓) | – | "
        "doi 10.3390/app122412622, Table 5 | 75.60 |"
    ) in text
    assert "Derivation: 75.6 (Table 2, AV-BT audio-visual) + 0.4" in text


def test_published_entries_refuses_unknown_names() -> None:
    with pytest.raises(PublishedResultsError, match="no benchmark 'avee'"):
        published_entries("avee")
    with pytest.raises(PublishedResultsError, match="no group 'AV-BT Table 9'"):
        published_entries("ave", "AV-BT Table 9")
    assert len(published_entries("ave")) > len(published_entries("ave", "AV-BT Table 3")) == 8
    with pytest.raises(ValueError, match="has columns"):
        _ = published_entries("thumos14")[0].value  # six columns: no single value


def _broken(tmp_path: Path, change) -> Path:
    content = yaml.safe_load(PUBLISHED_PATH.read_text())
    change(content["benchmarks"])
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_rule_breaking_files_are_refused(tmp_path: Path) -> None:
    def guess(b):
        b["unav100"]["entries"][0]["values"]["0.5"] = 50.6  # a number without a verified source

    def half(b):
        b["thumos14"]["entries"][0]["values"]["0.3"] = None

    def sourceless(b):
        b["ave"]["entries"][2]["source"] = {"title": "x"}

    for change, message in ((guess, "'not found' but"), (half, "every column"),
                            (sourceless, "arXiv id or URL")):  # fmt: skip
        with pytest.raises(PublishedResultsError, match=message):
            load_published(_broken(tmp_path, change))


def _ave_entry(benchmarks, group: str, status: str = "verified") -> dict:
    return next(
        entry
        for entry in benchmarks["ave"]["entries"]
        if entry.get("group") == group and entry["status"] == status
    )


def test_rule_breaking_groups_settings_and_derivations_are_refused(tmp_path: Path) -> None:
    def undocumented(b):
        del _ave_entry(b, "AV-BT Fig. 6", "derived")["derivation"]

    def half_derived(b):
        _ave_entry(b, "AV-BT Fig. 6", "derived")["values"]["accuracy"] = None

    def nested_setting(b):
        _ave_entry(b, "AV-BT Table 5")["setting"] = {"crop": [True, "*"]}

    def unnamed_group(b):
        _ave_entry(b, "AV-BT Table 3")["group"] = ""

    def second_reference(b):
        _ave_entry(b, "AV-BT Table 3")["method"] = "PSP"  # which PSP would our runs be put against?

    for change, message in ((undocumented, "'derivation'"), (half_derived, "every column"),
                            (nested_setting, "'setting'"), (unnamed_group, "'group'"),
                            (second_reference, "names several entries")):  # fmt: skip
        with pytest.raises(PublishedResultsError, match=message):
            load_published(_broken(tmp_path, change))


def test_cli(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "visual_only"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(THUMOS_RUN))
    out = tmp_path / "table.md"
    args = ["--benchmark", "thumos14", "--runs", str(run), "--out", str(out)]
    assert main(args) == 0
    assert "ours: visual_only" in out.read_text()
    assert main(["--benchmark", "thumos14", "--runs", str(tmp_path), "--out", str(out)]) == 1
    assert "metrics.json does not exist" in capsys.readouterr().err
