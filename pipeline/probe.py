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

The video stream is the main one, chosen as the ``ffmpeg`` command line chooses it
(:func:`main_video_stream`), not the first: a file may carry a thumbnail track before it. Its
display matrix (rotation, mirror) is read from its first decoded frame, the way players read it
(:class:`DisplayTransform`); ``width`` and ``height`` are the displayed size.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

VFR_SCAN_PACKETS = 50  # video frames whose pts spread is checked for variable frame rate
# Packets read past them: frames arrive in decode order, and a codec reorders at most this many
# (H.264 and HEVC: 16), so the first VFR_SCAN_PACKETS presentation times are all among them.
VFR_REORDER_MARGIN = 16
VFR_RATE_TOLERANCE = 0.01  # relative r_frame_rate / avg_frame_rate mismatch that means VFR
DEFAULT_STREAM_BONUS = 5_000_000  # ffmpeg's score for a default-disposition video stream, in pixels
# Demuxers whose streams' nb_frames is the header's declared length in time-base units (AVI's
# dwLength): lavf derives the stream duration from the packets it finds, so only the header
# tells how long a cut-off file was meant to be. MP4's sample count is not trusted this way:
# it includes samples an edit list trims from the presentation.
HEADER_LENGTH_FORMATS = frozenset({"avi"})


class DecodeError(RuntimeError):
    """A media file cannot be decoded; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a media file (times in seconds on the module's axis)."""

    path: str  # the probed file
    duration_s: float  # length of the time axis (see module docstring)
    width: int  # displayed frame width in pixels, after the rotation (0 without video)
    height: int  # displayed frame height in pixels, after the rotation (0 without video)
    fps: float  # average frame rate (0.0 without video)
    num_frames: int | None  # frame count from the container index, None if not stored
    has_video: bool  # a video stream that is not just cover art
    has_audio: bool  # an audio stream
    audio_sample_rate: int | None  # Hz, None without audio
    audio_channels: int | None  # None without audio
    variable_frame_rate: bool  # frame gaps are not constant
    video_codec: str | None  # codec name as ffprobe spells it ("h264"), None without video
    audio_codec: str | None  # codec name as ffprobe spells it ("aac"), None without audio
    rotation: int = 0  # degrees a player turns the picture clockwise (display matrix): 0/90/180/270
    mirrored: bool = False  # the display matrix also mirrors the picture
    video_stream: int | None = None  # index of the video stream decoded (main_video_stream)

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


def _video_stream_score(width: int, height: int, default: bool) -> int:
    """The ``ffmpeg`` command line's rank of a video stream (fftools ``map_auto_video``): its
    pixel count, plus :data:`DEFAULT_STREAM_BONUS` when its disposition is ``default``."""
    return width * height + DEFAULT_STREAM_BONUS * default


def main_video_stream(
    container: av.container.InputContainer,
) -> av.video.stream.VideoStream | None:
    """The video stream ``ffmpeg`` decodes when not told which: the highest
    :func:`_video_stream_score`, the first of equals; cover art (an attached picture) never
    counts (ffmpeg also ranks first a stream that had packets while it probed the file, which
    matters only for a declared stream that holds none). None without one."""
    best, best_score = None, -1
    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        context = stream.codec_context
        default = bool(stream.disposition & av.stream.Disposition.default)
        score = _video_stream_score(context.width, context.height, default)
        if score > best_score:
            best, best_score = stream, score
    return best


