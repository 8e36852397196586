"""Stage 1: embed each snippet of a video with a visual and an audio encoder on one time grid.

A video is decoded once as a stream; snippet k covers ``[k * stride_s, k * stride_s + window_s]``
(:func:`pipeline.decode.snippet_grid`), the visual encoder sees ``frames_per_snippet`` frames
sampled uniformly inside that window from the stream resampled to ``fps``, and the audio encoder
sees the same window of the mono waveform. Audio and visual rows are aligned by construction.

Both streams are decoded, embedded and written batch by batch: frames through a buffer of one
batch's clips, audio through a buffer of one batch's windows (:func:`pipeline.audio.iter_windows`),
rows straight into the store (:func:`pipeline.store.stream_store`), so an extraction job's memory
does not grow with the video's duration (``bench/extraction_memory.py``). When the process may
use more than one CPU, both streams decode in threads of their own, a batch or two ahead of the
encoders (:mod:`pipeline.background`), as ``ffmpeg``'s command line runs its decoders.

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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.audio import iter_windows
from pipeline.background import Background, switch_interval, usable_cpus
from pipeline.cli import decoder_threads, user_errors
from pipeline.decode import (
    MAX_DAMAGED_FRACTION,
    DecodeError,
    NoAudioStream,
    StreamDamage,
    VideoInfo,
    frame_indices,
    iter_audio,
    iter_frames,
    probe,
    snippet_grid,
)
from pipeline.encoders import (
    AudioEncoder,
    MissingWeightsError,
    VisualEncoder,
    build_audio_encoder,
    build_visual_encoder,
)
from pipeline.ids import safe_name
from pipeline.io import stable_hash
from pipeline.progress import Progress
from pipeline.sources import file_stamp
from pipeline.store import VideoFeatures, is_complete, open_store, stream_store

log = logging.getLogger(__name__)

# The GIL's switch interval while the decoders run beside the encoders: 1 ms overlapped them
# best of 0.2, 0.5, 1 and 5 ms (Python's default) in bench/decode_throughput.py.
DECODER_SWITCH_INTERVAL_S = 0.001


def settings_hash(
    settings: dict[str, Any], visual_encoder: VisualEncoder, audio_encoder: AudioEncoder
) -> str:
    """Hash of everything that determines the features: the settings and both encoders' full
    resolved configs (which carry their defaults, feature-definition versions and weights'
    revisions, so a change there re-extracts too)."""
    return stable_hash(
        {"settings": settings, "visual": visual_encoder.config(), "audio": audio_encoder.config()}
    )


def iter_clips(
    frames: Iterator[np.ndarray], indices: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(snippet, clip)`` in snippet order, clip (F, H, W, 3), keeping few frames in memory.

    ``indices`` (T, F) must be non-decreasing along T, as :func:`pipeline.decode.frame_indices`
    gives. Indices past the end of the stream take its last frame (the probed duration can
    overrun the frames).
    """
    needed = np.zeros(int(indices.max(initial=-1)) + 1, dtype=bool)  # (max index + 1,)
    needed[indices.ravel()] = True
    buffer: dict[int, np.ndarray] = {}
    snippet, last_index = 0, -1
    last_frame: np.ndarray | None = None  # kept even when not needed: it pads past the end
    num_snippets = indices.shape[0]
    for last_index, frame in enumerate(frames):
        last_frame = frame
        if last_index < len(needed) and needed[last_index]:
            buffer[last_index] = frame
        while snippet < num_snippets and indices[snippet].max() <= last_index:
            yield snippet, np.stack([buffer[i] for i in indices[snippet]])
            snippet += 1
            if snippet < num_snippets:
                oldest = int(indices[snippet].min())
                for index in [i for i in buffer if i < oldest]:
                    del buffer[index]
    if last_index < 0:
        raise DecodeError("the video stream yielded no frames")
    for remaining in range(snippet, num_snippets):
        clip = [buffer.get(min(i, last_index), last_frame) for i in indices[remaining]]
        yield remaining, np.stack(clip)


