"""One Zarr v3 store per video: the feature layout shared by extraction, importers and datasets.

Layout of ``{name}.zarr``, ``name`` the video id's :func:`pipeline.ids.safe_name` (the id itself
for letters, digits, ``_.-``), all arrays chunked along T only, about 1 MiB a chunk, zstd:

- ``visual``      (T, Dv) float32: pooled visual embedding of each snippet
- ``audio``       (T, Da) float32: audio embedding of each snippet (zeros without audio)
- ``timestamps``  (T, 2) float64: ``[start_s, end_s]`` of each snippet
- ``centres``     (T,) float64: centre time of each snippet, the time a grid position stands for
- ``visual_grid`` (T, H', W', Dg) float32, optional: patch grid for sound-source localisation

Attributes: ``video_id``, ``fps``, ``window_s``, ``stride_s``, ``sample_rate``, ``encoders``
(``{"visual": {...config, "dim"}, "audio": {...}}``), ``settings`` (the extraction settings;
absent from imported stores), ``config_hash``, ``video`` (probed metadata, with the decoded
stream's index ``video_stream`` and its display ``rotation`` and ``mirrored``), ``source`` (the
video file), ``audio_present``, ``decode_errors`` (``{stream: figures}`` of the packets the
decoder skipped, ``{}`` when none; absent from imported stores), ``num_snippets``,
``format_version``, ``checksums`` (``{array: "sha256:<hex>"}`` of each array's chunk files as
written, see :func:`chunk_checksum`; absent from stores written before them) and, written last,
``complete``.

Every reader goes through :func:`open_store` (typed attributes, arrays read lazily) or
:func:`read_store` (arrays loaded into memory): the attributes are parsed and cast once, into a
:class:`StoreInfo`, and a missing or mistyped one raises :class:`StoreError` naming the store and
the key.

A store is written under a temporary name in the same folder and renamed into place when complete,
so a killed job never leaves a store that :func:`is_complete` accepts. :func:`stream_store` writes
it block by block as extraction embeds a video (so a long video's arrays never sit in memory
whole); :func:`write_store` writes arrays already in memory through it. :func:`verify_store` reads
every chunk file back and checks it against ``checksums``, so a chunk damaged on disk later is
found (and named) before training reads it; the index does that for every store.
"""

# Over 400 lines on purpose: the layout, its one writer and its one reader (StoreInfo) stay in one
# module, so the attribute names and their casts are written once.

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20  # Zarr's advice: chunks of about 1 MiB
REQUIRED_ARRAYS = ("visual", "audio", "timestamps", "centres")
REQUIRED_ATTRS = ("video_id", "window_s", "stride_s", "config_hash", "audio_present")
MODALITIES = ("visual", "audio")
ARRAY_DTYPES = {  # every array of the layout, in its order
    "visual": np.float32,
    "audio": np.float32,
    "timestamps": np.float64,
    "visual_grid": np.float32,
    "centres": np.float64,
}
# StoreInfo fields that may be absent, and the attribute each one is read from
OPTIONAL_KEYS = {
    "fps": "fps",
    "sample_rate": "sample_rate",
    "duration_s": "video.duration_s",
    "video_fps": "video.fps",
    "frame_size": "video.width/video.height",
    "video_path": "source",
    "settings": "settings",
}


class StoreError(RuntimeError):
    """A feature store is missing, incomplete or inconsistent; the message names its path."""


class CorruptStoreError(StoreError):
    """A finished store's chunk files do not match its checksums (damaged or removed on disk);
    the message names the store and the array."""


def _attribute_error(where: str, key: str, problem: str) -> StoreError:
    return StoreError(f"{where}: attribute {key!r} {problem}; extract (or import) the video again")


