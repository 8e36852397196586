"""pipeline.frame_skip: the decoder drops only frames that no output time shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import decode
from pipeline.decode import iter_frames
from pipeline.frame_skip import UnneededFrames
from tests import media


@dataclass
class FakePacket:
    pts: int | None
    size: int = 100


def _unneeded(**overrides) -> UnneededFrames:
    """Output at 8 fps, 10 outputs, stream ticks of 10 ms, tolerance 10 ms."""
    settings = dict(fps=8.0, num_outputs=10, time_base=0.01, time_zero_s=0.0, tolerance_s=0.01)
    return UnneededFrames(**{**settings, **overrides})


def test_shown_is_an_output_time_between_the_frame_and_the_next():
    unneeded = _unneeded()
    # output 1 is at 0.125 s, compared with tolerance: 0.135
    assert unneeded.shown(0.13, 0.20)  # 0.13 <= 0.135 < 0.20
    assert not unneeded.shown(0.14, 0.20)  # output 1 is before it, output 2 (0.26) after next
    assert not unneeded.shown(0.13, 0.134)  # the next frame takes output 1
    assert unneeded.shown(0.0, 0.02)  # output 0 at 0.01
    assert unneeded.shown(1.12, 1.2)  # output 9 (1.125 + 0.01), the last
    assert not _unneeded(num_outputs=9).shown(1.12, 1.2)  # past the last output


def test_mark_reads_the_next_frame_in_presentation_order_around_the_packet():
    # Ticks of 10 ms, outputs at 0, 12.5, 25 ... ticks (+1 tolerance); decoding order
    # I0 P4 B1 B2 B3 P8 B5 B6 B7: the B-frames' successors come after or before them.
    packets = [FakePacket(pts) for pts in (0, 4, 1, 2, 3, 8, 5, 6, 7)]
    unneeded = _unneeded(fps=100 / 12.5, window=16)  # an output every 12.5 ticks
    marked = list(unneeded.mark(iter(packets)))
    assert [packet.pts for packet, _ in marked] == [0, 4, 1, 2, 3, 8, 5, 6, 7]
    # kept: 0 (the earliest), 1 (output 0, tick 0 + 1 of tolerance), 8 (output 1, tick 13.5:
    # the latest frame before it; it has no later frame in any case)
    flags = {packet.pts: droppable for packet, droppable in marked}
    assert flags == {0: False, 4: True, 1: False, 2: True, 3: True, 8: False, 5: True, 6: True,
                     7: True}  # fmt: skip
    assert unneeded.dropped == 6


def test_mark_never_drops_a_packet_without_time_the_earliest_or_the_flush():
    packets = [FakePacket(5), FakePacket(None), FakePacket(2), FakePacket(9), FakePacket(None, 0)]
    marked = list(_unneeded(fps=1.0, num_outputs=1).mark(iter(packets)))
    # 5 and 2 are each the earliest so far; 9 has no later frame; None has no time
    assert [droppable for _, droppable in marked] == [False] * 5


def test_a_window_too_small_to_see_the_next_frame_errs_on_decoding():
    # Outputs at ticks 0, 10, 20 ... (+1 of tolerance). Presentation order 0 5 6 32 33 40;
    # 6 follows 5 but lies 3 packets later in decoding order.
    packets = [FakePacket(pts) for pts in (0, 5, 32, 33, 6, 40)]
    wide = {p.pts: d for p, d in _unneeded(fps=10.0, window=8).mark(iter(packets))}
    narrow = {p.pts: d for p, d in _unneeded(fps=10.0, window=1).mark(iter(packets))}
    # 5 (next 6) and 32, 33 show no output; 6 shows output 1 (tick 11), 40 has no next
    assert wide == {0: False, 5: True, 32: True, 33: True, 6: False, 40: False}
    # a window of 1: 5 sees 32 as its next (so output 1 looks like its), 33 sees nothing
    # later: both decoded
    assert narrow == {0: False, 5: False, 32: True, 33: False, 6: False, 40: False}


def test_mark_yields_the_packets_read_before_a_read_error_then_raises_it():
    def failing():
        yield FakePacket(0)
        yield FakePacket(1)
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    marked = _unneeded().mark(failing())
    assert [packet.pts for packet, _ in (next(marked), next(marked))] == [0, 1]
    with pytest.raises(av.FFmpegError):
        next(marked)


# --- on real streams: the frames shown are those of a full decode -------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("skip")
    paths = {
        "x264 pyramid": folder / "pyramid.mp4",
        "x264 B-frames": folder / "bframes.mp4",
        "mpeg4 B-frames": folder / "mpeg4.mkv",
        "vfr": folder / "vfr.mkv",
    }
    common = dict(duration_s=3.0, fps=25, size=(64, 48), audio=False)
    media.make_video(paths["x264 pyramid"], **common)  # x264's defaults: B-pyramid
    media.make_video(paths["x264 B-frames"], **common, codec_options=media.B_FRAME_OPTIONS)
    media.make_video(paths["mpeg4 B-frames"], **common, codec="mpeg4", codec_options={"bf": "2"})
    media.make_video(paths["vfr"], **{**common, "fps": 10}, vfr=True)
    return paths


def _decoded_frames(monkeypatch, **kwargs) -> tuple[list[np.ndarray], int]:
    """iter_frames' output and how many frames the decoder handed out."""
    count = [0]
    decode_skipping = decode.decode_skipping

    def counted(*args):
        for item in decode_skipping(*args):
            count[0] += not isinstance(item, float)
            yield item

    monkeypatch.setattr(decode, "decode_skipping", counted)
    frames = list(iter_frames(**kwargs))
    monkeypatch.undo()
    return frames, count[0]


@pytest.mark.parametrize("name", ["x264 pyramid", "x264 B-frames", "mpeg4 B-frames", "vfr"])
@pytest.mark.parametrize("fps", [1.0, 2.5, 8.0, 10.0, 24.0])
@pytest.mark.parametrize("threads", [1, 3])
def test_skipping_yields_the_frames_of_a_full_decode(sources, monkeypatch, name, fps, threads):
    arguments = dict(path=sources[name], fps=fps, size=(32, 24), threads=threads)
    full, decoded_full = _decoded_frames(monkeypatch, **arguments, skip_unneeded=False)
    skipped, decoded = _decoded_frames(monkeypatch, **arguments)
    assert len(skipped) == len(full) == int(np.ceil(3.0 * fps - 1e-9))
    for index, (a, b) in enumerate(zip(full, skipped, strict=True)):
        assert np.array_equal(a, b), f"output frame {index} differs"
    # different source frames were shown (their grey levels name them); the decoder dropped some
    assert len({media.frame_index(frame) for frame in full}) > 1
    assert decoded <= decoded_full
    if name != "vfr" and fps <= 10.0:  # non-reference B-frames no output shows exist
        assert decoded < decoded_full
