"""Stage 1: embed each snippet of a video with a visual and an audio encoder on one time grid,
into one feature store per video.

A video is decoded once as a stream and embedded batch by batch
(:class:`pipeline.video_extraction.VideoExtraction`: the snippet grid, the frames and sound each
snippet reads, decoding threads beside the encoders); :func:`extract_video_to_store` writes its
rows straight into the store (:func:`pipeline.store.stream_store`), so an extraction job's memory
does not grow with the video's duration (``bench/extraction_memory.py``).

An extraction job works on a shard of videos, builds its encoders once, writes one store per
video (:mod:`pipeline.store`) and a shard manifest; stores already written with the same
configuration hash are kept, so a killed job resumes where it stopped.

Packets that do not decode are skipped as ``ffmpeg`` skips them (:mod:`pipeline.decode`): each
store records them in its ``decode_errors`` attribute (``{}`` when both streams decoded
cleanly), the job log warns, and a video whose damage covers more than
``max_damaged_fraction`` of its length fails like an unreadable one.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.cli import decoder_threads, user_errors
from pipeline.decode import MAX_DAMAGED_FRACTION, DecodeError
from pipeline.encoders import (
    AudioEncoder,
    MissingWeightsError,
    VisualEncoder,
    build_audio_encoder,
    build_visual_encoder,
)
from pipeline.ids import safe_name
from pipeline.progress import Progress
from pipeline.sources import file_stamp
from pipeline.store import VideoFeatures, is_complete, open_store, stream_store
from pipeline.video_extraction import VideoExtraction, settings_hash

log = logging.getLogger(__name__)


def extract_video(
    video_path: str | Path,
    settings: dict[str, Any],
    *,
    video_id: str | None = None,
    visual_encoder: VisualEncoder | None = None,
    audio_encoder: AudioEncoder | None = None,
    batch_size: int = 64,
    device: str = "auto",
    max_damaged_fraction: float = MAX_DAMAGED_FRACTION,
    threads: int = 0,
    concurrent: bool | None = None,
) -> VideoFeatures:
    """Extract one video into memory; encoders are built from ``settings`` unless passed in.

    The decoding streams, but the features are returned whole: a long video's visual grid is
    large (2 h at the default grid: 160 MB), so extraction jobs write through
    :func:`extract_video_to_store` instead, whose memory does not grow with the duration.

    Args:
        video_path: the video file.
        settings: extraction settings (:func:`pipeline.config.extraction_settings`).
        video_id: id stored in the attributes; the file name without extension by default
            (any name: files are named after its :func:`pipeline.ids.safe_name`).
        visual_encoder: a built visual encoder, to reuse across videos.
        audio_encoder: a built audio encoder, to reuse across videos.
        batch_size: snippets per encoder call.
        device: device for encoders built here.
        max_damaged_fraction: share of the video's length that undecodable packets (skipped,
            recorded in the ``decode_errors`` attribute) may cover in each stream.
        threads: the video decoder's threads; 0 lets libavcodec choose from the machine's
            cores (:func:`pipeline.decode.iter_frames`).
        concurrent: decode both streams in threads of their own while the encoders run in
            this one; by default when the process may use more than one CPU (the same rows
            either way; the job then keeps about 1.2 cores busy, as ``ffmpeg -threads 1`` does).

    Raises:
        DecodeError: the file cannot be decoded, has no video stream or zero duration, is
            truncated or damaged beyond ``max_damaged_fraction``.
        ValueError: the id is too long to name a store (:func:`pipeline.ids.safe_name`).
    """
    extraction = VideoExtraction.plan(
        video_path,
        settings,
        video_id=video_id,
        visual_encoder=visual_encoder,
        audio_encoder=audio_encoder,
        device=device,
    )
    rows: dict[str, list[np.ndarray]] = {}
    attrs = extraction.run(
        lambda name, block: rows.setdefault(name, []).append(block),
        batch_size=batch_size,
        max_damaged_fraction=max_damaged_fraction,
        threads=threads,
        concurrent=concurrent,
    )
    return VideoFeatures(
        video_id=extraction.video_id,
        visual=np.concatenate(rows["visual"]),
        audio=np.concatenate(rows["audio"]),
        timestamps=extraction.timestamps,
        attrs=attrs,
        visual_grid=np.concatenate(rows["visual_grid"]) if "visual_grid" in rows else None,
    )


def extract_video_to_store(
    video_path: str | Path,
    store_path: str | Path,
    settings: dict[str, Any],
    *,
    visual_encoder: VisualEncoder | None = None,
    audio_encoder: AudioEncoder | None = None,
    batch_size: int = 64,
    device: str = "auto",
    max_damaged_fraction: float = MAX_DAMAGED_FRACTION,
    threads: int = 0,
    concurrent: bool | None = None,
) -> Path:
    """Extract one video straight into its store, batch by batch (:func:`pipeline.store.
    stream_store`: atomic, nothing left behind on an error); the same store
    :func:`extract_video`'s features would make, in memory that does not grow with the
    video's duration. Arguments and errors as :func:`extract_video`; the id is the file name
    without extension."""
    extraction = VideoExtraction.plan(
        video_path,
        settings,
        video_id=None,
        visual_encoder=visual_encoder,
        audio_encoder=audio_encoder,
        device=device,
    )
    with stream_store(store_path, timestamps=extraction.timestamps) as writer:
        attrs = extraction.run(
            writer.append,
            batch_size=batch_size,
            max_damaged_fraction=max_damaged_fraction,
            threads=threads,
            concurrent=concurrent,
        )
        writer.finish(attrs)
    return Path(store_path)


def extract_shard(
    videos: Sequence[str | Path],
    *,
    settings: dict[str, Any],
    out_dir: str | Path,
    manifest_path: str | Path,
    on_error: str = "fail",
    batch_size: int = 64,
    device: str = "auto",
    max_damaged_fraction: float = MAX_DAMAGED_FRACTION,
    threads: int = 0,
    progress_stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Extract a shard of videos into ``out_dir/{name}.zarr`` and write its manifest.

    A video's id is its file name without extension; ``name`` is the id's
    :func:`pipeline.ids.safe_name` (the id itself when it holds only letters, digits and
    ``_.-``), and the manifest maps each id to its store's file name. An id too long to name a
    store is a failed video, like an undecodable one.

    Stores already complete with the same hash (:func:`settings_hash`), extracted from the file
    as it is now (same size and modification time, :func:`pipeline.sources.file_stamp`), are
    kept; a video replaced or modified in place is extracted again. With
    ``on_error="skip"`` a video that cannot be decoded (or is damaged beyond
    ``max_damaged_fraction``, see :func:`extract_video`) goes to the manifest's ``failed`` map
    and the shard goes on; with ``"fail"`` the job stops with the error, keeping the stores
    already written. The damage limit is a policy, not a feature setting: it is not hashed;
    nor is ``threads``, the video decoder's (:func:`extract_video`), which changes no value.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"extraction.on_error must be 'fail' or 'skip', not {on_error!r}")
    if not 0.0 <= max_damaged_fraction <= 1.0:
        raise ValueError(
            f"extraction.max_damaged_fraction must be between 0 and 1, not {max_damaged_fraction!r}"
        )
    out_dir = Path(out_dir)
    fp16 = bool(settings.get("fp16", False))
    visual_encoder = build_visual_encoder(settings["visual"], device=device, fp16=fp16)
    audio_encoder = build_audio_encoder(settings["audio"], device=device, fp16=fp16)
    config_hash = settings_hash(settings, visual_encoder, audio_encoder)
    manifest: dict[str, Any] = {"config_hash": config_hash, "videos": {}, "failed": {}}
    what = f"extract shard {Path(manifest_path).stem}"
    progress = Progress(what, len(videos), stream=progress_stream)
    for video_path in map(Path, videos):
        video_id = video_path.stem
        try:
            name = safe_name(video_id)
        except ValueError as err:
            if on_error == "fail":
                raise ValueError(f"{video_path}: {err}") from err
            log.warning("skipping %s: %s", video_path, err)
            manifest["failed"][video_id] = f"{video_path}: {err}"
            progress.skip()
            continue
        store_path = out_dir / f"{name}.zarr"
        # A writer killed hard (SIGKILL, SIGTERM) leaves its temporary store (named as in
        # pipeline.store.atomic_directory); only this job writes this video, so remove it. A safe
        # name holds no glob character.
        for stale in out_dir.glob(f".{name}.zarr.tmp-*"):
            shutil.rmtree(stale)
        status = "cached"
        try:
            source_file = file_stamp(video_path)
        except OSError:
            source_file = None  # the extraction below fails with the file's own error
        if source_file is None or not is_complete(store_path, config_hash, source_file):
            try:
                extract_video_to_store(
                    video_path,
                    store_path,
                    settings,
                    visual_encoder=visual_encoder,
                    audio_encoder=audio_encoder,
                    batch_size=batch_size,
                    max_damaged_fraction=max_damaged_fraction,
                    threads=threads,
                )
            except (DecodeError, FileNotFoundError) as err:
                if on_error == "fail":
                    raise
                log.warning("skipping %s: %s", video_path, err)
                manifest["failed"][video_id] = str(err)
                progress.skip()
                continue
            status = "extracted"
        manifest["videos"][video_id] = {"store": store_path.name, "status": status}
        if status == "cached":
            progress.advance(cached=True)
        else:
            progress.advance(open_store(store_path).info.duration_s)
    manifest_path = Path(manifest_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


@user_errors(DecodeError, MissingWeightsError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="video files of the shard")
    parser.add_argument("--settings", required=True, help="extraction settings as JSON")
    parser.add_argument("--out-dir", required=True, help="folder of the per-video stores")
    parser.add_argument("--manifest", required=True, help="shard manifest JSON to write")
    parser.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--max-damaged-fraction",
        type=float,
        default=MAX_DAMAGED_FRACTION,
        help="share of a video's length undecodable packets may cover before it fails",
    )
    parser.add_argument(
        "--threads",
        type=decoder_threads,
        default=0,
        help="video decoder threads (Snakemake passes the job's); 0: one per core",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest = extract_shard(
        args.videos,
        settings=json.loads(args.settings),
        out_dir=args.out_dir,
        manifest_path=args.manifest,
        on_error=args.on_error,
        batch_size=args.batch_size,
        device=args.device,
        max_damaged_fraction=args.max_damaged_fraction,
        threads=args.threads,
    )
    done = len(manifest["videos"])
    print(f"extracted shard: {done} stores, {len(manifest['failed'])} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
