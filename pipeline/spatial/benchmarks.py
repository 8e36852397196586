"""Readers of the sound-source localisation benchmarks' releases, in the formats they define.

Each reader turns a release into :class:`BenchmarkSample` rows (an image, an audio file and the
seconds of it that go with the image, class labels, and for evaluated samples the 224x224
ground-truth map and pixel boxes), checking every file before anything is decoded or encoded.
The layouts and rules are those of the anchors' loaders (EZ-VSL ``datasets.py``, AVGN
``datasets.py``, AVSBench ``avs_s4/dataloader.py``); images are evaluated at 224x224.

- ``flickr_soundnet``: ``frames/<id>.jpg``, ``audio/<id>.wav``, ``Annotations/<id>.xml`` (one
  ``<bbox>`` per annotator, pixel coordinates of a 256x256 frame, rescaled ``int(224 * v / 256)``);
  GT = box count / 2, clipped to 1 (0.5 where one annotator marked a pixel). Test list
  ``flickr_test.csv``: ``id,<int>``, no header, second column unused. No class labels.
- ``vggss``: ``frames/<file>.jpg``, ``audio/<file>.wav``, ``vggss.json`` (``[{"file", "class",
  "bbox": [[x1, y1, x2, y2], ...]}]``, normalised); boxes ``int(clip(v, 0, 1) * 224)`` (which
  turns the release's ``-2.88e16`` sentinels into 0), GT = union. Test list: one id a line.
- ``vggsound_single``: the VGG-SS clips and boxes, classes from a ``id,class`` test list; GT =
  union (AVGN's loader leaves overlapping boxes summed above 1; maps here stay in [0, 1]).
- ``vgginstruments``: ``frames/sampleNNNN.jpg``, ``audio/sampleNNNN.wav``, ``anno/<id>.<ext>``
  (a pickled 2-D numpy mask, resized nearest-neighbour to 224x224 as ``cv2.INTER_NEAREST``
  does); test list ``sampleNNNN,class``, train list ``<ytid>_<start6>,class``.
- ``avsbench_s4``: ``s4_meta_data.csv`` (``name,start_time,category,split``);
  ``visual_frames/<split>/<category>/<name>/<name>_<k>.png`` (k = 1..5, frame k shows second
  k - 1), ``gt_masks/`` alike (224x224, binarised as PIL's ``convert("1")``; the train split has
  only ``_1``, which training never reads), ``audio_wav/<split>/<category>/<name>.wav``.

Audio windows: EZ-VSL's 3 s centred on the clip (``start = max(duration / 2 - 1.5, 0)``; a
shorter clip is used whole, not tiled) for the first four; AVSBench's second ``[k - 1, k]``.

Training lists (ids, or ``id,class`` lines) are optional: without one, the weakly supervised
localisers train on the test samples' image-sound pairs (no box or mask is read for training).

Bad samples (a file missing, an unreadable image, box or mask, audio shorter than the encoder's
window) are collected as :class:`SampleProblem` rows; ``on_error="fail"`` raises one
:class:`BenchmarkError` naming them, ``"skip"`` leaves them out and lists them. A VGG-SS clip
whose every box is empty after the anchors' clipping (two in the release) has no ground truth:
it is left out of the test split and listed as excluded (EZ-VSL keeps it, scoring cIoU 0).
"""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.config import SPATIAL_BENCHMARK_FORMATS
from pipeline.ids import check_video_id

FRAME = 224  # evaluated frame size (width = height), as every anchor evaluates
FLICKR_SPACE = 256  # Flickr-SoundNet boxes are pixels of a 256x256 frame
EZVSL_AUDIO_S = 3.0  # EZ-VSL's audio window, centred on the clip
AVSBENCH_FRAMES = 5  # frames per AVSBench clip, one per second
AVSBENCH_SPLITS = {"train": "train", "val": "validation", "test": "test"}
ON_ERROR = ("fail", "skip")
LISTS_WITH_CLASSES = {  # formats whose test list holds the classes: the list is required
    "vggsound_single": "vggsound_single_test.csv, 'id,class' lines",
    "vgginstruments": "vgginstruments_test.csv, 'sampleNNNN,class' lines",
}
PROBLEMS_SHOWN = 5