@dataclass(frozen=True)
class DisplayTransform:
    """How a player turns decoded frames for display: the 2 x 2 part ``(a, b; c, d)`` of a
    display matrix (libavutil/display.h: a source pixel ``(p, q)`` is shown at
    ``(a p + c q, b p + d q)``, up to a shift), snapped to a quarter turn with or without a
    mirror. ffmpeg's autorotate applies the same eight transforms (a matrix between quarter
    turns it rotates exactly; here it is snapped to the nearest).
    """

    a: int = 1  # each -1, 0 or 1
    b: int = 0
    c: int = 0
    d: int = 1

    @classmethod
    def from_matrix(cls, matrix: Sequence[int] | None) -> DisplayTransform:
        """From a display matrix's 9 int32 values (16.16 fixed point); None: no transform."""
        if matrix is None:
            return cls()
        a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
        if abs(a) + abs(d) >= abs(b) + abs(c):
            return cls(a=1 if a >= 0 else -1, b=0, c=0, d=1 if d >= 0 else -1)
        return cls(a=0, b=1 if b >= 0 else -1, c=1 if c >= 0 else -1, d=0)

    @classmethod
    def of_frame(cls, frame: av.VideoFrame) -> DisplayTransform:
        """The transform a decoded frame's ``DISPLAYMATRIX`` side data asks for."""
        side_data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
        if side_data is None:
            return cls()
        return cls.from_matrix(np.frombuffer(bytes(side_data), dtype="<i4").tolist())

    @property
    def transposed(self) -> bool:
        """Source columns become display rows (a quarter turn): width and height swap."""
        return self.a == 0

    @property
    def rotation(self) -> int:
        """Degrees a player turns the picture clockwise, as ffmpeg reads the matrix
        (``-av_display_rotation_get``, in [0, 360)); a mirror comes on top of it."""
        return round(math.degrees(math.atan2(self.b, self.a))) % 360

    @property
    def mirrored(self) -> bool:
        """The transform mirrors the picture (negative determinant)."""
        return self.a * self.d - self.b * self.c < 0

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of a ``width`` x ``height`` frame once displayed."""
        return (height, width) if self.transposed else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The displayed picture of an ``(H, W, C)`` image: ``(W, H, C)`` when transposed."""
        if self.transposed:
            image = image.transpose(1, 0, 2)  # (W, H, C): source column p becomes row p
            flip_rows, flip_columns = self.b < 0, self.c < 0
        else:
            flip_rows, flip_columns = self.d < 0, self.a < 0
        if not (flip_rows or flip_columns or self.transposed):
            return image
        return np.ascontiguousarray(image[:: -1 if flip_rows else 1, :: -1 if flip_columns else 1])


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


@dataclass(frozen=True)
class _VideoScan:
    """What the first packets of the video stream tell (:func:`_scan_video`)."""

    pts_deltas_s: np.ndarray  # gaps (s) between the first frames' sorted presentation times
    tick_s: float  # the stream's time base in seconds
    transform: DisplayTransform  # display matrix of the first decodable frame


def _scan_video(container: av.container.InputContainer, stream: av.stream.Stream) -> _VideoScan:
    """Presentation-time gaps of the first ``VFR_SCAN_PACKETS`` frames and the display transform.

    Packets come in decode order: B-frames follow the later frame they are predicted from, so
    the first N packets can lack presentation times between theirs. Reading
    ``VFR_REORDER_MARGIN`` more and keeping the N earliest presentation times leaves no hole.
    The first frame that decodes gives the display matrix (a packet that does not decode is the
    decoder's to count, :mod:`pipeline.decode`; here the next one is tried).
    """
    pts: list[int] = []
    transform = None
    wanted = VFR_SCAN_PACKETS + VFR_REORDER_MARGIN
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
            if transform is None and packet.size:
                try:
                    frames = stream.decode(packet)
                except av.FFmpegError:
                    frames = []
                if frames:
                    transform = DisplayTransform.of_frame(frames[0])
            if len(pts) >= wanted:
                pts = sorted(pts)[:VFR_SCAN_PACKETS]  # all earlier presentation times are here
                break
    except av.FFmpegError as err:
        path = container.name
        raise DecodeError(
            f"{path}: reading video packets failed ({err}); is it truncated?"
        ) from err
    tick_s = float(stream.time_base)
    deltas_s = np.diff(np.sort(np.asarray(pts, dtype=np.int64))) * tick_s
    return _VideoScan(deltas_s, tick_s, transform or DisplayTransform())


def _assemble(
    path: Path,
    start: float | None,
    duration: float | None,
    video: _StreamFields | None,
    audio: _StreamFields | None,
    scan: _VideoScan | None,
    video_index: int | None,
) -> VideoInfo:
    """Build the VideoInfo both probe back ends return (container start/duration in s, the scan
    of the first video packets and the index of the video stream)."""
    streams = [f for f in (video, audio) if f is not None]
    time_zero_s = _time_zero(video, audio, start)
    rate = (video.avg_rate or video.real_rate) if video is not None else None
    transform = scan.transform if scan is not None else DisplayTransform()
    width, height = transform.display_size(video.width, video.height) if video else (0, 0)
    deltas, tick_s = (scan.pts_deltas_s, scan.tick_s) if scan is not None else (np.zeros(0), 0.0)
    return VideoInfo(
        path=str(path),
        duration_s=_axis_duration(path, start, duration, streams, time_zero_s),
        width=width,
        height=height,
        fps=float(rate) if rate else 0.0,
        num_frames=video.num_frames if video else None,
        has_video=video is not None,
        has_audio=audio is not None,
        audio_sample_rate=audio.sample_rate if audio else None,
        audio_channels=audio.channels if audio else None,
        variable_frame_rate=video is not None and _is_variable_rate(video, deltas, tick_s),
        video_codec=video.codec if video else None,
        audio_codec=audio.codec if audio else None,
        rotation=transform.rotation,
        mirrored=transform.mirrored,
        video_stream=video_index,
    )


