"""Tiny synthetic media files for tests (written with PyAV into a tmp folder).

Every video frame encodes its own source index ``k``: the top 40 % of the frame is a
uniform grey of level ``16 + 8 * (k % 30)``, which survives lossy coding, colour
conversion and resizing to within a few grey levels. :func:`frame_index` reads it
back, so a test can check which source frame a decoder picked for an output time.
The bottom of the frame is either the same grey or, with ``textured=True``, a noise
texture that scrolls horizontally plus fresh per-frame noise (decode work for benchmarks).

Damaged, rotated, multi-stream and truncated variants are made from such files
(:func:`make_damaged_copy`, :func:`make_rotated_copy`, :func:`make_two_video_streams`,
:func:`make_truncated_copy`); :func:`opencv_doc_sample` finds a real-world sample video.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_LEVEL_BASE = 16  # grey level of source frame 0
INDEX_LEVEL_STEP = 8  # grey levels between consecutive source frames
INDEX_PERIOD = 30  # the encoded index wraps after this many frames
VFR_GAP_PATTERN = (0.5, 1.5, 1.0)  # VFR frame gaps, in units of 1 / fps, repeated
VFR_TIME_BASE = Fraction(1, 1000)  # VFR timestamps are whole milliseconds
MARK_LEVEL = 255  # grey level of the orientation mark (make_video's ``corner_mark``)
# x264 settings that reorder frames in a fixed pattern: decode order I P4 B1 B2 B3 P8 B5 ...
B_FRAME_OPTIONS = {"x264-params": "bframes=3:b-adapt=0:b-pyramid=none"}
MEDIA_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avloc-test-media"


def index_level(k: int) -> int:
    """Grey level that encodes source frame ``k`` (wraps every ``INDEX_PERIOD`` frames)."""
    return INDEX_LEVEL_BASE + INDEX_LEVEL_STEP * (k % INDEX_PERIOD)


def frame_index(frame: np.ndarray) -> int:
    """Read back the (wrapped) source index from a decoded ``(H, W, 3)`` uint8 frame."""
    height, width = frame.shape[:2]
    top = frame[: max(1, int(0.4 * height)), : max(1, width)]
    level = float(top.mean())
    return round((level - INDEX_LEVEL_BASE) / INDEX_LEVEL_STEP)


def frame_times(duration_s: float, fps: float, vfr: bool = False) -> np.ndarray:
    """Presentation times (s) of the frames :func:`make_video` writes.

    CFR: ``k / fps`` for every ``k`` with ``k / fps < duration_s``. VFR: gaps cycle
    through ``VFR_GAP_PATTERN / fps`` (average rate ``fps``), rounded to whole ms.
    """
    if not vfr:
        count = int(np.ceil(duration_s * fps - 1e-9))
        return np.arange(count, dtype=np.float64) / fps
    times_ms: list[int] = []
    t = 0.0
    k = 0
    while t < duration_s * 1000.0 - 1e-6:
        times_ms.append(round(t))
        t += VFR_GAP_PATTERN[k % len(VFR_GAP_PATTERN)] * 1000.0 / fps
        k += 1
    return np.asarray(times_ms, dtype=np.float64) / 1000.0


def tone(duration_s: float, sample_rate: int, tone_hz: float, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, ``(round(duration_s * sample_rate),)`` float32."""
    num_samples = round(duration_s * sample_rate)
    t = np.arange(num_samples, dtype=np.float64) / sample_rate
    return (amplitude * np.sin(2.0 * np.pi * tone_hz * t)).astype(np.float32)