def _number(where: str, key: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _attribute_error(where, key, f"is {value!r}, not a finite number")
    if positive and value <= 0:
        raise _attribute_error(where, key, f"is {value!r}, not a positive number")
    return float(value)


def _typed(where: str, key: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise _attribute_error(where, key, f"is {value!r}, not of type {kind.__name__}")
    return value


def _encoders(where: str, value: Any) -> dict[str, dict[str, Any]]:
    _typed(where, "encoders", value, dict)
    for modality, config in value.items():
        _typed(where, f"encoders.{modality}", config, dict)
        if "dim" in config:
            _typed(where, f"encoders.{modality}.dim", config["dim"], int)
    return value


@dataclass(frozen=True)
class StoreInfo:
    """A feature store's attributes, typed; built by :meth:`from_attrs`, which refuses a missing
    required attribute or a mistyped one with a :class:`StoreError` naming the store and the key.

    Attributes an importer may leave out are ``None`` (see :data:`OPTIONAL_KEYS`);
    :meth:`require` reads one that a stage cannot do without.
    """

    where: str  # the store's path (or what the attributes came from), named in errors
    video_id: str
    window_s: float  # seconds each snippet sees
    stride_s: float  # seconds between consecutive snippets
    config_hash: str  # hash of the extraction (or import) settings and the encoders' configs
    audio_present: bool  # False: the video has no audio stream, its audio rows are zeros
    num_snippets: int  # T, the rows of every array
    fps: float | None = None  # frame rate the visual encoder sampled (None: a release omits it)
    sample_rate: int | None = None  # audio sample rate in Hz
    duration_s: float | None = None  # the video's duration (``video.duration_s``)
    video_fps: float | None = None  # the source video's frame rate (``video.fps``)
    frame_size: tuple[int, int] | None = None  # (width, height) of the source video's frames
    video_path: str | None = None  # the video file the features were extracted from
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> config, dim
    settings: dict[str, Any] | None = None  # extraction settings (pipeline.extract); None: import
    has_visual_grid: bool = False  # the store holds a ``visual_grid`` array
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)  # every attribute as stored

    @classmethod
    def from_attrs(
        cls, attrs: Mapping[str, Any], *, where: str, num_snippets: int | None = None
    ) -> StoreInfo:
        """Parse and cast a store's attributes; ``num_snippets`` stands in for an absent one."""
        attrs = dict(attrs)
        if num_snippets is not None:
            attrs.setdefault("num_snippets", num_snippets)
        for key in (*REQUIRED_ATTRS, "num_snippets"):
            if key not in attrs:
                raise _attribute_error(where, key, "is missing")
        video = _typed(where, "video", attrs.get("video", {}), dict)
        optional: dict[str, Any] = {}
        if attrs.get("fps") is not None:
            optional["fps"] = _number(where, "fps", attrs["fps"], positive=True)
        if attrs.get("sample_rate") is not None:
            optional["sample_rate"] = _typed(where, "sample_rate", attrs["sample_rate"], int)
        if video.get("duration_s") is not None:
            duration = _number(where, "video.duration_s", video["duration_s"], positive=False)
            optional["duration_s"] = duration
        if video.get("fps") is not None:
            optional["video_fps"] = _number(where, "video.fps", video["fps"], positive=False)
        if "width" in video and "height" in video:
            size = (video["width"], video["height"])
            optional["frame_size"] = tuple(
                _typed(where, f"video.{key}", value, int)
                for key, value in zip(("width", "height"), size, strict=True)
            )
        if attrs.get("source", video.get("path")) is not None:
            optional["video_path"] = str(attrs.get("source", video.get("path")))
        if attrs.get("settings") is not None:
            optional["settings"] = _typed(where, "settings", attrs["settings"], dict)
        return cls(
            where=where,
            video_id=_typed(where, "video_id", attrs["video_id"], str),
            window_s=_number(where, "window_s", attrs["window_s"], positive=True),
            stride_s=_number(where, "stride_s", attrs["stride_s"], positive=True),
            config_hash=_typed(where, "config_hash", attrs["config_hash"], str),
            audio_present=_typed(where, "audio_present", attrs["audio_present"], bool),
            num_snippets=_typed(where, "num_snippets", attrs["num_snippets"], int),
            encoders=_encoders(where, attrs.get("encoders", {})),
            has_visual_grid=_typed(
                where, "has_visual_grid", attrs.get("has_visual_grid", False), bool
            ),
            attrs=attrs,
            **optional,
        )

    def require(self, name: str) -> Any:
        """The value of the optional field ``name``; :class:`StoreError` when the store lacks it."""
        value = getattr(self, name)
        if value is None:
            raise _attribute_error(self.where, OPTIONAL_KEYS[name], "is missing")
        return value

    @property
    def dims(self) -> dict[str, int]:
        """Feature width of each modality, from ``encoders.{modality}.dim``."""
        for modality in MODALITIES:
            if "dim" not in self.encoders.get(modality, {}):
                raise _attribute_error(self.where, f"encoders.{modality}.dim", "is missing")
        return {modality: int(self.encoders[modality]["dim"]) for modality in MODALITIES}


@dataclass(frozen=True)
class VideoFeatures:
    """The contents of one video's feature store, loaded into memory.

    Args:
        info: the typed attributes; parsed from ``attrs`` when not given.
    """

    video_id: str
    visual: np.ndarray  # (T, Dv) float32
    audio: np.ndarray  # (T, Da) float32
    timestamps: np.ndarray  # (T, 2) float64, [start_s, end_s]
    attrs: dict[str, Any]
    visual_grid: np.ndarray | None = None  # (T, H', W', Dg) float32
    info: StoreInfo = field(default=None, repr=False)  # set by __post_init__ when not given

    def __post_init__(self) -> None:
        if self.info is None:  # features in memory: typed as a store would hold them
            where = f"features of video {self.video_id}"
            attrs = _json_ready(self.attrs)  # numpy scalars -> plain types, as write_store does
            info = StoreInfo.from_attrs(attrs, where=where, num_snippets=self.num_snippets)
            object.__setattr__(self, "info", info)

    @property
    def num_snippets(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def centres(self) -> np.ndarray:
        """(T,) centre time of each snippet in seconds."""
        return self.timestamps.mean(axis=1)


def chunk_checksum(array_dir: Path) -> str:
    """``sha256:<hex>`` of one array's chunk files (compressed, as on disk), each with its path
    relative to ``array_dir``, in sorted order; the array's ``zarr.json`` is left out.

    Hashing the files rather than the decoded values costs no decompression (about 1 ms for a
    demo store, 30 ms for an hour of 1280-d features), and still finds a flipped byte, a
    truncated chunk and a removed one (Zarr would read a removed chunk as zeros, silently).
    """
    digest = hashlib.sha256()
    files = sorted(path for path in array_dir.rglob("*") if path.is_file())
    for path in files:
        key = path.relative_to(array_dir).as_posix()
        if key == "zarr.json":
            continue
        digest.update(key.encode() + b"\0")
        digest.update(path.read_bytes())  # one chunk: about CHUNK_BYTES, less once compressed
    return f"sha256:{digest.hexdigest()}"


def rows_per_chunk(row_shape: tuple[int, ...], itemsize: int) -> int:
    """Rows of an array chunked along T so that one chunk holds about :data:`CHUNK_BYTES`."""
    row_bytes = max(1, math.prod(row_shape) * itemsize)
    return max(1, CHUNK_BYTES // row_bytes)


def _json_ready(value: Any) -> Any:
    """Round-trip through JSON so that attributes hold only plain types (numpy scalars refused)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"attribute value of type {type(value).__name__} is not JSON-serialisable")


def _check_shapes(path: Path, arrays: Mapping[str, np.ndarray | None]) -> int:
    timestamps = arrays["timestamps"]
    if timestamps is None or timestamps.ndim != 2 or timestamps.shape[1] != 2:
        raise StoreError(f"{path}: timestamps must have shape (T, 2)")
    num_snippets = timestamps.shape[0]
    for name, array in arrays.items():
        if array is None:
            continue
        if array.shape[0] != num_snippets:
            raise StoreError(
                f"{path}: array {name!r} has {array.shape[0]} rows but the grid has "
                f"{num_snippets} snippets"
            )
        if not np.all(np.isfinite(array)):
            raise StoreError(f"{path}: array {name!r} contains NaN or infinite values")
    return num_snippets


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write into; renamed to ``path`` (replacing it)
    when the block ends without error, removed otherwise, so a killed or failed job never
    leaves a folder that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class StoreWriter:
    """Writes one store's arrays block by block, in row order, so a long video's features never
    sit in memory whole; made by :func:`stream_store`, which writes ``timestamps`` and
    ``centres``. Rows wait only until they fill a chunk, so each chunk is written once.

    Args:
        path: the store's final path (named in errors).
        folder: the temporary folder the store is written in.
        num_snippets: T, the rows each array must get.
    """

    def __init__(self, path: Path, folder: Path, num_snippets: int) -> None:
        self.path, self.folder, self.num_snippets = path, folder, num_snippets
        self.group = zarr.open_group(folder, mode="w", zarr_format=3)
        self.arrays: dict[str, zarr.Array] = {}
        self.written: dict[str, int] = {}  # rows written to each array's chunks
        self.pending: dict[str, np.ndarray] = {}  # rows short of a whole chunk, per array
        self.finished = False

    def append(self, name: str, rows: np.ndarray) -> None:
        """Append ``rows`` (n, ...) to array ``name`` (one of :data:`ARRAY_DTYPES`)."""
        if name not in ARRAY_DTYPES:
            raise StoreError(f"{self.path}: unknown array {name!r}; expected {list(ARRAY_DTYPES)}")
        rows = np.ascontiguousarray(rows, dtype=ARRAY_DTYPES[name])
        if not np.all(np.isfinite(rows)):
            raise StoreError(f"{self.path}: array {name!r} contains NaN or infinite values")
        if name not in self.arrays:
            chunk_rows = rows_per_chunk(rows.shape[1:], rows.itemsize)
            self.arrays[name] = self.group.create_array(
                name,
                shape=(self.num_snippets, *rows.shape[1:]),
                dtype=rows.dtype,
                chunks=(min(chunk_rows, self.num_snippets), *rows.shape[1:]),
                compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
            )
            self.written[name], self.pending[name] = 0, rows[:0]
        array, pending = self.arrays[name], self.pending[name]
        if rows.shape[1:] != array.shape[1:]:
            raise StoreError(
                f"{self.path}: rows of shape {rows.shape[1:]} appended to array {name!r} of rows "
                f"{array.shape[1:]}"
            )
        if self.written[name] + len(pending) + len(rows) > self.num_snippets:
            raise StoreError(
                f"{self.path}: array {name!r} gets more rows than the grid's "
                f"{self.num_snippets} snippets"
            )
        rows = np.concatenate([pending, rows]) if len(pending) else rows  # (n, ...)
        whole = len(rows) - len(rows) % array.chunks[0]  # rows that fill whole chunks
        self._write(name, rows[:whole])
        self.pending[name] = rows[whole:].copy()  # the tail only: frees a long block

    def _write(self, name: str, rows: np.ndarray) -> None:
        if len(rows):
            start = self.written[name]
            self.arrays[name][start : start + len(rows)] = rows
            self.written[name] += len(rows)

    def finish(self, attrs: Mapping[str, Any]) -> None:
        """Write the last rows and the attributes (``checksums`` among them), then ``complete``;
        every array must have T rows by now."""
        missing = [key for key in REQUIRED_ATTRS if key not in attrs]
        if missing:
            raise StoreError(f"{self.path}: attributes {missing} are required")
        for name in self.arrays:
            self._write(name, self.pending.pop(name))
            if self.written[name] != self.num_snippets:
                raise StoreError(
                    f"{self.path}: array {name!r} has {self.written[name]} rows but the grid has "
                    f"{self.num_snippets} snippets"
                )
        absent = [name for name in REQUIRED_ARRAYS if name not in self.arrays]
        if absent:
            raise StoreError(f"{self.path}: arrays {absent} were never written")
        names = [name for name in ARRAY_DTYPES if name in self.arrays]  # the layout's order
        self.group.attrs.update(
            _json_ready(
                {
                    **attrs,
                    "num_snippets": self.num_snippets,
                    "format_version": FORMAT_VERSION,
                    "has_visual_grid": "visual_grid" in self.arrays,
                    "checksums": {name: chunk_checksum(self.folder / name) for name in names},
                }
            )
        )
        self.group.attrs["complete"] = True  # written last: marks the store as finished
        self.finished = True


@contextlib.contextmanager
def stream_store(path: str | Path, *, timestamps: np.ndarray) -> Iterator[StoreWriter]:
    """Write one video's store array block by array block, atomically like :func:`write_store`:
    the block appends each array's rows in order (:meth:`StoreWriter.append`) and ends with
    :meth:`StoreWriter.finish`; the store is renamed into place only then, and removed when the
    block raises.

    Args:
        path: destination ``{video_id}.zarr``; replaced if it exists.
        timestamps: (T, 2) ``[start_s, end_s]`` per snippet (``centres`` follow from them).
    """
    path = Path(path)
    timestamps = np.ascontiguousarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 2 or timestamps.shape[1] != 2:
        raise StoreError(f"{path}: timestamps must have shape (T, 2)")
    if timestamps.shape[0] == 0:
        raise StoreError(f"{path}: a store needs at least one snippet")
    with atomic_directory(path) as tmp:
        writer = StoreWriter(path, tmp, timestamps.shape[0])
        writer.append("timestamps", timestamps)
        writer.append("centres", timestamps.mean(axis=1))  # (T,)
        yield writer
        if not writer.finished:
            raise StoreError(f"{path}: the store was left unfinished (StoreWriter.finish)")


def write_store(
    path: str | Path,
    *,
    visual: np.ndarray,
    audio: np.ndarray,
    timestamps: np.ndarray,
    attrs: Mapping[str, Any],
    visual_grid: np.ndarray | None = None,
) -> Path:
    """Write one video's features atomically (temporary name, then rename) and return the path.

    Args:
        path: destination ``{video_id}.zarr``; replaced if it exists.
        visual: (T, Dv) snippet embeddings.
        audio: (T, Da) snippet embeddings.
        timestamps: (T, 2) ``[start_s, end_s]`` per snippet.
        attrs: store attributes; must hold :data:`REQUIRED_ATTRS`.
        visual_grid: optional (T, H', W', Dg) spatial embeddings.
    """
    path = Path(path)
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StoreError(f"{path}: attributes {missing} are required")
    arrays = {
        "visual": np.ascontiguousarray(visual, dtype=np.float32),
        "audio": np.ascontiguousarray(audio, dtype=np.float32),
        "timestamps": np.ascontiguousarray(timestamps, dtype=np.float64),
        "visual_grid": None
        if visual_grid is None
        else np.ascontiguousarray(visual_grid, dtype=np.float32),
    }
    num_snippets = _check_shapes(path, arrays)
    if num_snippets == 0:
        raise StoreError(f"{path}: a store needs at least one snippet")
    with stream_store(path, timestamps=arrays["timestamps"]) as writer:
        for name in ("visual", "audio", "visual_grid"):
            if arrays[name] is not None:
                writer.append(name, arrays[name])
        writer.finish(attrs)
    return path


@dataclass(frozen=True)
class FeatureStore:
    """A finished store opened for lazy reading: its typed attributes and its Zarr arrays.

    ``store["visual"]`` is the Zarr array (index it to read rows, e.g. ``store["visual"][a:b]``);
    :meth:`read` loads the arrays into memory.

    Args:
        path: the ``{video_id}.zarr`` folder.
        info: its attributes, typed.
        group: the Zarr group, opened read-only.
    """

    path: Path
    info: StoreInfo
    group: zarr.Group = field(repr=False)

    def __contains__(self, name: str) -> bool:
        return name in self.group

    def __getitem__(self, name: str) -> zarr.Array:
        if name not in self.group:
            raise StoreError(f"{self.path} has no array {name!r}; extract it again")
        return self.group[name]

    def read(self, *, with_grid: bool = False) -> VideoFeatures:
        """Load the visual, audio and timestamp arrays (and ``visual_grid`` when ``with_grid``);
        rows that disagree with the timestamps, NaN or infinite values raise :class:`StoreError`."""
        visual_grid = None
        if with_grid:
            if "visual_grid" not in self.group:
                raise StoreError(
                    f"{self.path} has no visual_grid; extract with `extraction.visual_grid: true`"
                )
            visual_grid = self.rows("visual_grid")
        arrays = {name: self.rows(name) for name in ("visual", "audio", "timestamps")}
        _check_shapes(self.path, {**arrays, "visual_grid": visual_grid})
        return VideoFeatures(
            video_id=self.info.video_id,
            visual=arrays["visual"],
            audio=arrays["audio"],
            timestamps=arrays["timestamps"],
            attrs=self.info.attrs,
            visual_grid=visual_grid,
            info=self.info,
        )

    def rows(self, name: str, rows: slice | None = None) -> np.ndarray:
        """Rows ``rows`` of array ``name`` (all when None), reading only their chunks; a chunk
        that does not decode raises :class:`CorruptStoreError`."""
        array = self[name]
        try:  # Zarr reports a damaged chunk as blosc's RuntimeError, a short one as ValueError
            return array[...] if rows is None else array[rows]
        except (RuntimeError, ValueError) as err:
            raise CorruptStoreError(
                f"{self.path}: array {name!r} has a chunk that does not decode ({err}); "
                "`snakemake --cores N --forcerun index` finds every damaged store and removes "
                "it, and the next run extracts it again"
            ) from err


def open_store(path: str | Path) -> FeatureStore:
    """Open a finished store read-only: typed attributes now, arrays read lazily.

    Raises:
        StoreError: the store is missing, unfinished, lacks an array or has a missing or
            mistyped attribute; the message names the store (and the attribute).
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"feature store {path} does not exist; run the extraction stage first")
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise StoreError(f"{path} is not a readable Zarr feature store: {err}") from err
    attrs = dict(group.attrs)
    if not attrs.get("complete", False):
        raise StoreError(f"{path} is incomplete (its writer was interrupted); extract it again")
    missing = [name for name in REQUIRED_ARRAYS if name not in group]
    if missing:
        raise StoreError(f"{path} lacks arrays {missing}; extract it again")
    return FeatureStore(path=path, info=StoreInfo.from_attrs(attrs, where=str(path)), group=group)


def verify_store(store: FeatureStore) -> bool:
    """Read every chunk file of the store's arrays and check it against its ``checksums``.

    Returns:
        True when every array matched; False when the store has no ``checksums`` (written
        before them: unverified, but readable as before).

    Raises:
        CorruptStoreError: an array's chunk files do not match its checksum, or an array with
            a checksum is missing; the message names the store and the array.
    """
    checksums = store.info.attrs.get("checksums")
    if checksums is None:
        return False
    _typed(str(store.path), "checksums", checksums, dict)
    for name, expected in sorted(checksums.items()):
        if not (store.path / name / "zarr.json").is_file():
            raise CorruptStoreError(f"{store.path}: array {name!r} is missing; extract it again")
        actual = chunk_checksum(store.path / name)
        if actual != expected:
            raise CorruptStoreError(
                f"{store.path}: array {name!r} does not match its checksum (written {expected}, "
                f"read {actual}): a chunk file was damaged or removed; extract it again"
            )
    return True


def is_complete(
    path: str | Path,
    config_hash: str | None = None,
    source_file: Mapping[str, int] | None = None,
) -> bool:
    """True when ``path`` is a finished, readable store, written with ``config_hash`` when one
    is given, from a file of this ``source_file`` stamp (its ``source_file`` attribute:
    :func:`pipeline.sources.file_stamp`) when one is given."""
    try:
        store = open_store(path)
    except StoreError:
        return False
    if config_hash is not None and store.info.config_hash != config_hash:
        return False
    return source_file is None or store.info.attrs.get("source_file") == dict(source_file)


def read_store(path: str | Path, *, with_grid: bool = False) -> VideoFeatures:
    """Load one store into memory (the visual grid only when ``with_grid``); see
    :meth:`FeatureStore.read`."""
    return open_store(path).read(with_grid=with_grid)
