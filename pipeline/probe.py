"""Probing media files: what streams they hold, their rates, sizes and length on one time axis.

Time axis: second 0 is the first presentation timestamp of the video stream (of the audio
stream in audio-only files), and the axis ends where the container ends, so
``duration_s = container start + container duration - time zero``. ffmpeg's own convention
is the container start instead; the two differ only when the audio starts before the video,
e.g. AAC priming samples in Matroska (-64 ms), which this module drops rather than shifting
every video frame late. :mod:`pipeline.decode` places frames and audio samples on this axis.

:func:`probe` asks ffprobe (through ffmpeg-python) when it is on PATH and PyAV otherwise; both
back ends fill the same :class:`VideoInfo`. The open-container helpers here are shared with the
decoder, which probes the container it is about to decode. :mod:`pipeline.decode` re-exports
:class:`DecodeError`, :class:`VideoInfo` and :func:`probe`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import numpy as np

VFR_SCAN_PACKETS = 50  # video packets whose pts spread is checked for variable frame rate
VFR_RATE_TOLERANCE = 0.01  # relative r_frame_rate / avg_frame_rate mismatch that means VFR


class DecodeError(RuntimeError):
    """A media file cannot be decoded; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a media file (times in seconds on the module's axis)."""

    path: str  # the probed file
    duration_s: float  # length of the time axis (see module docstring)
    width: int  # video frame width in pixels (0 without video)
    height: int  # video frame height in pixels (0 without video)
    fps: float  # average frame rate (0.0 without video)
    num_frames: int | None  # frame count from the container index, None if not stored
    has_video: bool  # a video stream that is not just cover art
    has_audio: bool  # an audio stream
    audio_sample_rate: int | None  # Hz, None without audio
    audio_channels: int | None  # None without audio
    variable_frame_rate: bool  # frame gaps are not constant
    video_codec: str | None  # codec name as ffprobe spells it ("h264"), None without video
    audio_codec: str | None  # codec name as ffprobe spells it ("aac"), None without audio

    def to_dict(self) -> dict:
        """JSON-serialisable copy (stored in feature-store attributes)."""
        return asdict(self)


@dataclass(frozen=True)
class _StreamFields:
    """Stream metadata in the units both probe back ends share."""

    start_s: float | None  # first pts in seconds
    duration_s: float | None  # stream duration in seconds
    codec: str | None
    width: int = 0
    height: int = 0
    avg_rate: Fraction | None = None  # avg_frame_rate
    real_rate: Fraction | None = None  # r_frame_rate
    num_frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


def _ffprobe_executable() -> str | None:
    """Path of an ``ffprobe`` binary on PATH, or None (then PyAV probes)."""
    return shutil.which("ffprobe")


def checked_media_path(path: str | Path) -> Path:
    """``path`` as a Path; raise if it is missing or an empty file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"media file not found: {path}; check the path in the video list")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path} is empty (0 bytes), so it has zero duration; replace the file")
    return path


def open_media(path: Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning FFmpeg errors into DecodeError."""
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise DecodeError(
            f"{path} is not a readable media file ({err}); it may be corrupt, truncated or "
            "not a video at all"
        ) from err


def first_video_stream(
    container: av.container.InputContainer,
) -> av.video.stream.VideoStream | None:
    """First video stream that is not cover art (an attached picture), or None."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _seconds(value: int | None, time_base: Fraction | int | None) -> float | None:
    """``value * time_base`` seconds, rounded to the microseconds ffprobe prints."""
    return None if value is None or time_base is None else round(float(value * time_base), 6)


def _pyav_fields(stream: av.stream.Stream) -> _StreamFields:
    """Stream metadata read from an open PyAV stream."""
    codec_context = stream.codec_context
    fields = {
        "start_s": _seconds(stream.start_time, stream.time_base),
        "duration_s": _seconds(stream.duration, stream.time_base),
        "codec": codec_context.codec.canonical_name,
    }
    if stream.type == "video":
        fields.update(
            width=codec_context.width,
            height=codec_context.height,
            avg_rate=stream.average_rate,
            real_rate=stream.base_rate,
            num_frames=stream.frames or None,
        )
    else:
        fields.update(sample_rate=codec_context.sample_rate, channels=codec_context.channels)
    return _StreamFields(**fields)


def _ffprobe_fields(entry: dict) -> _StreamFields:
    """Stream metadata read from one ffprobe ``streams`` entry."""

    def number(key: str) -> float | None:
        return float(entry[key]) if entry.get(key) not in (None, "N/A") else None

    def rate(key: str) -> Fraction | None:
        num, _, den = entry.get(key, "0/0").partition("/")
        return Fraction(int(num), int(den)) if int(den or 0) and int(num) else None

    fields = {"start_s": number("start_time"), "duration_s": number("duration")}
    fields["codec"] = entry.get("codec_name")
    if entry["codec_type"] == "video":
        num_frames = int(entry.get("nb_frames", 0) or 0)
        fields.update(
            width=int(entry.get("width", 0)),
            height=int(entry.get("height", 0)),
            avg_rate=rate("avg_frame_rate"),
            real_rate=rate("r_frame_rate"),
            num_frames=num_frames or None,
        )
    else:
        fields.update(sample_rate=int(entry["sample_rate"]), channels=int(entry["channels"]))
    return _StreamFields(**fields)


def _time_zero(
    video: _StreamFields | None, audio: _StreamFields | None, start: float | None
) -> float:
    """Second 0 of the time axis: first pts of the video (else audio, else container)."""
    for fields in (video, audio):
        if fields is not None and fields.start_s is not None:
            return fields.start_s
    return start or 0.0


def _axis_duration(
    path: Path,
    container_start_s: float | None,
    container_duration_s: float | None,
    streams: list[_StreamFields],
    time_zero_s: float,
) -> float:
    """Length of the time axis: container end (else latest stream end) minus time zero."""
    if container_duration_s is not None:
        end_s = (container_start_s or 0.0) + container_duration_s
    else:
        ends = [(f.start_s or 0.0) + f.duration_s for f in streams if f.duration_s is not None]
        end_s = max(ends, default=time_zero_s)
    duration_s = round(end_s - time_zero_s, 6)
    if not duration_s > 0:
        raise DecodeError(f"{path} has zero duration (no decodable audio or video); replace it")
    return duration_s


def _is_variable_rate(video: _StreamFields, pts_deltas_s: np.ndarray, tick_s: float) -> bool:
    """VFR when r_frame_rate and avg_frame_rate disagree or early frame gaps differ."""
    if video.avg_rate and video.real_rate:
        mismatch = abs(video.real_rate - video.avg_rate) / video.real_rate
        if mismatch > VFR_RATE_TOLERANCE:
            return True
    if len(pts_deltas_s) < 2:
        return False
    spread_s = float(pts_deltas_s.max() - pts_deltas_s.min())
    return spread_s > max(2.0 * tick_s, 0.1 * float(np.median(pts_deltas_s)))


def _pts_deltas(container: av.container.InputContainer, stream: av.stream.Stream) -> np.ndarray:
    """Gaps (s) between the sorted pts of the first ``VFR_SCAN_PACKETS`` video packets."""
    pts: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
            if len(pts) >= VFR_SCAN_PACKETS:
                break
    except av.FFmpegError as err:
        path = container.name
        raise DecodeError(
            f"{path}: reading video packets failed ({err}); is it truncated?"
        ) from err
    return np.diff(np.sort(np.asarray(pts, dtype=np.int64))) * float(stream.time_base)


def _assemble(
    path: Path,
    start: float | None,
    duration: float | None,
    video: _StreamFields | None,
    audio: _StreamFields | None,
    deltas: np.ndarray,
    tick_s: float,
) -> VideoInfo:
    """Build the VideoInfo both probe back ends return (container start/duration in s,
    pts gaps of the first video packets and the video time base in s)."""
    streams = [f for f in (video, audio) if f is not None]
    time_zero_s = _time_zero(video, audio, start)
    rate = (video.avg_rate or video.real_rate) if video is not None else None
    return VideoInfo(
        path=str(path),
        duration_s=_axis_duration(path, start, duration, streams, time_zero_s),
        width=video.width if video else 0,
        height=video.height if video else 0,
        fps=float(rate) if rate else 0.0,
        num_frames=video.num_frames if video else None,
        has_video=video is not None,
        has_audio=audio is not None,
        audio_sample_rate=audio.sample_rate if audio else None,
        audio_channels=audio.channels if audio else None,
        variable_frame_rate=video is not None and _is_variable_rate(video, deltas, tick_s),
        video_codec=video.codec if video else None,
        audio_codec=audio.codec if audio else None,
    )


def probe_container(
    path: Path, container: av.container.InputContainer, scan_vfr: bool
) -> tuple[VideoInfo, float]:
    """VideoInfo and time zero (s) of an open container; ``scan_vfr`` demuxes early packets."""
    video_stream = first_video_stream(container)
    audio_streams = container.streams.audio
    video = _pyav_fields(video_stream) if video_stream is not None else None
    audio = _pyav_fields(audio_streams[0]) if audio_streams else None
    deltas, tick_s = np.zeros(0), 0.0
    if scan_vfr and video_stream is not None:
        deltas, tick_s = _pts_deltas(container, video_stream), float(video_stream.time_base)
    start = _seconds(container.start_time, Fraction(1, av.time_base))
    duration = _seconds(container.duration, Fraction(1, av.time_base))
    info = _assemble(path, start, duration, video, audio, deltas, tick_s)
    return info, _time_zero(video, audio, start)


def probe(path: str | Path) -> VideoInfo:
    """Describe a media file: ffprobe (via ffmpeg-python) if on PATH, else PyAV.

    Raises FileNotFoundError for a missing file and DecodeError for anything that is not
    a readable media file with a positive duration.
    """
    path = checked_media_path(path)
    ffprobe = _ffprobe_executable()
    if ffprobe is None:
        with open_media(path) as container:
            return probe_container(path, container, scan_vfr=True)[0]
    try:
        report = ffmpeg.probe(str(path), cmd=ffprobe)
    except ffmpeg.Error as err:
        reason = err.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown"]
        raise DecodeError(f"{path} is not a readable media file: {reason[0]}") from err
    entries = report.get("streams", [])
    videos = [e for e in entries if e["codec_type"] == "video"]
    videos = [e for e in videos if not e.get("disposition", {}).get("attached_pic")]
    audios = [e for e in entries if e["codec_type"] == "audio"]
    video = _ffprobe_fields(videos[0]) if videos else None
    audio = _ffprobe_fields(audios[0]) if audios else None
    deltas, tick_s = np.zeros(0), 0.0
    if video is not None:  # packet timestamps: PyAV demux, the same libraries ffprobe uses
        with open_media(path) as container:
            video_stream = first_video_stream(container)
            deltas, tick_s = _pts_deltas(container, video_stream), float(video_stream.time_base)
    fmt = report.get("format", {})
    start = float(fmt["start_time"]) if fmt.get("start_time") not in (None, "N/A") else None
    duration = float(fmt["duration"]) if fmt.get("duration") not in (None, "N/A") else None
    return _assemble(path, start, duration, video, audio, deltas, tick_s)


def declared_stream_end_s(stream: av.stream.Stream, info: VideoInfo, time_zero_s: float) -> float:
    """Where ``stream`` says it ends on the time axis (the axis end if it does not say)."""
    fields = _pyav_fields(stream)
    if fields.duration_s is None:
        return info.duration_s
    return (fields.start_s or 0.0) + fields.duration_s - time_zero_s
