"""Tests for pipeline.probe (ffprobe and PyAV back ends) on tiny synthetic files written by
tests/media.py; moved here from tests/pipeline/test_decode.py when probing left pipeline.decode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

import pipeline.probe as probing
from pipeline import decode
from pipeline.probe import DecodeError, VideoInfo, probe
from tests import media


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The files the probe tests read, written once per module (each takes a few tens of ms)."""
    folder = tmp_path_factory.mktemp("media")
    paths = {
        name: folder / filename
        for name, filename in {
            "cfr": "cfr.mp4",
            "vfr": "vfr.mp4",
            "vfr_mkv": "vfr.mkv",
            "avi": "mpeg4.avi",
            "odd_mkv": "odd_ffv1.mkv",
            "stereo_mkv": "stereo.mkv",
            "no_audio": "no_audio.mp4",
            "audio_only": "audio_only.m4a",
            "b_frames": "b_frames.mp4",
            "b_frames_mkv": "b_frames.mkv",
        }.items()
    }
    media.make_video(paths["cfr"])
    media.make_video(paths["vfr"], vfr=True)
    media.make_video(paths["vfr_mkv"], vfr=True)
    media.make_video(paths["avi"], codec="mpeg4", audio_codec="pcm_s16le")
    media.make_video(paths["odd_mkv"], size=(33, 17), pix_fmt="yuv444p", codec="ffv1")
    media.make_video(paths["stereo_mkv"], audio_channels=2)
    media.make_video(paths["no_audio"], audio=False)
    media.make_audio_only(paths["audio_only"])
    for name in ("b_frames", "b_frames_mkv"):  # 60 frames: more than the scan's 50 packets
        media.make_video(
            paths[name],
            duration_s=6.0,
            size=(32, 24),
            audio=False,
            textured=True,  # moving content, so that x264 codes B-frames
            codec_options=media.B_FRAME_OPTIONS,
        )
    return paths


@pytest.fixture(params=["ffprobe", "pyav"])
def probe_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per probe back end (ffprobe only where it is on PATH)."""
    if request.param == "pyav":
        monkeypatch.setattr(probing, "_ffprobe_executable", lambda: None)
    elif shutil.which("ffprobe") is None:
        pytest.skip("no ffprobe on PATH")
    return request.param


# --- probe ----------------------------------------------------------------------------------


def test_probe_cfr_mp4(files: dict[str, Path], probe_backend: str) -> None:
    info = probe(files["cfr"])
    assert info == VideoInfo(
        path=str(files["cfr"]),
        duration_s=2.0,
        width=64,
        height=48,
        fps=10.0,
        num_frames=20,
        has_video=True,
        has_audio=True,
        audio_sample_rate=16000,
        audio_channels=1,
        variable_frame_rate=False,
        video_codec="h264",
        audio_codec="aac",
        rotation=0,
        mirrored=False,
        video_stream=0,
    )
    assert VideoInfo(**json.loads(json.dumps(info.to_dict()))) == info


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vfr", {"variable_frame_rate": True, "fps": 10.0, "num_frames": 20}),
        ("vfr_mkv", {"variable_frame_rate": True, "num_frames": None, "duration_s": 2.0}),
        ("avi", {"video_codec": "mpeg4", "audio_codec": "pcm_s16le", "num_frames": 20}),
        ("odd_mkv", {"width": 33, "height": 17, "video_codec": "ffv1", "duration_s": 2.0}),
        ("stereo_mkv", {"audio_channels": 2, "variable_frame_rate": False}),
        ("no_audio", {"has_audio": False, "audio_sample_rate": None, "audio_codec": None}),
        ("audio_only", {"has_video": False, "width": 0, "fps": 0.0, "duration_s": 2.0}),
    ],
)
def test_probe_fields(
    files: dict[str, Path], probe_backend: str, name: str, expected: dict
) -> None:
    info = probe(files[name]).to_dict()
    assert {key: info[key] for key in expected} == expected


@pytest.mark.parametrize(
    "name", ["cfr", "vfr", "vfr_mkv", "odd_mkv", "audio_only", "no_audio", "b_frames"]
)
def test_probe_backends_agree(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    if shutil.which("ffprobe") is None:
        pytest.skip("no ffprobe on PATH")
    with_ffprobe = probe(files[name])
    monkeypatch.setattr(probing, "_ffprobe_executable", lambda: None)
    assert probe(files[name]) == with_ffprobe


def test_probe_parses_ffprobe_json(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The ffprobe branch on ffprobe's JSON for cfr.mp4 (as ffprobe prints it: numbers as
    strings, rates as fractions), with a cover-art stream that must not count as video although
    it is larger than the real one."""
    report = {
        "streams": [
            {
                "index": 2,
                "codec_type": "video",
                "codec_name": "mjpeg",
                "width": 300,
                "height": 300,
                "avg_frame_rate": "0/0",
                "r_frame_rate": "90000/1",
                "start_time": "0.000000",
                "disposition": {"attached_pic": 1},
            },
            {
                "index": 0,
                "codec_type": "video",
                "codec_name": "h264",
                "width": 64,
                "height": 48,
                "r_frame_rate": "10/1",
                "avg_frame_rate": "10/1",
                "time_base": "1/10240",
                "start_time": "0.000000",
                "duration": "2.000000",
                "nb_frames": "20",
                "disposition": {"attached_pic": 0, "default": 1},
            },
            {
                "index": 1,
                "codec_type": "audio",
                "codec_name": "aac",
                "sample_rate": "16000",
                "channels": 1,
                "start_time": "0.000000",
                "duration": "2.000000",
                "nb_frames": "33",
            },
        ],
        "format": {"start_time": "0.000000", "duration": "2.000000", "nb_streams": 3},
    }
    calls = []
    monkeypatch.setattr(probing, "_ffprobe_executable", lambda: "/opt/ffmpeg/bin/ffprobe")
    monkeypatch.setattr(probing.ffmpeg, "probe", lambda path, cmd: calls.append(cmd) or report)
    from_json = probe(files["cfr"])
    assert calls == ["/opt/ffmpeg/bin/ffprobe"]
    monkeypatch.setattr(probing, "_ffprobe_executable", lambda: None)
    assert from_json == probe(files["cfr"])


