"""AVE importer: real annotation and split counts, HDF5 features round-trip, labels, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.annotations import load_annotations
from pipeline.importers.ave import (
    BACKGROUND_ID,
    CATEGORIES,
    check_ave_videos,
    import_ave,
    main,
    read_ave_annotations,
    read_splits,
    write_ave_labels,
)
from pipeline.importers.common import FeatureImportError
from pipeline.segments.clips import read_segment_labels
from pipeline.store import read_store
from tests.pipeline.importers.helpers import read_back, real_file

# categories 0..3 only, as UnAV-format label ids must have no gap
LINES = [
    "Church bell&vidA&good&0&10",
    "Bark&vidB&good&2&5",
    "Male speech, man speaking&vidA&good&6&8",  # the same video id again: a second clip
    "Goat&vidC&good&3&3",  # StartTime == EndTime: background only, no event
    "Fixed-wing aircraft, airplane&vidD&good&1&4",
]
SPLITS = {"train_order.h5": [0, 1, 3], "val_order.h5": [4], "test_order.h5": [2]}


def _write_set(tmp_path: Path, *, visual_key: str = "avadataset") -> tuple[Path, Path]:
    folder = tmp_path / "AVE"
    folder.mkdir()
    (folder / "Annotations.txt").write_text("\n".join(LINES) + "\n")
    for name, rows in SPLITS.items():
        with h5py.File(folder / name, "w") as handle:
            handle["order"] = np.array(rows, dtype=np.int64)
    rows = len(LINES)
    # visual[r, k, i, j, d] = 100 r + k + (i * 7 + j) / 48: the 7x7 mean is 100 r + k + 0.5
    cells = (np.arange(49, dtype=np.float32) / 48).reshape(7, 7)
    base = 100 * np.arange(rows)[:, None] + np.arange(10)[None, :]  # (N, 10)
    visual = base[:, :, None, None, None] + cells[None, None, :, :, None]  # (N, 10, 7, 7, 1)
    visual = np.broadcast_to(visual, (rows, 10, 7, 7, 512)).astype(np.float32)
    audio = np.broadcast_to(base[:, :, None], (rows, 10, 128)).astype(np.float32)
    with h5py.File(folder / "visual_feature.h5", "w") as handle:
        handle[visual_key] = visual
    with h5py.File(folder / "audio_feature.h5", "w") as handle:
        handle["avadataset"] = audio
    return folder, tmp_path / "results" / "ave" / "features" / "vgg19_vggish"


def _import(folder: Path, out: Path):
    return import_ave(
        folder,
        folder,
        out,
        annotations_out=out.parent.parent / "annotations.json",
        segments_out=out.parent.parent / "segments.csv",
    )


def test_real_annotations_and_splits_have_the_published_counts() -> None:
    rows = read_ave_annotations(real_file("ave", "Annotations.txt"))
    assert len(rows) == 4_143
    assert {row.category for row in rows} == set(CATEGORIES) and len(CATEGORIES) == 28
    # CATEGORIES is the order of first appearance in the file
    first_seen = list(dict.fromkeys(row.category for row in rows))
    assert tuple(first_seen) == CATEGORIES
    ids = [row.video_id for row in rows]
    repeated = {vid: ids.count(vid) for vid in set(ids) if ids.count(vid) > 1}
    assert len(repeated) == 45 and max(repeated.values()) == 3  # one id has three rows
    assert len({row.store_id for row in rows}) == 4_143  # store ids stay unique
    assert [row.store_id for row in rows if row.start_s == row.end_s] == [
        "0026_VWi2ENBuTbw"
    ]  # line 27 of the file is the only StartTime == EndTime row
    splits = list(read_splits(real_file("ave"), len(rows)).values())
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (
        3_339,
        402,
        402,
    )


def test_rows_become_stores_with_pooled_visual_grid_and_timestamps(tmp_path: Path) -> None:
    folder, out = _write_set(tmp_path)
    report = _import(folder, out)
    assert sorted(report.written) == [
        "0000_vidA",
        "0001_vidB",
        "0002_vidA",
        "0003_vidC",
        "0004_vidD",
    ]
    store = read_store(out / "0002_vidA.zarr", with_grid=True)
    np.testing.assert_allclose(store.visual[:, 0], 200 + np.arange(10) + 0.5, rtol=1e-6)
    assert store.visual_grid.shape == (10, 7, 7, 512)
    assert store.visual_grid[4, 6, 6, 0] == pytest.approx(204 + 1.0)
    np.testing.assert_allclose(store.audio[:, 3], 200 + np.arange(10))
    np.testing.assert_allclose(store.timestamps, np.stack([np.arange(10), np.arange(1, 11)], 1))
    assert store.attrs["source_video_id"] == "vidA" and store.attrs["ave_row"] == 2
    assert store.attrs["window_s"] == 1.0 and store.attrs["stride_s"] == 1.0


def test_segments_table_and_annotations(tmp_path: Path) -> None:
    folder, out = _write_set(tmp_path)
    _import(folder, out)
    with (out.parent.parent / "segments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["video_id", "segment", "start_s", "end_s", "label", "label_id"]
    bark = [row for row in rows if row["video_id"] == "0001_vidB"]
    assert [int(row["label_id"]) for row in bark] == [28, 28, 2, 2, 2, 28, 28, 28, 28, 28]
    assert bark[2]["label"] == "Bark" and bark[0]["label"] == "background"
    goat = [int(row["label_id"]) for row in rows if row["video_id"] == "0003_vidC"]
    assert goat == [BACKGROUND_ID] * 10
    assert len(rows) == 5 * 10
    annotations = load_annotations(out.parent.parent / "annotations.json")
    assert annotations.videos["0001_vidB"].subset == "train"
    assert annotations.videos["0004_vidD"].subset == "validation"
    assert annotations.videos["0002_vidA"].subset == "test"
    event = annotations.videos["0001_vidB"].events[0]
    assert (event.start_s, event.end_s, event.label) == (2.0, 5.0, "Bark")
    assert annotations.videos["0003_vidC"].events == ()


def test_stage2_reads_the_import(tmp_path: Path) -> None:
    folder, out = _write_set(tmp_path)
    _import(folder, out)
    dataset = read_back(out.parent.parent / "annotations.json", out, "train")
    item = dataset[[video.video_id for video in dataset.videos].index("0001_vidB")]
    # centres k + 0.5: 2 s is position 1.5, 5 s position 4.5
    np.testing.assert_allclose(item["segments"].numpy(), [[1.5, 4.5]])
    assert item["features"]["visual"].shape == (10, 512)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_videos"] == 3  # the train rows only


def test_missing_h5_key_names_the_file(tmp_path: Path) -> None:
    folder, out = _write_set(tmp_path, visual_key="features")
    with pytest.raises(FeatureImportError, match=r"visual_feature\.h5 has no dataset 'avadataset'"):
        _import(folder, out)


def test_feature_rows_must_match_the_annotation_rows(tmp_path: Path) -> None:
    folder, out = _write_set(tmp_path)
    with h5py.File(folder / "audio_feature.h5", "w") as handle:
        handle["avadataset"] = np.zeros((4, 10, 128), np.float32)
    with pytest.raises(FeatureImportError, match=r"audio_feature\.h5.*\(4, 10, 128\)"):
        _import(folder, out)


def test_bad_annotation_line_and_overlapping_splits(tmp_path: Path) -> None:
    folder, _ = _write_set(tmp_path)
    (folder / "Annotations.txt").write_text("Church bell&x&good&0&10\nBark&y&good&7\n")
    with pytest.raises(FeatureImportError, match=r"Annotations\.txt, line 2"):
        read_ave_annotations(folder / "Annotations.txt")
    with h5py.File(folder / "val_order.h5", "w") as handle:
        handle["order"] = np.array([0])
    with pytest.raises(FeatureImportError, match=r"val_order\.h5: row 0 is also in the train"):
        read_splits(folder, 5)


def test_end_before_start_unknown_category_and_truncated_h5(tmp_path: Path) -> None:
    folder, out = _write_set(tmp_path)
    (folder / "Annotations.txt").write_text("Church bell&x&good&0&10\nBark&y&good&7&3\n")
    with pytest.raises(FeatureImportError, match=r"Annotations\.txt, line 2: need 0 <= start"):
        read_ave_annotations(folder / "Annotations.txt")
    (folder / "Annotations.txt").write_text("Church bell&x&good&0&10\nKazoo&y&good&1&3\n")
    with pytest.raises(FeatureImportError, match=r"line 2: unknown AVE category 'Kazoo'"):
        read_ave_annotations(folder / "Annotations.txt")
    (folder / "Annotations.txt").write_text("\n".join(LINES) + "\n")
    data = (folder / "audio_feature.h5").read_bytes()
    (folder / "audio_feature.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(FeatureImportError, match=r"audio_feature\.h5 is not a readable HDF5"):
        _import(folder, out)
    (folder / "audio_feature.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"audio_feature\.h5 does not exist"):
        _import(folder, out)


def test_labels_only_names_the_source_clip(tmp_path: Path) -> None:
    folder, _ = _write_set(tmp_path)
    written = write_ave_labels(
        folder, annotations_out=tmp_path / "a.json", segments_out=tmp_path / "s.csv"
    )
    assert written == 5
    database = json.loads((tmp_path / "a.json").read_text())["database"]
    assert database["0002_vidA"]["source_video"] == "vidA"  # two rows share one clip
    check_ave_videos(folder, ["vidA", "vidB", "vidC", "vidD"])
    with pytest.raises(FeatureImportError, match=r"train_order\.h5: row 0 .* names video vidA"):
        check_ave_videos(folder, ["vidB", "vidC", "vidD"])


def test_real_files_give_the_segment_stage_its_labels(tmp_path: Path) -> None:
    """The raw-video path on AVE's own Annotations.txt and split files: ten labelled one-second
    segments per split row, in the segment stage's format."""
    folder = real_file("ave")
    assert write_ave_labels(
        folder, annotations_out=tmp_path / "a.json", segments_out=tmp_path / "s.csv"
    ) == 4_143  # fmt: skip
    labels = read_segment_labels(tmp_path / "s.csv", tmp_path / "a.json", len(CATEGORIES))
    assert len(labels) == 41_430
    subsets = [label.subset for label in labels[::10]]
    assert (subsets.count("train"), subsets.count("validation"), subsets.count("test")) == (
        3_339, 402, 402,
    )  # fmt: skip
    # Line 2 of the file: "Church bell&MH3m4AwEcRY&good&6&8": segments 6 and 7 are the event.
    row = [label for label in labels if label.video_id == "0001_MH3m4AwEcRY"]
    assert [label.label_id for label in row] == [28] * 6 + [0, 0] + [28] * 2
    assert {label.source_video for label in row} == {"MH3m4AwEcRY"}


def test_cli(tmp_path: Path, capsys) -> None:
    folder, out = _write_set(tmp_path)
    code = main(
        [
            "--annotations",
            str(folder),
            "--features-dir",
            str(folder),
            "--out",
            str(out),
            "--annotations-out",
            str(tmp_path / "a.json"),
            "--segments-out",
            str(tmp_path / "s.csv"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "imported 5 videos" in printed and "['0003_vidC']" in printed
    assert json.loads((out / "index.json").read_text())["dataset"] == "ave"
