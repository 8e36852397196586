"""Decoding damaged, truncated, rotated and multi-stream files (issue #13 items 2, 4, 11, 15)
on tiny files made by tests/media.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.decode import (
    MAX_DAMAGED_FRACTION,
    DecodeError,
    StreamDamage,
    iter_frames,
    probe,
    read_audio,
)
from tests import media

AC3_PACKET_S = 0.032  # 1536 samples at 48 kHz
AC3_PACKETS = 63  # in 2 s of AC3: ceil(2.0 / 0.032) + the encoder's delay


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test files, written once per module (each takes a few tens of ms)."""
    folder = tmp_path_factory.mktemp("hostile")
    paths = {
        name: folder / filename
        for name, filename in {
            "ac3": "ac3.mkv",
            "audio_damaged": "audio_damaged.mkv",
            "audio_ruined": "audio_ruined.mkv",
            "video_damaged": "video_damaged.mkv",
            "avi": "ten_seconds.avi",
            "avi_mp3": "ten_seconds_mp3.avi",
            "avi_cut": "half.avi",
            "avi_mp3_cut": "half_mp3.avi",
            "upright": "upright.mp4",
        }.items()
    }
    # MPEG-4 video and AC3 audio, as in OpenCV's Megamind.avi (Matroska keeps a copy's timing)
    media.make_video(
        paths["ac3"], size=(32, 24), codec="mpeg4", audio_codec="ac3", sample_rate=48000
    )
    damaged = {"audio_damaged": ("audio", {0, 30}), "video_damaged": ("video", {5})}
    damaged["audio_ruined"] = ("audio", set(range(0, AC3_PACKETS, 4)))  # 16 of 63 packets
    for name, (kind, packets) in damaged.items():
        media.make_damaged_copy(paths["ac3"], paths[name], kind=kind, packets=packets)
    for name, audio_codec in (("avi", None), ("avi_mp3", "libmp3lame")):
        media.make_video(
            paths[name],
            duration_s=10.0,
            fps=25,
            size=(32, 24),
            codec="mpeg4",
            audio=audio_codec is not None,
            audio_codec=audio_codec or "aac",
        )
        media.make_truncated_copy(paths[name], paths[f"{name}_cut"])
    media.make_video(paths["upright"], duration_s=1.0, audio=False, corner_mark=True)
    return paths


# --- damaged packets (item 2) ---------------------------------------------------------------


