"""Where a data set's videos and annotations come from, and how videos are grouped into shards.

The Snakefile calls these at DAG-build time, so they must be cheap: the synthetic data set's ids
come from :func:`pipeline.synth.video_ids` without rendering anything, and the user's annotation
file is checked against the listed videos (:func:`check_annotations`) without decoding any.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.annotations import annotation_error, load_annotations

log = logging.getLogger(__name__)

# Hidden files named in the warning about skipped files; the rest are only counted.
HIDDEN_NAMES_SHOWN = 5


def list_videos(dataset: Mapping[str, Any]) -> dict[str, str]:
    """Video id -> path of every video of the data set, sorted by id.

    Synthetic videos live under ``results/{name}/videos/``; a ``videos`` source lists
    ``videos_dir`` (ids are file names without extension, which must be unique; any name is
    an id, its files are named after its :func:`pipeline.ids.safe_name`). Hidden files
    (names starting with ``.``, such as the ``._clip.mp4`` resource forks macOS leaves on copied
    folders) are not videos: they are skipped, with one warning giving their number.
    """
    if dataset["source"] == "import":
        return {}  # the importer reads the release's files itself
    if dataset["source"] == "synth":
        from pipeline.synth import video_ids

        synth = dataset["synth"]
        return {
            vid: f"results/{dataset['name']}/videos/{vid}.mp4"
            for vid in sorted(video_ids(synth["size"], synth["seed"]))
        }
    videos_dir = dataset.get("videos_dir")
    if not videos_dir:
        raise ValueError("dataset.videos_dir must be set when dataset.source is 'videos'")
    folder = Path(videos_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset.videos_dir {folder} is not a folder")
    extensions = {ext.lower() for ext in dataset["video_extensions"]}
    # Names, not Path objects: at a million files, sorting and splitting Paths costs tens of
    # seconds of every DAG build; the result is the same as `sorted(folder.iterdir())`.
    prefix = "" if folder == Path(".") else os.path.join(folder, "")
    videos: dict[str, str] = {}
    hidden: list[str] = []
    with os.scandir(folder) as scan:
        entries = {entry.name: entry for entry in scan}
    for name in sorted(entries):
        video_id, suffix = _stem_suffix(name)
        if suffix.lower() not in extensions or not _is_file(entries[name]):
            continue
        if name.startswith("."):
            hidden.append(name)
            continue
        # any name is an id: the extraction job refuses one too long to name a store
        if video_id in videos:
            raise ValueError(
                f"{folder}: two videos have the id {video_id!r}: {videos[video_id]}, {prefix}{name}"
            )
        videos[video_id] = prefix + name
    if hidden:
        shown = ", ".join(hidden[:HIDDEN_NAMES_SHOWN]) + (
            ", ..." if len(hidden) > HIDDEN_NAMES_SHOWN else ""
        )
        log.warning(
            "%s: skipped %d hidden file(s) with a video extension (names starting with '.', "
            "e.g. macOS '._' resource forks; not videos): %s",
            folder,
            len(hidden),
            shown,
        )
    if not videos:
        skipped = f" ({len(hidden)} hidden file(s) skipped)" if hidden else ""
        raise FileNotFoundError(
            f"{folder} holds no video with extensions {sorted(extensions)}{skipped}"
        )
    return videos


def _stem_suffix(name: str) -> tuple[str, str]:
    """A file name's :attr:`pathlib.PurePath.stem` and ``suffix``, without building a Path."""
    dot = name.rfind(".")
    if 0 < dot < len(name) - 1:
        return name[:dot], name[dot:]
    return name, ""


def _is_file(entry: os.DirEntry[str]) -> bool:
    """:meth:`pathlib.Path.is_file` of a folder entry, with no system call for a plain file (the
    folder listing gives its type); a link is followed as Path does."""
    if entry.is_file(follow_symlinks=False):
        return True
    return entry.is_symlink() and Path(entry.path).is_file()