def _frame_image(
    k: int,
    size: tuple[int, int],
    texture: np.ndarray | None,
    rng: np.random.Generator,
    corner_mark: bool = False,
) -> np.ndarray:
    """RGB image ``(H, W, 3)`` uint8 of source frame ``k``."""
    width, height = size
    image = np.full((height, width, 3), index_level(k), dtype=np.uint8)
    if texture is not None:
        split = int(0.5 * height)
        scrolled = np.roll(texture[split:], shift=4 * k, axis=1)  # (H - split, W), 4 px/frame
        grain = rng.integers(-6, 7, size=scrolled.shape, dtype=np.int16)  # sensor-like noise
        image[split:] = np.clip(scrolled + grain, 0, 255).astype(np.uint8)[:, :, None]
    if corner_mark:
        image[: height // 4, : width // 4] = MARK_LEVEL
    return image


def mark_corner(frame: np.ndarray) -> str:
    """Which corner of a decoded ``(H, W, 3)`` frame holds the orientation mark: ``"top-left"``,
    ``"top-right"``, ``"bottom-left"`` or ``"bottom-right"``."""
    height, width = frame.shape[:2]
    corners = {
        "top-left": frame[: height // 8, : width // 8],
        "top-right": frame[: height // 8, -(width // 8) :],
        "bottom-left": frame[-(height // 8) :, : width // 8],
        "bottom-right": frame[-(height // 8) :, -(width // 8) :],
    }
    return max(corners, key=lambda corner: float(corners[corner].mean()))


def _add_audio_stream(
    container: av.container.OutputContainer, codec: str, sample_rate: int, channels: int
) -> av.audio.stream.AudioStream:
    layout = "mono" if channels == 1 else "stereo"
    return container.add_stream(codec, rate=sample_rate, layout=layout)


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    samples: np.ndarray,
    sample_rate: int,
    channels: int,
) -> None:
    """Encode mono float ``samples`` (copied to every channel) into ``stream``."""
    chunk = stream.codec_context.frame_size or 1024
    layout = "mono" if channels == 1 else "stereo"
    for start in range(0, len(samples), chunk):
        block = samples[start : start + chunk]
        planar = np.repeat(block[None, :], channels, axis=0)  # (C, n)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), "fltp", layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_video(
    path: str | Path,
    *,
    duration_s: float = 2.0,
    fps: float = 10,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    sample_rate: int = 16000,
    tone_hz: float = 440.0,
    vfr: bool = False,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_codec: str = "aac",
    audio_channels: int = 1,
    textured: bool = False,
    video_bit_rate: int | None = None,
    faststart: bool = False,
    codec_options: dict[str, str] | None = None,
    corner_mark: bool = False,
) -> np.ndarray:
    """Write a small test video and return its frame presentation times (s).

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .avi, ...).
        duration_s: length of the video (and audio) track in seconds.
        fps: frame rate (CFR) or average frame rate (VFR).
        size: frame size ``(width, height)``; odd sizes need ``pix_fmt="yuv444p"``.
        audio: also write a sine tone audio track.
        sample_rate: audio sample rate in Hz.
        tone_hz: frequency of the tone.
        vfr: irregular frame gaps (see ``VFR_GAP_PATTERN``) with 1 ms timestamps.
        codec: video encoder (``libx264``, ``mpeg4``, ``ffv1``, ...).
        pix_fmt: encoder pixel format.
        audio_codec: audio encoder (``aac``, ``pcm_s16le``, ...).
        audio_channels: 1 (mono) or 2 (stereo, the tone on both channels).
        textured: scrolling texture and grain in the bottom half (benchmark content).
        video_bit_rate: target video bit rate in bit/s (None: the encoder's default).
        faststart: put the MP4 index first (``movflags=faststart``).
        codec_options: video encoder options (e.g. :data:`B_FRAME_OPTIONS`).
        corner_mark: a white block in the top-left corner, a quarter of each side, to show
            the orientation (:func:`mark_corner`); it changes the grey :func:`frame_index` reads.
    """
    width, height = size
    if pix_fmt == "yuv420p" and (width % 2 or height % 2):
        raise ValueError(f"size {size} is odd; yuv420p needs even sizes, use pix_fmt='yuv444p'")
    times = frame_times(duration_s, fps, vfr)
    options = {"movflags": "faststart"} if faststart else {}
    texture = None
    rng = np.random.default_rng(0)
    if textured:
        noise = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1), dtype=np.uint8)
        texture = np.kron(noise, np.ones((4, 4), np.uint8))[:height, :width]  # (H, W) 4-px cells
    with av.open(str(path), mode="w", options=options) as container:
        rate = Fraction(fps).limit_denominator(1001)
        video = container.add_stream(codec, rate=rate, options=codec_options or {})
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if video_bit_rate is not None:
            video.bit_rate = video_bit_rate
        time_base = VFR_TIME_BASE if vfr else Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        video.codec_context.time_base = time_base
        if vfr:
            video.time_base = time_base
        audio_stream = None
        if audio:
            audio_stream = _add_audio_stream(container, audio_codec, sample_rate, audio_channels)
        for k, t in enumerate(times):
            image = _frame_image(k, size, texture, rng, corner_mark)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio_stream is not None:
            samples = tone(duration_s, sample_rate, tone_hz)
            _encode_audio(container, audio_stream, samples, sample_rate, audio_channels)
    return times


def make_audio_only(
    path: str | Path,
    *,
    duration_s: float = 2.0,
    sample_rate: int = 16000,
    tone_hz: float = 440.0,
    codec: str = "aac",
    channels: int = 1,
) -> None:
    """Write a file with a single audio stream (a sine tone) and no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = _add_audio_stream(container, codec, sample_rate, channels)
        _encode_audio(
            container, stream, tone(duration_s, sample_rate, tone_hz), sample_rate, channels
        )


def make_empty_video(path: str | Path, *, size: tuple[int, int] = (64, 48)) -> None:
    """Write a container that declares an H.264 video stream but holds no frames."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        container.start_encoding()  # write the header although no frame follows
        container.mux(video.encode(None))


def make_garbage(path: str | Path, *, num_bytes: int = 4096, seed: int = 0) -> None:
    """Write random bytes (not any media format) to ``path``."""
    Path(path).write_bytes(np.random.default_rng(seed).bytes(num_bytes))


def make_text_file(path: str | Path) -> None:
    """Write a short plain-text file (e.g. a mis-named annotation file)."""
    Path(path).write_text("video_id,start_s,end_s,label\nclip_0001,0.5,1.5,dog_bark\n")


def make_truncated_copy(source: str | Path, target: str | Path, fraction: float = 0.5) -> None:
    """Copy the first ``fraction`` of ``source``'s bytes to ``target`` (a cut-off download)."""
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * fraction)])