def test_decode_re_exports_the_probe_names() -> None:
    """Callers keep importing probe, VideoInfo and DecodeError from pipeline.decode."""
    assert decode.probe is probe
    assert decode.VideoInfo is VideoInfo
    assert decode.DecodeError is DecodeError
    assert issubclass(decode.NoAudioStream, DecodeError)
    assert {"probe", "VideoInfo", "DecodeError"} <= set(decode.__all__)


# --- constant frame rate with B-frames (issue #13 item 14) -----------------------------------


@pytest.mark.parametrize("name", ["b_frames", "b_frames_mkv"])
def test_probe_b_frames_are_constant_rate(
    files: dict[str, Path], probe_backend: str, name: str
) -> None:
    """The first 50 packets (decode order) lack B-frames shown between their presentation
    times; the scan must judge the presentation times of the first 50 frames instead."""
    with av.open(str(files[name])) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    assert pts != sorted(pts)  # frames are reordered...
    first_packets = np.diff(sorted(pts[: probing.VFR_SCAN_PACKETS]))
    assert first_packets.max() > first_packets.min()  # ...and the first 50 packets leave a hole
    info = probe(files[name])
    assert info.variable_frame_rate is False
    assert info.fps == 10.0


# --- which video stream (issue #13 item 15) --------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "thumbnail_default", "main_default", "expected"),
    [
        (".mkv", False, False, 1),  # no default: the highest resolution
        (".mkv", False, True, 1),
        (".mp4", False, True, 1),
        (".mkv", True, False, 0),  # ffmpeg's default bonus outweighs 64 x 48 pixels
    ],
)
def test_probe_takes_the_main_video_stream_as_ffmpeg_does(
    tmp_path: Path,
    probe_backend: str,
    suffix: str,
    thumbnail_default: bool,
    main_default: bool,
    expected: int,
) -> None:
    path = tmp_path / f"two_streams{suffix}"
    media.make_two_video_streams(
        path, thumbnail_default=thumbnail_default, main_default=main_default
    )
    info = probe(path)
    assert info.video_stream == expected
    assert (info.width, info.height) == ((64, 48) if expected == 1 else (16, 16))