def _batched(items: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for _, item in items:
        batch.append(item)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def window_starts(timestamps: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """First sample ``(T,)`` int64 of each snippet's audio window, and N, samples per window."""
    window_length = round((timestamps[0, 1] - timestamps[0, 0]) * sample_rate)
    starts = np.round(timestamps[:, 0] * sample_rate).astype(np.int64)  # (T,)
    return starts, window_length


def audio_windows(waveform: np.ndarray, timestamps: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T, N) windows of the waveform on the snippet grid, zero-padded past its end; the whole
    waveform in memory (extraction cuts the same windows from the decoding stream instead)."""
    starts, window_length = window_starts(timestamps, sample_rate)
    padded = np.concatenate([waveform, np.zeros(window_length, dtype=np.float32)])
    positions = starts[:, None] + np.arange(window_length)[None, :]  # (T, N)
    return padded[np.minimum(positions, len(padded) - 1)]


RowWriter = Callable[[str, np.ndarray], None]  # (array name, rows (n, ...)), in snippet order


@dataclass
class _VideoExtraction:
    """One video probed and planned: the snippet grid its rows follow and the encoders; built
    by :meth:`plan`, embedded by :meth:`run`.

    Args:
        video_path: the video file.
        video_id: id stored in the attributes.
        settings: extraction settings.
        visual_encoder: the built visual encoder.
        audio_encoder: the built audio encoder.
        info: the probed video.
        timestamps: (T, 2) ``[start_s, end_s]`` of each snippet.
        source_file: the file's :func:`pipeline.sources.file_stamp` when it was probed.
        started: :func:`time.perf_counter` when the extraction began.
    """

    video_path: Path
    video_id: str
    settings: dict[str, Any]
    visual_encoder: VisualEncoder
    audio_encoder: AudioEncoder
    info: VideoInfo
    timestamps: np.ndarray
    source_file: dict[str, int]
    started: float

    @classmethod
    def plan(
        cls,
        video_path: str | Path,
        settings: dict[str, Any],
        *,
        video_id: str | None,
        visual_encoder: VisualEncoder | None,
        audio_encoder: AudioEncoder | None,
        device: str,
    ) -> _VideoExtraction:
        """Check the id, build the encoders not given, probe the video and lay out its grid."""
        video_path = Path(video_path)
        video_id = video_id or video_path.stem
        safe_name(video_id)  # refuses now an id that no store could be named after
        fp16 = bool(settings.get("fp16", False))
        visual_encoder = visual_encoder or build_visual_encoder(
            settings["visual"], device=device, fp16=fp16
        )
        audio_encoder = audio_encoder or build_audio_encoder(
            settings["audio"], device=device, fp16=fp16
        )
        started = time.perf_counter()
        info = probe(video_path)
        if not info.has_video:
            raise DecodeError(f"{video_path}: has no video stream")
        if not info.duration_s > 0:
            raise DecodeError(f"{video_path}: has zero duration")
        timestamps = snippet_grid(info.duration_s, settings["window_s"], settings["stride_s"])
        return cls(
            video_path,
            video_id,
            settings,
            visual_encoder,
            audio_encoder,
            info,
            timestamps,
            file_stamp(video_path),
            started,
        )

    def run(
        self,
        write: RowWriter,
        *,
        batch_size: int,
        max_damaged_fraction: float,
        threads: int,
        concurrent: bool | None = None,
    ) -> dict[str, Any]:
        """Embed the video ``batch_size`` snippets at a time, handing each batch's rows to
        ``write``: ``visual`` (and ``visual_grid``) as the video stream decodes, ``audio`` as the
        audio stream does; return the store's attributes.

        With ``concurrent`` (by default when the process may use more than one CPU) both
        streams decode in threads of their own (:class:`pipeline.background.Background`) while
        this thread runs the encoders; otherwise one after the other. The rows and errors are
        the same either way: a video stream's error comes first, then the audio stream's.
        """
        settings, visual_encoder = self.settings, self.visual_encoder
        audio_encoder, timestamps = self.audio_encoder, self.timestamps
        indices = frame_indices(timestamps, visual_encoder.frames_per_snippet, settings["fps"])
        damage = {"video": StreamDamage(), "audio": StreamDamage()}
        frames = iter_frames(
            self.video_path,
            settings["fps"],
            visual_encoder.frame_size,
            max_damaged_fraction=max_damaged_fraction,
            damage=damage["video"],
            threads=threads,
        )
        clip_batches = _batched(iter_clips(frames, indices), batch_size)
        starts, window_length = window_starts(timestamps, audio_encoder.sample_rate)
        samples = iter_audio(
            self.video_path,
            audio_encoder.sample_rate,
            max_damaged_fraction=max_damaged_fraction,
            damage=damage["audio"],
        )
        window_batches = iter_windows(samples, starts, window_length, batch_size)
        audio = _AudioRows(write, audio_encoder)
        if concurrent is None:
            concurrent = usable_cpus() > 1
        if concurrent:
            # One batch of clips ahead: the encoders hold one, the decoder builds the next.
            with (
                switch_interval(DECODER_SWITCH_INTERVAL_S),
                Background(clip_batches, depth=1, name="decode-video") as clip_batches,
                Background(window_batches, depth=2, name="decode-audio") as window_batches,
            ):
                for clips in clip_batches:
                    self._write_visual(write, clips)
                    audio.take(window_batches.ready())
                audio.take(window_batches)
        else:
            for clips in clip_batches:
                self._write_visual(write, clips)
            audio.take(window_batches)
        audio_present = audio.finish(len(timestamps), batch_size)

        return {
            "video_id": self.video_id,
            "source": str(self.video_path),
            "source_file": self.source_file,  # a replaced or modified file is extracted again
            "fps": settings["fps"],
            "window_s": settings["window_s"],
            "stride_s": settings["stride_s"],
            "sample_rate": audio_encoder.sample_rate,
            "encoders": {
                "visual": {**visual_encoder.config(), "dim": visual_encoder.dim},
                "audio": {**audio_encoder.config(), "dim": audio_encoder.dim},
            },
            "settings": settings,
            "config_hash": settings_hash(settings, visual_encoder, audio_encoder),
            "video": self.info.to_dict(),
            "audio_present": audio_present,
            "decode_errors": {
                kind: figures.to_dict() for kind, figures in damage.items() if figures
            },
            "extraction_seconds": round(time.perf_counter() - self.started, 3),
        }

    def _write_visual(self, write: RowWriter, clips: np.ndarray) -> None:
        """Embed a batch of clips (B, F, H, W, 3) and write its ``visual`` (and grid) rows."""
        if self.settings.get("visual_grid"):
            pooled, grid = self.visual_encoder.encode_with_grid(clips)  # one pass for both
            write("visual", pooled)
            write("visual_grid", grid)
        else:
            write("visual", self.visual_encoder.encode(clips))


class _AudioRows:
    """Embeds the audio windows and writes the ``audio`` rows, keeping the first error (the
    stream's or the encoder's) to raise after the video stream is done, as a sequential
    extraction would.

    Args:
        write: the store's row writer.
        encoder: the built audio encoder.
    """

    def __init__(self, write: RowWriter, encoder: AudioEncoder) -> None:
        self.write, self.encoder = write, encoder
        self.error: Exception | None = None

    def take(self, window_batches: Iterable[np.ndarray]) -> None:
        """Embed and write every batch of windows ``(B, N)`` in ``window_batches``."""
        if self.error is not None:
            return
        try:
            for windows in window_batches:
                self.write("audio", self.encoder.encode(windows))
        except Exception as error:  # raised by finish, after the video's rows
            self.error = error

    def finish(self, num_snippets: int, batch_size: int) -> bool:
        """Raise the error kept, or write zero rows for a file without sound (NoAudioStream
        comes before the first window, so before any row); whether the video has sound."""
        if isinstance(self.error, NoAudioStream):
            for first in range(0, num_snippets, batch_size):
                rows = min(batch_size, num_snippets - first)
                self.write("audio", np.zeros((rows, self.encoder.dim), dtype=np.float32))
            return False
        if self.error is not None:
            raise self.error
        return True


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
    extraction = _VideoExtraction.plan(
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
    extraction = _VideoExtraction.plan(
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
