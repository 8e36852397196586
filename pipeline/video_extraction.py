"""One video's extraction: its snippet grid, the frames and sound each snippet reads, both
encoders, rows handed out batch by batch.

Snippet k covers ``[k * stride_s, k * stride_s + window_s]`` (:func:`pipeline.decode.snippet_grid`);
the visual encoder sees ``frames_per_snippet`` frames sampled uniformly inside that window from
the stream resampled to ``fps`` (:func:`iter_clips`), and the audio encoder sees the same window
of the mono waveform (:func:`window_starts`). Audio and visual rows are aligned by construction.

Both streams are decoded and embedded batch by batch: frames through a buffer of one batch's
clips, audio through a buffer of one batch's windows (:func:`pipeline.audio.iter_windows`), rows
handed to a writer as they come (:class:`VideoExtraction`), so memory does not grow with the
video's duration. When the process may use more than one CPU, both streams decode in threads of
their own, a batch or two ahead of the encoders (:mod:`pipeline.background`), as ``ffmpeg``'s
command line runs its decoders. :mod:`pipeline.extract` runs it into stores, shard by shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import WindowBatch, iter_windows
from pipeline.background import Background, switch_interval, usable_cpus
from pipeline.decode import (
    DecodeError,
    NoAudioStream,
    StreamDamage,
    VideoInfo,
    decode_errors,
    frame_indices,
    iter_audio,
    iter_frames,
    probe,
    snippet_grid,
)
from pipeline.encoders import (
    AudioEncoder,
    VisualEncoder,
    build_audio_encoder,
    build_visual_encoder,
)
from pipeline.ids import safe_name
from pipeline.io import stable_hash
from pipeline.sources import file_stamp

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
class VideoExtraction:
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
    ) -> VideoExtraction:
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
        audio = AudioRows(write, audio_encoder)
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
            "decode_errors": decode_errors(damage),
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


class AudioRows:
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

    def take(self, window_batches: Iterable[WindowBatch]) -> None:
        """Embed and write every batch of windows in ``window_batches``."""
        if self.error is not None:
            return
        try:
            for batch in window_batches:
                self.write("audio", self.encoder.encode_batch(batch))
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
