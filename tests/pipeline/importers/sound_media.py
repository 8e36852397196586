"""Tiny videos whose sound is given sample by sample, for tests of audio on a release's grid.

:mod:`tests.media` writes a tone over the whole video; these tests need sound only during known
seconds (:func:`tone_between`), so they write the samples themselves.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from tests import media


def tone_between(
    duration_s: float, spans_s: list[tuple[float, float]], sample_rate: int = 16000
) -> np.ndarray:
    """``(round(duration_s * sample_rate),)`` float32: a 440 Hz tone inside ``spans_s``, exact
    zeros elsewhere."""
    sound = media.tone(duration_s, sample_rate, 440.0)
    inside = np.zeros(len(sound), dtype=bool)
    for start_s, end_s in spans_s:
        inside[round(start_s * sample_rate) : round(end_s * sample_rate)] = True
    return np.where(inside, sound, 0.0).astype(np.float32)


def make_video_with_sound(
    path: str | Path,
    sound: np.ndarray,
    *,
    sample_rate: int = 16000,
    fps: int = 25,
    size: tuple[int, int] = (32, 32),
    audio_codec: str | None = None,
) -> Path:
    """Write a grey video as long as ``sound`` with ``sound`` as its mono audio track.

    Args:
        path: output file; the container follows the suffix (``.mkv``, ``.mp4``, ``.MP4``).
        sound: (N,) float32 samples in [-1, 1].
        sample_rate: Hz of ``sound``.
        fps: video frame rate.
        size: frame ``(width, height)``, even.
        audio_codec: None: lossless ``pcm_s16le`` in Matroska (samples exact), else ``aac``.
    """
    path = Path(path)
    if audio_codec is None:
        audio_codec = "pcm_s16le" if path.suffix.lower() == ".mkv" else "aac"
    num_frames = int(np.ceil(len(sound) / sample_rate * fps - 1e-9))
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = container.add_stream(audio_codec, rate=sample_rate, layout="mono")
        grey = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
        for k in range(num_frames):
            frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
            frame.pts = k
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        chunk = audio.codec_context.frame_size or 1024
        planar = audio.format.is_planar
        for start in range(0, len(sound), chunk):
            block = sound[start : start + chunk]
            if audio.format.name == "s16":
                data = (np.clip(block, -1, 1) * 32767).astype(np.int16)[None, :]  # (1, n)
                frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
            else:
                data = np.ascontiguousarray(block[None, :], dtype=np.float32)  # (1, n)
                frame = av.AudioFrame.from_ndarray(
                    data, format="fltp" if planar else "flt", layout="mono"
                )
            frame.sample_rate = sample_rate
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path
