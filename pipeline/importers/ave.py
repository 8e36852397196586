"""Import the AVE data set's released features (Tian et al., ECCV 2018, arXiv 1803.08842).

Inputs, as released: ``Annotations.txt`` (one event per row, ``Category&VideoID&Quality&StartTime&
EndTime``, whole seconds of a 10 s clip, no header), ``{train,val,test}_order.h5`` (key ``order``:
row indices into ``Annotations.txt``), ``visual_feature.h5`` (key ``avadataset``, (N, 10, 7, 7, 512)
VGG-19 pool5 maps) and ``audio_feature.h5`` (key ``avadataset``, (N, 10, 128) VGGish).

The sample unit is a row, not a video id (45 ids have two rows, i.e. two clips), so each row is
one store named ``{row:04d}_{video_id}``. Segment k of a clip covers ``[k, k + 1]`` s; the store's
``visual`` is the 7x7 mean of the pool5 map (T, 512), ``visual_grid`` the map itself
(T, 7, 7, 512), ``audio`` the VGGish vector (T, 128).

Labels: the 28 categories in :data:`CATEGORIES` order (the order the AVE code bases use for
``labels.h5``, which is the order of first appearance in ``Annotations.txt``), background 28.
Segment k takes the row's category when ``StartTime <= k < EndTime``, else background. Two label
files are written: an AVE-style ``segments.csv`` (``video_id,segment,start_s,end_s,label,
label_id``, as the synthetic benchmark's) and UnAV-format ``annotations.json`` with one event per
row. A row with ``StartTime == EndTime`` (one in the released file) has only background segments
and no event; the CLI reports such rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.cli import user_errors
from pipeline.importers.common import (
    FeatureImportError,
    FrameGrid,
    ImportedVideo,
    ImportReport,
    ImportSettings,
    add_import_arguments,
    names_from_out,
    run_import,
    summary_line,
    write_annotations,
)
from pipeline.io import write_text_atomic
from pipeline.store import StoreError
from pipeline.synth.ground_truth import BACKGROUND_LABEL, SEGMENTS_HEADER

CATEGORIES: tuple[str, ...] = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)  # fmt: skip
BACKGROUND_ID = len(CATEGORIES)  # 28
NUM_SEGMENTS = 10  # one-second segments per clip
CLIP_S = 10.0
H5_KEY = "avadataset"
VISUAL_SHAPE = (NUM_SEGMENTS, 7, 7, 512)  # per row
AUDIO_SHAPE = (NUM_SEGMENTS, 128)  # per row
SPLIT_FILES = {"train": "train_order.h5", "validation": "val_order.h5", "test": "test_order.h5"}
GRID = FrameGrid(fps=1.0, stride_frames=1, window_frames=1)  # segment k covers [k, k + 1] s


@dataclass(frozen=True)
class AveRow:
    """One line of ``Annotations.txt``."""

    row: int  # 0-based line number: the index into the feature files
    category: str  # event class
    video_id: str  # YouTube id of the clip's source video
    quality: str  # annotation quality flag ("good" throughout the release)
    start_s: int  # event start, whole seconds in [0, 10]
    end_s: int  # event end, whole seconds in [start_s, 10]

    @property
    def store_id(self) -> str:
        return f"{self.row:04d}_{self.video_id}"

    def segment_label_ids(self) -> list[int]:
        """Class of each one-second segment: the category inside the event, background outside."""
        label_id = CATEGORIES.index(self.category)
        return [
            label_id if self.start_s <= k < self.end_s else BACKGROUND_ID
            for k in range(NUM_SEGMENTS)
        ]


def read_ave_annotations(path: str | Path) -> list[AveRow]:
    """Parse ``Annotations.txt``; a malformed line raises naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AVE annotation file {path} does not exist")
    rows = []
    text = path.read_text(encoding="utf-8-sig")
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("&")
        where = f"{path}, line {line_number}"
        if len(fields) != 5:
            raise FeatureImportError(
                f"{where}: expected Category&VideoID&Quality&StartTime&EndTime, got {line!r}"
            )
        category, video_id, quality, start, end = fields
        if category not in CATEGORIES:
            raise FeatureImportError(f"{where}: unknown AVE category {category!r}")
        try:
            start_s, end_s = int(start), int(end)
        except ValueError:
            raise FeatureImportError(
                f"{where}: times {start!r}, {end!r} are not integers"
            ) from None
        if not 0 <= start_s <= end_s <= CLIP_S:
            raise FeatureImportError(f"{where}: need 0 <= start <= end <= 10, got {start}, {end}")
        rows.append(AveRow(len(rows), category, video_id, quality, start_s, end_s))
    if not rows:
        raise FeatureImportError(f"{path} holds no annotation row")
    return rows


