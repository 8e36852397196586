"""Where a data set's videos and annotations come from, and how videos are grouped into shards.

The Snakefile calls these at DAG-build time, so they must be cheap: the synthetic data set's ids
come from :func:`pipeline.synth.video_ids` without rendering anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.ids import check_video_id

log = logging.getLogger(__name__)

# Hidden files named in the warning about skipped files; the rest are only counted.
HIDDEN_NAMES_SHOWN = 5


def list_videos(dataset: Mapping[str, Any]) -> dict[str, str]:
    """Video id -> path of every video of the data set, sorted by id.

    Synthetic videos live under ``results/{name}/videos/``; a ``videos`` source lists
    ``videos_dir`` (ids are file names without extension, which must be unique). Hidden files
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
    videos: dict[str, str] = {}
    hidden: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.name.startswith("."):
            hidden.append(path.name)
            continue
        try:
            video_id = check_video_id(path.stem)
        except ValueError as err:
            raise ValueError(f"{path}: {err}; rename the file") from err
        if video_id in videos:
            raise ValueError(
                f"{folder}: two videos have the id {video_id!r}: {videos[video_id]}, {path}"
            )
        videos[video_id] = str(path)
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


def shard(video_ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """Consecutive groups of ``shard_size`` ids (the last one may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"extraction.shard_size must be at least 1, not {shard_size}")
    ids = list(video_ids)
    return [ids[start : start + shard_size] for start in range(0, len(ids), shard_size)]