def test_undecodable_audio_packets_are_skipped_and_silent(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """As ffmpeg: the two zeroed AC3 packets are skipped and counted, the rest decodes on the
    same time axis, and the lost packets' time is silence."""
    damage = StreamDamage()
    with caplog.at_level(logging.WARNING, logger="pipeline.stream_damage"):
        audio = read_audio(files["audio_damaged"], 16000, damage=damage)
    reference = read_audio(files["ac3"], 16000)
    assert audio.shape == reference.shape
    assert (damage.packets, damage.frames, damage.packets_read) == (2, 0, AC3_PACKETS)
    assert damage.seconds == pytest.approx(2 * AC3_PACKET_S)
    fraction = 2 * AC3_PACKET_S / damage.duration_s
    assert damage.to_dict()["fraction"] == pytest.approx(fraction, abs=1e-6)
    differs = np.abs(audio - reference) > 0.05  # AC3 is lossy; the tone's amplitude is 0.5
    lost = round(AC3_PACKET_S * 16000)  # samples of one packet
    assert lost <= differs.sum() <= 2 * lost + 64  # two packets' worth (and the decoder's overlap)
    at_packet_30 = slice(int(0.96 * 16000), int(0.96 * 16000) + lost // 2)  # 0.955-0.987 s
    assert np.abs(audio[at_packet_30]).max() < 0.05 < np.abs(reference[at_packet_30]).max()
    # after the gap, still aligned: a sample off would differ by up to 0.086 (440 Hz at 16 kHz)
    np.testing.assert_allclose(audio[16000:], reference[16000:], atol=1e-3)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert str(files["audio_damaged"]) in warning
    assert "2 undecodable packet(s) of 63 skipped" in warning and "0.064 s" in warning


def test_undecodable_video_packet_keeps_the_previous_frame(files: dict[str, Path]) -> None:
    damage = StreamDamage()
    frames = list(iter_frames(files["video_damaged"], 10, (32, 24), damage=damage))
    indices = [media.frame_index(f) for f in frames]  # the AC3 track ends 11 ms after frame 19
    assert indices == [0, 1, 2, 3, 4, 4, *range(6, 20), 19]
    assert (damage.packets, damage.packets_read) == (1, 20)
    assert damage.seconds == pytest.approx(0.1)
    clean = StreamDamage()
    assert len(list(iter_frames(files["ac3"], 10, (32, 24), damage=clean))) == 21
    assert not clean and clean.to_dict()["packets_read"] == 20


def test_damage_beyond_the_allowed_share_is_refused_naming_the_figures(
    files: dict[str, Path],
) -> None:
    path = files["audio_ruined"]  # 16 packets, 0.51 s of 2 s
    with pytest.raises(DecodeError) as info:
        read_audio(path, 16000)
    message = str(info.value)
    assert str(path) in message and "audio stream is damaged beyond the allowed share" in message
    skipped = re.search(r"(\d+) undecodable packet\(s\) of \d+ skipped", message)
    assert skipped and 2 < int(skipped[1]) < 16  # refused as soon as the share is passed
    assert "extraction.max_damaged_fraction" in message and "5.00%" in message
    # The limit is the caller's: two packets (3 %) pass the default and fail a 1 % limit.
    assert MAX_DAMAGED_FRACTION == 0.05
    with pytest.raises(DecodeError, match=r"audio stream is damaged.* more than 1\.00%"):
        read_audio(files["audio_damaged"], 16000, max_damaged_fraction=0.01)
    with pytest.raises(DecodeError, match="video stream is damaged"):
        list(iter_frames(files["video_damaged"], 10, (32, 24), max_damaged_fraction=0.0))
    with pytest.raises(ValueError, match="max_damaged_fraction"):
        read_audio(files["ac3"], 16000, max_damaged_fraction=1.5)


# --- truncated AVI (item 4) -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["avi", "avi_mp3"])
def test_truncated_avi_is_refused_like_other_containers(files: dict[str, Path], name: str) -> None:
    """Half an AVI probes as a shorter video (lavf measures what is left), but its header
    still declares 250 frames: decoding it must say it is truncated."""
    intact, cut = files[name], files[f"{name}_cut"]
    declared = probe(intact).num_frames  # 250, and 2 more where the MP3 track ends later
    assert len(list(iter_frames(intact, 25, (32, 24)))) == declared >= 250
    info = probe(cut)
    assert info.num_frames == declared and info.duration_s < 6.0  # the header still says 10 s
    yielded = []
    with pytest.raises(DecodeError, match=re.escape(str(cut)) + ".*probably truncated"):
        for frame in iter_frames(cut, 25, (32, 24)):
            yielded.append(media.frame_index(frame))
    assert 100 < len(yielded) < 130 and yielded[0] == 0  # what is left, then the error
    if name == "avi_mp3":
        assert read_audio(intact, 16000).shape == (round(probe(intact).duration_s * 16000),)
        with pytest.raises(DecodeError, match=re.escape(str(cut)) + ".*audio.*truncated"):
            read_audio(cut, 16000)


# --- display matrix (item 11) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("anticlockwise", "hflip", "corner", "rotation", "mirrored"),
    [
        (90, False, "bottom-left", 270, False),
        (-90, False, "top-right", 90, False),  # a phone held upright
        (180, False, "bottom-right", 180, False),
        (0, True, "top-right", 180, True),  # a mirror: ffmpeg reads it as 180 degrees, flipped
    ],
)
def test_frames_are_turned_as_the_display_matrix_says(
    files: dict[str, Path],
    tmp_path: Path,
    anticlockwise: int,
    hflip: bool,
    corner: str,
    rotation: int,
    mirrored: bool,
) -> None:
    """The mark drawn in the top-left corner of the 64 x 48 source is where a player shows
    it, and probe reports the displayed size and the rotation as ffprobe's autorotate reads it."""
    path = tmp_path / "turned.mp4"
    media.make_rotated_copy(files["upright"], path, rotation=anticlockwise, hflip=hflip)
    info = probe(path)
    assert (info.rotation, info.mirrored) == (rotation, mirrored)
    size = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.width, info.height) == size
    frames = list(iter_frames(path, 10, size))
    assert len(frames) == 10
    assert {f.shape for f in frames} == {(size[1], size[0], 3)}
    assert {media.mark_corner(f) for f in frames} == {corner}


def test_upright_frames_are_not_turned(files: dict[str, Path]) -> None:
    info = probe(files["upright"])
    assert (info.rotation, info.mirrored, info.width, info.height) == (0, False, 64, 48)
    frames = list(iter_frames(files["upright"], 10, (64, 48)))
    assert {media.mark_corner(f) for f in frames} == {"top-left"}


# --- which video stream (item 15) -----------------------------------------------------------


def test_frames_come_from_the_main_video_stream(tmp_path: Path) -> None:
    """A 16 x 16 thumbnail track (flat grey 200) comes first; the main track is decoded."""
    path = tmp_path / "two_streams.mkv"
    media.make_two_video_streams(path, thumbnail_default=False, main_default=True)
    frames = list(iter_frames(path, 10, (32, 24)))
    assert [media.frame_index(f) for f in frames] == list(range(10))