def _h5_dataset(path: Path, key: str) -> h5py.Dataset:
    """Open ``key`` of an HDF5 file for reading; a missing file or key raises naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise FeatureImportError(f"{path} is not a readable HDF5 file: {err}") from err
    if key not in handle:
        keys = sorted(handle.keys())
        handle.close()
        raise FeatureImportError(f"{path} has no dataset {key!r} (it has {keys})")
    return handle[key]


def read_splits(folder: str | Path, num_rows: int) -> dict[int, str]:
    """Row -> split from the three ``*_order.h5`` files; overlaps and bad indices raise."""
    split_of_row: dict[int, str] = {}
    for split, name in SPLIT_FILES.items():
        dataset = _h5_dataset(Path(folder) / name, "order")
        with dataset.file:
            order = np.asarray(dataset[...]).ravel()
        for row in order.tolist():
            if not 0 <= row < num_rows:
                raise FeatureImportError(
                    f"{Path(folder) / name}: row {row} outside Annotations.txt's 0..{num_rows - 1}"
                )
            if row in split_of_row:
                raise FeatureImportError(
                    f"{Path(folder) / name}: row {row} is also in the {split_of_row[row]} split"
                )
            split_of_row[row] = split
    return split_of_row


def annotations_json(rows: Sequence[AveRow], split_of_row: dict[int, str]) -> dict:
    """UnAV-format annotations: one store per row, one event per row with start < end."""
    database = {}
    for row in rows:
        if row.row not in split_of_row:
            continue
        events = []
        if row.start_s < row.end_s:
            label_id = CATEGORIES.index(row.category)
            events.append(
                {"segment": [row.start_s, row.end_s], "label": row.category, "label_id": label_id}
            )
        database[row.store_id] = {
            "duration": CLIP_S,
            "subset": split_of_row[row.row],
            "annotations": events,
            "source_video": row.video_id,  # the clip file's stem (two rows may share one)
        }
    return {"version": "ave", "database": database}


def segments_csv(rows: Sequence[AveRow], split_of_row: dict[int, str]) -> str:
    """The AVE-style segment table: one line per one-second segment of every split row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SEGMENTS_HEADER)
    labels = (*CATEGORIES, BACKGROUND_LABEL)
    for row in rows:
        if row.row not in split_of_row:
            continue
        for k, label_id in enumerate(row.segment_label_ids()):
            writer.writerow((row.store_id, k, k, k + 1, labels[label_id], label_id))
    return buffer.getvalue()


def write_ave_labels(
    dataset_dir: str | Path, *, annotations_out: str | Path, segments_out: str | Path
) -> int:
    """Write the UnAV-format annotations and the segment table of AVE's split rows (the raw
    video path: no features are read); return the number of rows written."""
    rows = read_ave_annotations(Path(dataset_dir) / "Annotations.txt")
    split_of_row = read_splits(dataset_dir, len(rows))
    write_annotations(annotations_out, annotations_json(rows, split_of_row))
    write_text_atomic(segments_out, segments_csv(rows, split_of_row))
    return len(split_of_row)


def check_ave_videos(dataset_dir: str | Path, video_ids: Iterable[str]) -> None:
    """Every row of the three splits has its clip among ``video_ids`` (file stems); raise
    naming the split file, the row and the video otherwise. Cheap: for DAG build."""
    dataset_dir = Path(dataset_dir)
    rows = read_ave_annotations(dataset_dir / "Annotations.txt")
    available = set(video_ids)
    split_of_row = read_splits(dataset_dir, len(rows))
    for row in rows:
        if row.row in split_of_row and row.video_id not in available:
            split_file = dataset_dir / SPLIT_FILES[split_of_row[row.row]]
            raise FeatureImportError(
                f"{split_file}: row {row.row} ({row.category}, line {row.row + 1} of "
                f"Annotations.txt) names video {row.video_id}, which is not in the videos "
                "folder; download it or remove the row"
            )