class BenchmarkError(ValueError):
    """A release cannot be read as its format; the message names the file (and the sample)."""


@dataclass(frozen=True)
class Release:
    """Where one benchmark release lies (``dataset.import`` of the workflow config).

    Args:
        format: one of :data:`~pipeline.config.SPATIAL_BENCHMARK_FORMATS`.
        root: folder of the evaluated release (``frames/`` and ``audio/``; AVSBench:
            ``visual_frames/``, ``gt_masks/``, ``audio_wav/``).
        annotations: annotation file or folder; None for the format's default under ``root``.
        test_list: test ids (None: every annotated sample; required where it holds the classes).
        train_list: training ids (None: train on the test samples' image-sound pairs).
        train_root: folder of the training ``frames/`` and ``audio/`` (None: ``root``).
    """

    format: str
    root: Path
    annotations: Path | None = None
    test_list: Path | None = None
    train_list: Path | None = None
    train_root: Path | None = None

    @classmethod
    def from_settings(cls, block: Mapping[str, Any]) -> Release:
        """Build from the config's ``dataset.import`` block (other formats' keys ignored)."""
        if block.get("format") not in SPATIAL_BENCHMARK_FORMATS:
            raise BenchmarkError(
                f"dataset.import.format {block.get('format')!r} is not a spatial benchmark "
                f"({', '.join(SPATIAL_BENCHMARK_FORMATS)})"
            )
        if not block.get("root"):
            raise BenchmarkError(f"dataset.import.root must be set for format {block['format']}")
        paths = {
            key: Path(block[key]).expanduser() if block.get(key) else None
            for key in ("annotations", "test_list", "train_list", "train_root")
        }
        return cls(format=block["format"], root=Path(block["root"]).expanduser(), **paths)

    @property
    def annotations_path(self) -> Path:
        default = {
            "flickr_soundnet": "Annotations",
            "vggss": "vggss.json",
            "vggsound_single": "vggss.json",
            "vgginstruments": "anno",
            "avsbench_s4": "s4_meta_data.csv",
        }[self.format]
        return self.annotations or self.root / default

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the release gives: AVSBench's three; the others' test split, and train
        where a training list is set."""
        if self.format == "avsbench_s4":
            return ("train", "validation", "test")
        return ("train", "test") if self.train_list is not None else ("test",)

    def required_paths(self) -> dict[str, tuple[Path, str]]:
        """Config key -> (path, "dir" or "file") of everything the release must hold."""
        where = "dataset.import"
        annotations_kind = "dir" if self.format in ("flickr_soundnet", "vgginstruments") else "file"
        paths = {f"{where}.root": (self.root, "dir")}
        paths[f"{where}.annotations"] = (self.annotations_path, annotations_kind)
        folders = (
            ("visual_frames", "gt_masks", "audio_wav")
            if self.format == "avsbench_s4"
            else ("frames", "audio")
        )
        for folder in folders:
            paths[f"{where}.root ({folder}/)"] = (self.root / folder, "dir")
        if self.test_list is not None:
            paths[f"{where}.test_list"] = (self.test_list, "file")
        if self.train_list is not None:
            paths[f"{where}.train_list"] = (self.train_list, "file")
            for folder in ("frames", "audio"):
                root = self.train_root or self.root
                paths[f"{where}.train_root ({folder}/)"] = (root / folder, "dir")
        return paths


def check_release(release: Release) -> None:
    """The release's folders, annotations and lists exist (cheap: run when the DAG is built).

    Raises:
        BenchmarkError: a list the format needs is not set.
        FileNotFoundError: naming the config key and the path.
    """
    if release.test_list is None and release.format in LISTS_WITH_CLASSES:
        raise BenchmarkError(
            f"format {release.format} needs dataset.import.test_list "
            f"({LISTS_WITH_CLASSES[release.format]}): it holds the test ids and their classes"
        )
    for key, (path, kind) in release.required_paths().items():
        exists = path.is_dir() if kind == "dir" else path.is_file()
        if not exists:
            what = "folder" if kind == "dir" else "file"
            raise FileNotFoundError(
                f"'{key}': the {release.format} release's {what} {path} does not exist; "
                "point the key at the downloaded release"
            )


@dataclass(frozen=True, eq=False)
class BenchmarkSample:
    """One image with its sound.

    Attributes:
        sample_id: the release's id (AVSBench: ``<name>_<k>``), unique in its split.
        split: ``train``, ``validation`` or ``test``.
        image_path: the frame.
        audio_path: the sound file.
        audio_start_s: start of the audio window in the file.
        audio_end_s: end of the audio window (at most the file's duration).
        classes: the sample's class labels (empty where the release has none).
        gt_map: (224, 224) float32 ground truth in [0, 1]; None for training samples.
        boxes: the sounding sources' ``[x0, y0, x1, y1]`` in 224x224 pixels (x1, y1 exclusive);
            empty where the release gives masks.
        clip_frame: the frame's index in its clip (AVSBench: k - 1; stills: 0).
    """

    sample_id: str
    split: str
    image_path: Path
    audio_path: Path
    audio_start_s: float
    audio_end_s: float
    classes: tuple[str, ...] = ()
    gt_map: np.ndarray | None = None
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    clip_frame: int = 0


@dataclass(frozen=True)
class SampleProblem:
    """Why a sample cannot be used (or was left out): the sample, its split, the file, why."""

    sample_id: str
    split: str
    path: str
    reason: str

    def message(self) -> str:
        return f"{self.split} sample {self.sample_id}: {self.path}: {self.reason}"


@dataclass
class BenchmarkRead:
    """A release read: the usable samples, the bad ones (skipped), the excluded ones (no ground
    truth left by the release's own rules) and warnings (boxes dropped or clipped)."""

    samples: list[BenchmarkSample] = field(default_factory=list)
    skipped: list[SampleProblem] = field(default_factory=list)
    excluded: list[SampleProblem] = field(default_factory=list)
    warnings: list[SampleProblem] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """JSON-ready counts and lists."""
        splits: dict[str, int] = {}
        for sample in self.samples:
            splits[sample.split] = splits.get(sample.split, 0) + 1
        return {
            "num_samples": splits,
            **{
                key: [asdict(problem) for problem in getattr(self, key)]
                for key in ("skipped", "excluded", "warnings")
            },
        }


class _BadSampleError(Exception):
    """One sample's problem, raised inside a reader and collected by :func:`read_benchmark`."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = str(path), reason


# ---------------------------------------------------------------- lists and files


def _lines(path: Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, csv fields) of a list file's non-blank lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if fields and any(f.strip() for f in fields):
            yield number, [f.strip() for f in fields]


def _checked_id(sample_id: str, path: Path, line: int) -> str:
    try:
        return check_video_id(sample_id)
    except ValueError as err:
        raise BenchmarkError(f"{path}, line {line}: {err}") from None


def read_id_list(path: Path, what: str, *, with_class: bool | None) -> dict[str, str | None]:
    """Id -> class (None without) of a list: ``id`` lines, ``id,class`` lines (``with_class``
    True), or either (None; Flickr's ``id,<int>`` second column is not a class and is read
    with ``with_class=False``). Duplicate ids and mixed forms are refused."""
    entries: dict[str, str | None] = {}
    forms = set()
    for line, fields in _lines(path, what):
        sample_id = _checked_id(fields[0], path, line)
        if with_class and len(fields) < 2:
            raise BenchmarkError(f"{path}, line {line}: expected 'id,class', got {fields!r}")
        label = fields[1] if (with_class is not False and len(fields) > 1) else None
        forms.add(label is not None)
        if sample_id in entries:
            raise BenchmarkError(f"{path}, line {line}: id {sample_id} is listed twice")
        entries[sample_id] = label
    if len(forms) > 1:
        raise BenchmarkError(f"{path}: some lines have a class and some do not; use one form")
    if not entries:
        raise BenchmarkError(f"{path} lists no sample")
    return entries


def _audio_duration(path: Path) -> float:
    import soundfile

    if not path.is_file():
        raise _BadSampleError(path, "the audio file does not exist")
    try:
        return float(soundfile.info(str(path)).duration)
    except RuntimeError as err:  # soundfile's LibsndfileError
        raise _BadSampleError(path, f"unreadable audio: {err}") from None


def _check_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise _BadSampleError(path, "the image file does not exist")
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise _BadSampleError(path, f"unreadable image: {err}") from None


def centred_window(duration_s: float, min_audio_s: float, path: Path) -> tuple[float, float]:
    """EZ-VSL's ``load_spectrogram`` window: 3 s centred on the clip, the whole clip if shorter."""
    if duration_s < min_audio_s:
        raise _BadSampleError(
            path,
            f"the audio lasts {duration_s:.3f} s, shorter than the audio encoder's window "
            f"({min_audio_s} s, extraction.window_s)",
        )
    start = max(duration_s / 2 - EZVSL_AUDIO_S / 2, 0.0)
    return start, min(start + EZVSL_AUDIO_S, duration_s)


# ---------------------------------------------------------------- ground truth


def box_map(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(224, 224) float32 count of the boxes covering each pixel (x1, y1 exclusive)."""
    counts = np.zeros((FRAME, FRAME), dtype=np.float32)
    for x0, y0, x1, y1 in boxes:
        counts[y0:y1, x0:x1] += 1.0
    return counts


def flickr_gt_map(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """EZ-VSL ``bbox2gtmap(format='flickr')``: box count / 2, clipped to 1."""
    return np.minimum(box_map(boxes) / 2.0, 1.0)


def union_gt_map(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """EZ-VSL ``bbox2gtmap(format='vggss')``: 1 where any box covers the pixel."""
    return (box_map(boxes) > 0).astype(np.float32)


def nearest_resize(mask: np.ndarray, size: int = FRAME) -> np.ndarray:
    """(size, size) resize as ``cv2.resize(..., INTER_NEAREST)``: source ``floor(i * h / size)``."""
    height, width = mask.shape
    rows = np.minimum((np.arange(size) * height) // size, height - 1)  # (size,)
    cols = np.minimum((np.arange(size) * width) // size, width - 1)  # (size,)
    return mask[rows[:, None], cols[None, :]]


def parse_flickr_xml(path: Path) -> list[tuple[int, int, int, int]]:
    """The annotators' boxes of one ``Annotations/<id>.xml`` in 224x224 pixels.

    As EZ-VSL ``load_all_bboxes(format='flickr')``: every ``<bbox>`` grandchild of the root, its
    first sub-element skipped and the next four read as xmin, ymin, xmax, ymax (by name when
    the sub-elements are named so), each ``int(224 * int(v) / 256)``.
    """
    if not path.is_file():
        raise _BadSampleError(path, "no annotation file (Annotations/<id>.xml)")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise _BadSampleError(path, f"unreadable XML: {err}") from None
    boxes = []
    for child in root:
        for bbox in child:
            if bbox.tag != "bbox":
                continue
            named = {element.tag: element.text for element in bbox}
            keys = ("xmin", "ymin", "xmax", "ymax")
            texts = [named[k] for k in keys] if set(keys) <= set(named) else None
            texts = texts or [element.text for element in list(bbox)[1:]]
            try:
                values = [int((text or "").strip()) for text in texts]
            except ValueError:
                raise _BadSampleError(
                    path, f"a <bbox> holds non-integer coordinates {texts}"
                ) from None
            if len(values) != 4:
                raise _BadSampleError(path, f"a <bbox> holds {len(values)} coordinates, not 4")
            xmin, ymin, xmax, ymax = values
            if not (0 <= xmin <= xmax <= FLICKR_SPACE and 0 <= ymin <= ymax <= FLICKR_SPACE):
                raise _BadSampleError(
                    path, f"box {values} lies outside the 256x256 annotation frame"
                )
            boxes.append(tuple(int(FRAME * v / FLICKR_SPACE) for v in values))
    if not boxes:
        raise _BadSampleError(path, "the annotation holds no <bbox>")
    return boxes


def vggss_boxes(raw: Any, source: str) -> tuple[list[tuple[int, int, int, int]], int]:
    """EZ-VSL ``load_all_bboxes(format='vggss')``: ``int(clip(v, 0, 1) * 224)`` per coordinate;
    returns the boxes and how many values were clipped (the release's sentinels among them)."""
    if not isinstance(raw, list) or not raw:
        raise _BadSampleError(
            source, f"'bbox' must be a non-empty list of [x1, y1, x2, y2], got {raw!r}"
        )
    boxes, clipped = [], 0
    for box in raw:
        ok = isinstance(box, list) and len(box) == 4
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        if not ok or not all(math.isfinite(v) for v in box):
            raise _BadSampleError(
                source, f"box {box!r} is not four finite numbers [x1, y1, x2, y2]"
            )
        values = np.asarray(box, dtype=np.float64)
        clipped += int(np.count_nonzero((values < 0) | (values > 1)))
        boxes.append(tuple(int(v) for v in (np.clip(values, 0, 1) * FRAME).astype(int)))
    return boxes, clipped


class _MaskUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else (no other global is resolved)."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a mask pickle")
        return super().find_class(module, name)


def read_pickled_mask(path: Path) -> np.ndarray:
    """A VGGSound-Instruments mask, resized nearest to (224, 224) float32.

    The release stores each mask as a Python pickle (AVGN ``datasets.py`` reads it with
    ``pickle.load``), and unpickling can run code: it is read here only because that is the
    release's format, with an unpickler that resolves numpy's array constructors and nothing
    else. Anything but a 2-D numeric array with values in [0, 1] is refused.
    """
    try:
        with path.open("rb") as handle:
            mask = _MaskUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
        raise _BadSampleError(path, f"not a pickled numpy mask: {err}") from None
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or 0 in mask.shape:
        shape = getattr(mask, "shape", None)
        raise _BadSampleError(
            path, f"unpickles to {type(mask).__name__} {shape}, not a 2-D numpy array"
        )
    if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_):
        raise _BadSampleError(path, f"the mask has non-numeric dtype {mask.dtype}")
    mask = mask.astype(np.float32)
    if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
        raise _BadSampleError(path, "mask values must be finite and in [0, 1]")
    return nearest_resize(mask)


def read_png_mask(path: Path) -> np.ndarray:
    """An AVSBench mask (224, 224) float32 in {0, 1}: PIL ``convert("1")``, as the anchor."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise _BadSampleError(path, "the ground-truth mask does not exist")
    try:
        with Image.open(path) as image:
            if image.size != (FRAME, FRAME):
                raise _BadSampleError(
                    path, f"the mask is {image.size[0]}x{image.size[1]}, not 224x224"
                )
            return np.asarray(image.convert("1"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as err:
        raise _BadSampleError(path, f"unreadable mask: {err}") from None


# ---------------------------------------------------------------- readers


class _NoGroundTruthError(_BadSampleError):
    """The release's own rules leave the sample without ground truth: left out, not an error."""


@dataclass
class _Context:
    """What a reader needs besides the release: the shortest audio the encoder takes."""

    release: Release
    min_audio_s: float
    read: BenchmarkRead

    def warn(self, sample_id: str, split: str, path: Path, reason: str) -> None:
        self.read.warnings.append(SampleProblem(sample_id, split, str(path), reason))


# A reader yields (sample id, split, build): build() checks the files and returns the sample,
# or raises _BadSampleError / _NoGroundTruthError.
Pending = tuple[str, str, Callable[[], BenchmarkSample]]


def _still(
    ctx: _Context, sample_id: str, split: str, root: Path, label: str | None, **truth: Any
) -> BenchmarkSample:
    """A ``frames/<id>.jpg`` + ``audio/<id>.wav`` sample with EZ-VSL's centred audio window."""
    image, audio = root / "frames" / f"{sample_id}.jpg", root / "audio" / f"{sample_id}.wav"
    _check_image(image)
    start, end = centred_window(_audio_duration(audio), ctx.min_audio_s, audio)
    classes = () if label is None else (label,)
    return BenchmarkSample(sample_id, split, image, audio, start, end, classes, **truth)


def _train_samples(ctx: _Context) -> Iterator[Pending]:
    release = ctx.release
    if release.train_list is None:
        return
    root = release.train_root or release.root
    listed = read_id_list(release.train_list, "training list", with_class=None)
    for sample_id, label in listed.items():
        yield sample_id, "train", partial(_still, ctx, sample_id, "train", root, label)


def _nonempty(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    return [box for box in boxes if box[2] > box[0] and box[3] > box[1]]


def _flickr_sample(ctx: _Context, sample_id: str) -> BenchmarkSample:
    path = ctx.release.annotations_path / f"{sample_id}.xml"
    boxes = parse_flickr_xml(path)
    kept = _nonempty(boxes)
    if len(kept) < len(boxes):
        ctx.warn(sample_id, "test", path, f"{len(boxes) - len(kept)} box(es) of zero area")
    if not kept:
        raise _BadSampleError(path, "every box has zero area at 224x224: no ground truth")
    truth = {"gt_map": flickr_gt_map(kept), "boxes": tuple(kept)}
    return _still(ctx, sample_id, "test", ctx.release.root, None, **truth)


def _flickr(ctx: _Context) -> Iterator[Pending]:
    release = ctx.release
    if release.test_list is not None:
        ids = list(read_id_list(release.test_list, "test list", with_class=False))
    else:
        ids = sorted({p.name.split(".")[0] for p in release.annotations_path.glob("*.xml")})
    for sample_id in ids:
        yield sample_id, "test", partial(_flickr_sample, ctx, sample_id)
    yield from _train_samples(ctx)


def _vggss_sample(
    ctx: _Context, sample_id: str, entry: dict[str, Any] | None, label: str | None
) -> BenchmarkSample:
    path = ctx.release.annotations_path
    if entry is None:
        raise _BadSampleError(path, "the sample has no entry (no boxes) in the annotations")
    boxes, clipped = vggss_boxes(entry.get("bbox"), f"{path} (file {sample_id})")
    kept = _nonempty(boxes)
    notes = [f"{clipped} value(s) outside [0, 1] clipped"] if clipped else []
    if len(kept) < len(boxes):
        notes.append(f"{len(boxes) - len(kept)} box(es) empty after clipping")
    if notes:
        ctx.warn(sample_id, "test", path, "; ".join(notes))
    if not kept:
        raise _NoGroundTruthError(
            path, "every box is empty after the anchors' clipping: no ground truth"
        )
    if ctx.release.format == "vggss":
        label = entry.get("class")
    truth = {"gt_map": union_gt_map(kept), "boxes": tuple(kept)}
    return _still(ctx, sample_id, "test", ctx.release.root, label, **truth)


def _vggss(ctx: _Context) -> Iterator[Pending]:
    release = ctx.release
    path = release.annotations_path
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"{path} is not a readable VGG-SS JSON file: {err}") from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and "file" in e for e in entries
    ):
        raise BenchmarkError(f"{path}: expected a list of {{'file', 'class', 'bbox'}} objects")
    by_file = {str(entry["file"]): entry for entry in entries}
    if release.format == "vggsound_single":
        listed = read_id_list(release.test_list, "test list", with_class=True)
    elif release.test_list is not None:
        listed = read_id_list(release.test_list, "test list", with_class=False)
    else:
        listed = dict.fromkeys(by_file)
        for sample_id in listed:
            try:
                check_video_id(sample_id)
            except ValueError as err:
                raise BenchmarkError(f"{path}: {err}") from None
    for sample_id, label in listed.items():
        entry = by_file.get(sample_id)
        yield sample_id, "test", partial(_vggss_sample, ctx, sample_id, entry, label)
    yield from _train_samples(ctx)


def _instrument_sample(
    ctx: _Context, sample_id: str, masks: list[Path], label: str | None
) -> BenchmarkSample:
    if len(masks) != 1:
        where = ctx.release.annotations_path / f"{sample_id}.*"
        raise _BadSampleError(where, f"{len(masks)} mask files for the sample, expected 1")
    gt_map = read_pickled_mask(masks[0])
    return _still(ctx, sample_id, "test", ctx.release.root, label, gt_map=gt_map)


def _vgginstruments(ctx: _Context) -> Iterator[Pending]:
    release = ctx.release
    masks: dict[str, list[Path]] = {}
    for path in sorted(release.annotations_path.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            masks.setdefault(path.name.split(".")[0], []).append(path)
    listed = read_id_list(release.test_list, "test list", with_class=True)
    for sample_id, label in listed.items():
        found = masks.get(sample_id, [])
        yield sample_id, "test", partial(_instrument_sample, ctx, sample_id, found, label)
    yield from _train_samples(ctx)


def _avsbench_sample(
    ctx: _Context, name: str, category: str, split: str, folder: Path, k: int
) -> BenchmarkSample:
    root = ctx.release.root
    image = root / "visual_frames" / folder / f"{name}_{k}.png"
    audio = root / "audio_wav" / folder.parent / f"{name}.wav"
    _check_image(image)
    duration = _audio_duration(audio)
    end = min(float(k), duration)
    if end - (k - 1) < ctx.min_audio_s:
        raise _BadSampleError(
            audio,
            f"the audio lasts {duration:.3f} s: frame {k}'s second [{k - 1}, {k}] holds less "
            f"than the audio encoder's window ({ctx.min_audio_s} s, extraction.window_s)",
        )
    gt_map = None
    if split != "train":  # the train split has only _1 masks, and training reads none
        gt_map = read_png_mask(root / "gt_masks" / folder / f"{name}_{k}.png")
    return BenchmarkSample(
        f"{name}_{k}", split, image, audio, float(k - 1), end, (category,), gt_map, (), k - 1
    )


def _avsbench(ctx: _Context) -> Iterator[Pending]:
    meta = ctx.release.annotations_path
    rows = list(_lines(meta, "AVSBench meta file"))
    header = rows[0][1] if rows else []
    if not {"name", "category", "split"} <= set(header):
        raise BenchmarkError(f"{meta}: the header must name name, category, split; got {header}")
    column = {key: header.index(key) for key in ("name", "category", "split")}
    for line, fields in rows[1:]:
        name = _checked_id(fields[column["name"]], meta, line)
        category = _checked_id(fields[column["category"]], meta, line)
        release_split = fields[column["split"]]
        split = AVSBENCH_SPLITS.get(release_split)
        if split is None:
            raise BenchmarkError(f"{meta}, line {line}: unknown split {release_split!r}")
        folder = Path(release_split) / category / name
        for k in range(1, AVSBENCH_FRAMES + 1):
            build = partial(_avsbench_sample, ctx, name, category, split, folder, k)
            yield f"{name}_{k}", split, build


READERS: dict[str, Callable[[_Context], Iterator[Pending]]] = {
    "flickr_soundnet": _flickr,
    "vggss": _vggss,
    "vggsound_single": _vggss,
    "vgginstruments": _vgginstruments,
    "avsbench_s4": _avsbench,
}


def read_benchmark(
    release: Release, *, min_audio_s: float, on_error: str = "fail"
) -> BenchmarkRead:
    """Every sample of the release, checked (files, boxes, masks, audio length).

    Args:
        release: where the release lies.
        min_audio_s: the audio encoder's window (``extraction.window_s``): shorter audio is bad.
        on_error: ``fail`` raises naming the bad samples; ``skip`` lists them in ``skipped``.

    Raises:
        BenchmarkError: bad samples with ``on_error="fail"`` (the message names each sample and
            its file), or a list or annotation file that cannot be read at all.
        FileNotFoundError: a folder, list or annotation file of the release is missing.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    check_release(release)
    read = BenchmarkRead()
    ctx = _Context(release, float(min_audio_s), read)
    seen: set[tuple[str, str]] = set()
    for sample_id, split, build in READERS[release.format](ctx):
        if (split, sample_id) in seen:
            raise BenchmarkError(f"{split} sample {sample_id} is listed twice")
        seen.add((split, sample_id))
        try:
            read.samples.append(build())
        except _NoGroundTruthError as err:
            read.excluded.append(SampleProblem(sample_id, split, err.path, err.reason))
        except _BadSampleError as err:
            read.skipped.append(SampleProblem(sample_id, split, err.path, err.reason))
    if read.skipped and on_error == "fail":
        shown = "; ".join(problem.message() for problem in read.skipped[:PROBLEMS_SHOWN])
        more = len(read.skipped) - PROBLEMS_SHOWN
        raise BenchmarkError(
            f"{len(read.skipped)} bad sample(s) in the {release.format} release: {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + ". Fix the files, or set extraction.on_error: skip to leave them out (listed in "
            "the set's report.json)"
        )
    if not any(sample.split == "test" for sample in read.samples):
        raise BenchmarkError(
            f"no usable test sample in the {release.format} release {release.root}"
        )
    return read