def make_damaged_copy(
    source: str | Path, target: str | Path, *, kind: str, packets: Collection[int]
) -> int:
    """Copy ``source`` to ``target`` (same container, streams copied, not re-encoded) with the
    payload of the ``kind`` stream's packets numbered ``packets`` (0: its first) overwritten
    by zeros, which no decoder accepts; return how many packets that stream holds."""
    count = 0
    with av.open(str(source)) as reader, av.open(str(target), mode="w") as writer:
        outputs = {s.index: writer.add_stream_from_template(s) for s in reader.streams}
        for packet in reader.demux():
            if packet.dts is None and not packet.size:
                continue  # the flush packet at the end of each stream
            output = outputs[packet.stream_index]
            if packet.stream.type == kind:
                if count in packets:
                    damaged = av.Packet(bytes(packet.size))
                    for field in ("pts", "dts", "duration", "time_base"):
                        setattr(damaged, field, getattr(packet, field))
                    damaged.is_keyframe = packet.is_keyframe
                    packet = damaged
                count += 1
            packet.stream = output
            writer.mux(packet)
    return count


def make_rotated_copy(
    source: str | Path, target: str | Path, *, rotation: int = 0, hflip: bool = False
) -> None:
    """Copy an MP4 with a display matrix that turns it ``rotation`` degrees anticlockwise and,
    with ``hflip``, mirrors it (ffmpeg's ``-display_rotation`` and ``-display_hflip``, as
    phones and editors write it); the streams are copied unchanged."""
    from pipeline.decode import ffmpeg_executable

    command = [ffmpeg_executable(), "-v", "error", "-y", "-display_rotation", str(rotation)]
    command += ["-display_hflip"] * hflip + ["-i", str(source), "-c", "copy", str(target)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def make_two_video_streams(
    path: str | Path,
    *,
    thumbnail_default: bool,
    main_default: bool,
    duration_s: float = 1.0,
    fps: float = 10,
) -> None:
    """Write a thumbnail video track (16x16, flat grey 200) followed by the main one (64x48,
    frames as :func:`make_video` draws them), with the given ``default`` dispositions."""
    default = int(av.stream.Disposition.default.value)
    with av.open(str(path), mode="w") as container:
        streams = []
        for size, is_default in (((16, 16), thumbnail_default), ((64, 48), main_default)):
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            stream.disposition = default if is_default else 0
            streams.append(stream)
        rng = np.random.default_rng(0)
        for k, _ in enumerate(frame_times(duration_s, fps)):
            thumbnail = np.full((16, 16, 3), 200, dtype=np.uint8)
            for stream, image in zip(
                streams, (thumbnail, _frame_image(k, (64, 48), None, rng)), strict=True
            ):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = k
                container.mux(stream.encode(frame))
        for stream in streams:
            container.mux(stream.encode(None))


class MediaUnavailable(RuntimeError):  # noqa: N818 (a reason to skip, not a failure)
    """A sample file cannot be had on this machine; the message says why."""


def opencv_doc_sample(name: str, *, timeout_s: float = 300.0) -> Path:
    """Path of ``name`` from Debian's ``opencv-doc`` examples (e.g. ``Megamind.avi``, an
    intact XVID + AC3 clip whose first AC3 packet does not decode).

    Looked for in the installed package, then in :data:`MEDIA_CACHE`; otherwise the package is
    fetched once with ``apt-get download`` and the file kept in the cache. Raises
    :class:`MediaUnavailable` when there is no apt, no network or no such file.
    """
    installed = Path("/usr/share/doc/opencv-doc/examples/data") / name
    cached = MEDIA_CACHE / name
    for path in (installed, cached):
        if path.is_file():
            return path
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MediaUnavailable(f"{name}: not cached in {MEDIA_CACHE} and no apt-get to fetch it")
    member = f"./usr/share/doc/opencv-doc/examples/data/{name}"
    with tempfile.TemporaryDirectory() as folder:
        try:
            subprocess.run(
                ["apt-get", "download", "opencv-doc"],
                cwd=folder,
                check=True,
                capture_output=True,
                timeout=timeout_s,
            )
        except subprocess.SubprocessError as err:
            detail = (getattr(err, "stderr", b"") or b"").decode(errors="replace").strip()
            raise MediaUnavailable(
                f"{name}: `apt-get download opencv-doc` failed (no network, or no package lists: "
                f"run `apt-get update` once, or copy the file to {cached}): {err} {detail[-300:]}"
            ) from err
        (deb,) = Path(folder).glob("opencv-doc_*.deb")
        unpack = f"dpkg-deb --fsys-tarfile {shlex.quote(deb.name)} | tar -x {shlex.quote(member)}"
        try:  # the one file, not the package's hundreds of MB; a missing one is checked below
            subprocess.run(unpack, shell=True, cwd=folder, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            raise MediaUnavailable(f"{name}: unpacking {deb.name} took too long") from err
        extracted = Path(folder) / member
        if not extracted.is_file():
            raise MediaUnavailable(f"{name}: not in this opencv-doc package ({deb.name})")
        MEDIA_CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{name}.{os.getpid()}.part")
        shutil.copyfile(extracted, partial)
        os.replace(partial, cached)  # whole or absent, even with concurrent test workers
    return cached