def import_ave(
    dataset_dir: str | Path,
    features_dir: str | Path,
    out_dir: str | Path,
    *,
    annotations_out: str | Path,
    segments_out: str | Path,
    dataset: str = "ave",
    encoder_set: str = "vgg19_vggish",
) -> ImportReport:
    """Write ``segments_out``, ``annotations_out`` and one store per split row of AVE.

    Args:
        dataset_dir: folder with ``Annotations.txt`` and the three ``*_order.h5`` files.
        features_dir: folder with ``visual_feature.h5`` and ``audio_feature.h5``.
        out_dir: feature folder, e.g. ``results/ave/features/vgg19_vggish``.
        annotations_out: UnAV-format annotations to write (for the detection stage).
        segments_out: AVE-style segment table to write (for segment accuracy).
        dataset: data set name recorded in the index.
        encoder_set: feature set name recorded in the index.
    """
    dataset_dir, features_dir = Path(dataset_dir), Path(features_dir)
    rows = read_ave_annotations(dataset_dir / "Annotations.txt")
    split_of_row = read_splits(dataset_dir, len(rows))
    write_annotations(annotations_out, annotations_json(rows, split_of_row))
    write_text_atomic(segments_out, segments_csv(rows, split_of_row))
    visual = _h5_dataset(features_dir / "visual_feature.h5", H5_KEY)
    audio = _h5_dataset(features_dir / "audio_feature.h5", H5_KEY)
    with visual.file, audio.file:
        for array, per_row in ((visual, VISUAL_SHAPE), (audio, AUDIO_SHAPE)):
            if array.shape != (len(rows), *per_row):
                raise FeatureImportError(
                    f"{array.file.filename}: '{H5_KEY}' has shape {array.shape}; expected "
                    f"{(len(rows), *per_row)} (one row per line of Annotations.txt)"
                )
        by_store = {row.store_id: row for row in rows if row.row in split_of_row}

        def load_row(store_id: str) -> ImportedVideo:
            row = by_store[store_id].row
            grid = np.asarray(visual[row], dtype=np.float32)  # (10, 7, 7, 512)
            sound = np.asarray(audio[row], dtype=np.float32)  # (10, 128)
            for array, name in ((grid, visual.file.filename), (sound, audio.file.filename)):
                if not np.all(np.isfinite(array)):
                    raise FeatureImportError(f"{name}: row {row} has NaN or infinite values")
            return ImportedVideo(
                video_id=store_id,
                visual=grid.mean(axis=(1, 2)),  # (10, 512): mean over the 7x7 map
                audio=sound,
                timestamps=GRID.timestamps(NUM_SEGMENTS),
                duration_s=CLIP_S,
                audio_present=True,
                extra_attrs={"ave_row": row, "source_video_id": by_store[store_id].video_id},
                visual_grid=grid,
            )

        settings = ImportSettings(
            importer="ave/vgg19_vggish",
            fps=None,
            window_s=GRID.window_s,
            stride_s=GRID.stride_s,
            encoders={
                "visual": {"name": "vgg19_pool5_mean", "dim": 512},
                "audio": {"name": "vggish", "dim": 128},
            },
            sample_rate=16000,
            details={"segment_s": 1.0, "visual_grid": list(VISUAL_SHAPE[1:])},
        )
        return run_import(
            list(by_store),
            load_row,
            settings=settings,
            out_dir=out_dir,
            missing="error",
            annotations_path=annotations_out,
            dataset=dataset,
            encoder_set=encoder_set,
        )


@user_errors(StoreError)
def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--labels-only" in argv:  # the raw-video path: labels, no features
        parser = argparse.ArgumentParser(description="Write AVE's labels of the split rows")
        parser.add_argument("--labels-only", action="store_true", required=True)
        parser.add_argument("--annotations", required=True, help="folder with Annotations.txt")
        parser.add_argument("--annotations-out", required=True, help="UnAV-format JSON to write")
        parser.add_argument("--segments-out", required=True, help="segments.csv to write")
        args = parser.parse_args(argv)
        written = write_ave_labels(
            args.annotations,
            annotations_out=args.annotations_out,
            segments_out=args.segments_out,
        )
        print(f"{written} AVE rows labelled")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_import_arguments(
        parser,
        annotations_help="folder with Annotations.txt and the *_order.h5 files",
        with_missing=False,
    )
    parser.add_argument("--annotations-out", required=True, help="UnAV-format JSON to write")
    parser.add_argument("--segments-out", required=True, help="segments.csv to write")
    args = parser.parse_args(argv)
    dataset, encoder_set = names_from_out(args.out, args.dataset, args.encoder_set)
    report = import_ave(
        args.annotations,
        args.features_dir,
        args.out,
        annotations_out=args.annotations_out,
        segments_out=args.segments_out,
        dataset=dataset,
        encoder_set=encoder_set,
    )
    rows = read_ave_annotations(Path(args.annotations) / "Annotations.txt")
    empty = [row.store_id for row in rows if row.start_s == row.end_s]
    note = f"\nrows with StartTime == EndTime (background only, no event): {empty}"
    print(summary_line(report) + (note if empty else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