def probe_container(
    path: Path, container: av.container.InputContainer, scan_video: bool
) -> tuple[VideoInfo, float]:
    """VideoInfo and time zero (s) of an open container; ``scan_video`` demuxes early packets
    (for variable frame rate and the display matrix; without, neither is known)."""
    video_stream = main_video_stream(container)
    audio_streams = container.streams.audio
    video = _pyav_fields(video_stream) if video_stream is not None else None
    audio = _pyav_fields(audio_streams[0]) if audio_streams else None
    scan = None
    if scan_video and video_stream is not None:
        scan = _scan_video(container, video_stream)
    start = _seconds(container.start_time, Fraction(1, av.time_base))
    duration = _seconds(container.duration, Fraction(1, av.time_base))
    video_index = video_stream.index if video_stream is not None else None
    info = _assemble(path, start, duration, video, audio, scan, video_index)
    return info, _time_zero(video, audio, start)


def _main_video_entry(entries: list[dict]) -> dict | None:
    """The ffprobe ``streams`` entry of the stream :func:`main_video_stream` picks."""
    best, best_score = None, -1
    for entry in entries:
        disposition = entry.get("disposition", {})
        if entry["codec_type"] != "video" or disposition.get("attached_pic"):
            continue
        width, height = int(entry.get("width", 0)), int(entry.get("height", 0))
        score = _video_stream_score(width, height, bool(disposition.get("default")))
        if score > best_score:
            best, best_score = entry, score
    return best


def probe(path: str | Path) -> VideoInfo:
    """Describe a media file: ffprobe (via ffmpeg-python) if on PATH, else PyAV.

    Raises FileNotFoundError for a missing file and DecodeError for anything that is not
    a readable media file with a positive duration.
    """
    path = checked_media_path(path)
    ffprobe = _ffprobe_executable()
    if ffprobe is None:
        with open_media(path) as container:
            return probe_container(path, container, scan_video=True)[0]
    try:
        report = ffmpeg.probe(str(path), cmd=ffprobe)
    except ffmpeg.Error as err:
        reason = err.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown"]
        raise DecodeError(f"{path} is not a readable media file: {reason[0]}") from err
    entries = report.get("streams", [])
    video_entry = _main_video_entry(entries)
    audios = [e for e in entries if e["codec_type"] == "audio"]
    video = _ffprobe_fields(video_entry) if video_entry is not None else None
    audio = _ffprobe_fields(audios[0]) if audios else None
    scan, video_index = None, None
    if video_entry is not None:  # packets and first frame: PyAV, the libraries ffprobe uses
        video_index = int(video_entry["index"])
        with open_media(path) as container:
            scan = _scan_video(container, container.streams[video_index])
    fmt = report.get("format", {})
    start = float(fmt["start_time"]) if fmt.get("start_time") not in (None, "N/A") else None
    duration = float(fmt["duration"]) if fmt.get("duration") not in (None, "N/A") else None
    return _assemble(path, start, duration, video, audio, scan, video_index)


def declared_stream_end_s(stream: av.stream.Stream, info: VideoInfo, time_zero_s: float) -> float:
    """Where ``stream`` says it ends on the time axis (the axis end if it does not say).

    In an AVI (:data:`HEADER_LENGTH_FORMATS`) the header's length counts too: a cut-off AVI
    reports the duration of what is left, but its header still declares the whole.
    """
    fields = _pyav_fields(stream)
    end_s = info.duration_s
    if fields.duration_s is not None:
        end_s = (fields.start_s or 0.0) + fields.duration_s - time_zero_s
    if stream.container.format.name in HEADER_LENGTH_FORMATS and stream.frames:
        header_s = float((stream.start_time or 0) + stream.frames) * float(stream.time_base)
        end_s = max(end_s, header_s - time_zero_s)
    return end_s