def file_stamp(path: str | Path) -> dict[str, int]:
    """Size and modification time (ns) of a file, links followed: what make, rsync's quick check
    and Snakemake's mtime trigger compare to tell a changed file without reading it."""
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def files_stamp(paths: Iterable[str]) -> str:
    """One hash of ``paths`` and each one's :func:`file_stamp` (or the word ``missing``): it
    changes when a file is replaced, modified, added, removed or renamed."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stamp = file_stamp(path)
            record = f"{path}\0{stamp['size']}\0{stamp['mtime_ns']}\0"
        except FileNotFoundError:
            record = f"{path}\0missing\0"
        # NUL ends each field: no path holds one; any file name, even one not valid UTF-8
        digest.update(record.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def annotations_path(dataset: Mapping[str, Any]) -> str | None:
    """The data set's UnAV-100-format annotation file (the synthetic one is generated)."""
    if dataset["source"] == "synth":
        return f"results/{dataset['name']}/annotations.json"
    if dataset["source"] == "import":
        release = dataset["import"]
        if release["format"] == "unav100":
            return release["annotations"]
        return f"results/{dataset['name']}/annotations.json"  # converted by the importer
    return dataset.get("annotations")


def user_annotations_path(dataset: Mapping[str, Any]) -> str | None:
    """The user's own UnAV-100-format annotation file (raw videos, the UnAV-100 release), read
    when the DAG is built; None where a job writes it (the synthetic set, converted releases)."""
    if dataset["source"] == "videos":
        return dataset.get("annotations")
    if dataset["source"] == "import" and dataset["import"]["format"] == "unav100":
        return dataset["import"]["annotations"]
    return None


# The splits the detection runs read, and what they do with each.
DETECTION_SPLITS = {"train": "train", "validation": "select models", "test": "evaluate"}


def check_annotations(config: Mapping[str, Any], videos: Mapping[str, str]) -> None:
    """The user's annotation file (:func:`user_annotations_path`), checked when the DAG is
    built, before any video is decoded: its format (:func:`pipeline.annotations.load_annotations`:
    JSON syntax, segments, labels, ids), the splits the detection runs read and, for raw videos,
    that every annotated video is in ``videos_dir`` (where every run has
    ``training.missing: skip``, a warning instead). About 0.3 s for UnAV-100's 10,790 videos.

    Args:
        config: the resolved configuration (:func:`pipeline.config.validate_config`).
        videos: the data set's videos, id -> file (:func:`list_videos`).

    Raises:
        AnnotationError: naming the file and, where the mistake is in one video, the video, the
            annotation and the line.
    """
    dataset, path = config["dataset"], user_annotations_path(config["dataset"])
    if not path:
        return
    annotations = load_annotations(path)
    present = sorted({video.subset for video in annotations.videos.values()})
    for split, use in DETECTION_SPLITS.items():
        if split not in present:
            raise annotation_error(
                f"no video has subset {split!r} (subsets present: {present}); the detection "
                f'runs {use} on it: give some videos "subset": "{split}"',
                source=str(path),
            )
    absent = [video_id for video_id in annotations.videos if video_id not in videos]
    if dataset["source"] != "videos" or not absent:
        return
    failing = [
        f"runs.{name}"
        for name, run in config["runs"].items()
        if {**config["training"], **run.get("training", {})}["missing"] == "error"
    ]
    if not failing:  # every run leaves them out, as the user asked
        listed = ", ".join(map(repr, absent[:10])) + (" ..." if len(absent) > 10 else "")
        log.warning(
            "%s: %d annotated videos are not in dataset.videos_dir %s; training.missing: skip "
            "leaves them out of training and inference: %s",
            path,
            len(absent),
            dataset["videos_dir"],
            listed,
        )
        return
    others = ", ".join(map(repr, absent[1:11])) + (" ..." if len(absent) > 11 else "")
    raise annotation_error(
        f"not in dataset.videos_dir {dataset['videos_dir']}"
        + (f", nor are {len(absent) - 1} other annotated video(s): {others}" if others else "")
        + "; add the files, or set training.missing: skip to leave them out (training.missing "
        f"is error in {', '.join(failing)})",
        source=str(path),
        video_id=absent[0],
    )


def shard(video_ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """Consecutive groups of ``shard_size`` ids (the last one may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"extraction.shard_size must be at least 1, not {shard_size}")
    ids = list(video_ids)
    return [ids[start : start + shard_size] for start in range(0, len(ids), shard_size)]
