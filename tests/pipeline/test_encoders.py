"""Tests of the encoder registry: classic encoders by hand-computed values, pretrained encoders
on tiny randomly initialised models (no weights, no network)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import librosa
import numpy as np
import pytest
import torch

from pipeline.audio import WindowBatch
from pipeline.encoders import (
    AUDIO_ENCODERS,
    VISUAL_ENCODERS,
    ASTAudioEncoder,
    AudioEncoderRegistry,
    CLAPAudioEncoder,
    ClassicAudioEncoder,
    ClassicVisualEncoder,
    CLIPVisualEncoder,
    MissingWeightsError,
    VideoMAEVisualEncoder,
    VisualEncoder,
    VisualEncoderRegistry,
    build_audio_encoder,
    build_visual_encoder,
)
from pipeline.encoders.base import CHUNK_BYTES, clips_to_pixels
from pipeline.encoders.classic_visual import PixelColours, hue_bin, unit_bin

SAMPLE_RATE = 16000


def solid_clip(rgb: tuple[int, int, int], frames: int = 4, size: int = 64) -> np.ndarray:
    """One clip ``(1, F, size, size, 3)`` of a single colour."""
    clip = np.zeros((1, frames, size, size, 3), dtype=np.uint8)
    clip[...] = rgb
    return clip


def sine(frequency: float, amplitude: float, seconds: float = 0.96) -> np.ndarray:
    """A sine at SAMPLE_RATE as float32."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def assert_config_json_stable(encoder, rebuilt) -> None:
    """config() survives JSON and is identical for two encoders built the same way."""
    text = json.dumps(encoder.config(), sort_keys=True)
    assert json.loads(text) == encoder.config()
    assert text == json.dumps(rebuilt.config(), sort_keys=True)
    assert encoder.config()["name"] == encoder.name


# --- classic visual ---------------------------------------------------------------------------


def test_classic_visual_shapes_dtype_determinism():
    encoder = build_visual_encoder({"name": "classic"})
    assert isinstance(encoder, ClassicVisualEncoder)
    width, height = encoder.frame_size
    clips = np.random.default_rng(0).integers(0, 256, (3, 4, height, width, 3), dtype=np.uint8)
    features = encoder.encode(clips)
    grid = encoder.encode_grid(clips)
    assert features.shape == (3, encoder.dim) and features.dtype == np.float32
    assert encoder.dim == 8 + 8 + 8 + 3 * 8 * 6 + 2 + 4 * 4
    assert grid.shape == (3, 8, 8, encoder.grid_dim) and grid.dtype == np.float32
    assert encoder.grid_shape == (8, 8) and encoder.grid_dim == 3 + 8 + 1
    assert np.isfinite(features).all() and np.isfinite(grid).all()
    np.testing.assert_array_equal(features, encoder.encode(clips.copy()))
    np.testing.assert_array_equal(grid, encoder.encode_grid(clips.copy()))
    pair = encoder.encode_with_grid(clips)
    np.testing.assert_array_equal(pair[0], features)
    np.testing.assert_array_equal(pair[1], grid)
    # Each clip is encoded independently of the rest of the batch, bit for bit.
    np.testing.assert_array_equal(encoder.encode(clips[1:2]), features[1:2])
    assert_config_json_stable(encoder, build_visual_encoder({"name": "classic"}))


@pytest.mark.parametrize(
    ("rgb", "hue_bin"),
    [((255, 0, 0), 0), ((0, 255, 0), 3), ((0, 0, 255), 5), ((255, 0, 255), 7)],
)
def test_classic_visual_hue_histogram_of_solid_colours(rgb, hue_bin):
    # 8 hue bins of 45 degrees centred on red: green 120 -> 2.67 -> 3, blue 240 -> 5.33 -> 5,
    # magenta 300 -> 6.67 -> 7.
    encoder = ClassicVisualEncoder()
    features = encoder.encode(solid_clip(rgb))[0]
    hue, saturation, value = features[:8], features[8:16], features[16:24]
    expected_hue = np.zeros(8)
    expected_hue[hue_bin] = 1.0
    np.testing.assert_allclose(hue, expected_hue, atol=1e-6)
    np.testing.assert_allclose(saturation, [0, 0, 0, 0, 0, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(value, [0, 0, 0, 0, 0, 0, 0, 1], atol=1e-6)
    thumbnail = features[24 : 24 + 144].reshape(6, 8, 3)
    np.testing.assert_allclose(thumbnail, np.broadcast_to(np.array(rgb) / 255, (6, 8, 3)))


def test_classic_visual_grey_has_no_hue_mass():
    features = ClassicVisualEncoder().encode(solid_clip((128, 128, 128)))[0]
    np.testing.assert_allclose(features[:8], 0.0)  # chroma-weighted hue: grey adds nothing
    np.testing.assert_allclose(features[8:16], [1, 0, 0, 0, 0, 0, 0, 0])  # saturation 0
    np.testing.assert_allclose(features[16:24], [0, 0, 0, 0, 1, 0, 0, 0])  # value 128/255 = 0.50


def test_classic_visual_faint_colour_noise_does_not_outweigh_a_small_object():
    # A grey frame whose pixels carry chroma 20/255 (below min_chroma 0.15) and a 4x4 red
    # square (chroma 255) in a 64x64 frame: without the threshold the noise would add
    # (4080/4096) * 20/255 = 0.078 of hue mass, 20 times the square's 16/4096 = 0.0039; the
    # noise is green-tinted, so any mass outside the red bin means noise leaked through.
    clip = np.zeros((1, 4, 64, 64, 3), dtype=np.uint8)
    clip[...] = (120, 140, 120)  # chroma 20, hue 120 degrees (green bin 3 of 8)
    clip[:, :, 10:14, 10:14] = (255, 0, 0)
    encoder = ClassicVisualEncoder()
    hue = encoder.encode(clip)[0, :8]
    expected = np.zeros(8)
    expected[0] = 16 / (64 * 64)  # the square's pixels, chroma weight 1
    np.testing.assert_allclose(hue, expected, atol=1e-7)
    without_threshold = ClassicVisualEncoder(min_chroma=0.0).encode(clip)[0, :8]
    assert without_threshold[3] == pytest.approx((64 * 64 - 16) / (64 * 64) * 20 / 255, rel=1e-5)
    with pytest.raises(ValueError, match="min_chroma"):
        ClassicVisualEncoder(min_chroma=1.5)


def test_classic_visual_thumbnail_layout():
    clip = np.zeros((1, 4, 64, 64, 3), dtype=np.uint8)
    clip[:, :, :, :32] = 255  # left half white
    thumbnail = ClassicVisualEncoder().encode(clip)[0, 24 : 24 + 144].reshape(6, 8, 3)
    np.testing.assert_allclose(thumbnail[:, :4], 1.0)
    np.testing.assert_allclose(thumbnail[:, 4:], 0.0)


def test_classic_visual_motion_energy():
    encoder = ClassicVisualEncoder()
    motion = slice(encoder.dim - 18, encoder.dim)  # mean, max, then the 4 x 4 grid
    frame = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    static = np.broadcast_to(frame, (1, 4, 64, 64, 3)).copy()
    np.testing.assert_array_equal(encoder.encode(static)[0, motion], 0.0)

    flicker = np.zeros((1, 4, 64, 64, 3), dtype=np.uint8)
    flicker[:, 1::2] = 255  # black, white, black, white
    np.testing.assert_allclose(encoder.encode(flicker)[0, motion], 1.0)

    corner = np.zeros((1, 4, 64, 64, 3), dtype=np.uint8)
    corner[:, 1::2, :16, :16] = 255  # only the top-left cell of the 4 x 4 grid flickers
    energy = encoder.encode(corner)[0, motion]
    np.testing.assert_allclose(energy[:2], 1 / 16)
    expected_grid = np.zeros((4, 4))
    expected_grid[0, 0] = 1.0
    np.testing.assert_allclose(energy[2:].reshape(4, 4), expected_grid)

    single_frame = ClassicVisualEncoder(frames_per_snippet=1)
    one = single_frame.encode(frame[None, None])
    np.testing.assert_array_equal(one[0, motion], 0.0)


def test_classic_visual_grid_cells():
    encoder = ClassicVisualEncoder()
    clip = np.zeros((1, 4, 64, 64, 3), dtype=np.uint8)
    clip[..., :32, 0] = 255  # left half red
    clip[..., 32:, 2] = 255  # right half blue
    clip[:, 1::2, :8, :8] = 0  # top-left cell flickers to black on odd frames
    grid = encoder.encode_grid(clip)[0]  # (8, 8, 12): mean RGB, 8 hue bins, motion
    np.testing.assert_allclose(grid[1:, :4, :3], np.broadcast_to([1, 0, 0], (7, 4, 3)))
    np.testing.assert_allclose(grid[:, 4:, :3], np.broadcast_to([0, 0, 1], (8, 4, 3)))
    np.testing.assert_allclose(grid[:, 4:, 3 + 5], 1.0)  # blue hue bin
    np.testing.assert_allclose(grid[1:, :4, 3 + 0], 1.0)  # red hue bin
    np.testing.assert_allclose(grid[..., 3:11].sum(-1)[:, 4:], 1.0)
    expected_motion = np.zeros((8, 8))
    expected_motion[0, 0] = 1 / 3  # red -> black changes one of three channels fully
    np.testing.assert_allclose(grid[..., 11], expected_motion, atol=1e-6)


def test_classic_visual_rejects_wrong_frames():
    encoder = ClassicVisualEncoder(frame_size=(32, 24))
    with pytest.raises(ValueError, match="frame_size 32x24"):
        encoder.encode(np.zeros((1, 4, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode(np.zeros((1, 4, 24, 32, 3), dtype=np.float32))
    assert encoder.encode(np.zeros((2, 4, 24, 32, 3), dtype=np.uint8)).shape == (2, encoder.dim)


def hexcone_colours(rgb: np.ndarray, hue_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue bin, value and chroma of ``(N, 3)`` uint8 pixels, computed per pixel in float32 from
    the hexcone definition (the encoder looks them up in tables)."""
    red, green, blue = rgb.T.astype(np.float32)
    value = np.maximum(np.maximum(red, green), blue)
    chroma = value - np.minimum(np.minimum(red, green), blue)
    numerator = np.where(
        value == red,
        green - blue,
        np.where(value == green, blue - red + 2 * chroma, red - green + 4 * chroma),
    )
    return hue_bin(numerator, chroma, hue_bins), value, chroma


def test_classic_visual_colour_tables_give_the_formulas_for_every_colour():
    # All 2**24 RGB colours, 2**21 at a time: the encoder's table lookups against the float32
    # formulas computed per pixel (hue bin, saturation and value bins, hue weight). Chroma 51
    # is min_chroma 0.2 exactly, and counts.
    encoder = ClassicVisualEncoder(hue_bins=24, saturation_bins=5, value_bins=7, min_chroma=0.2)
    tables = encoder.tables
    colours = np.arange(1 << 24, dtype=np.uint32)
    for first in range(0, 1 << 24, 1 << 21):
        packed = colours[first : first + (1 << 21)]
        rgb = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
        expected_hue, value, chroma = hexcone_colours(rgb, 24)
        looked_up = PixelColours.of(np.ascontiguousarray(rgb.T), tables)
        np.testing.assert_array_equal(looked_up.hue_bin, expected_hue)
        np.testing.assert_array_equal(looked_up.value, value)
        np.testing.assert_array_equal(looked_up.chroma, chroma)
        saturation_bin = tables.saturation[looked_up.chroma.astype(np.intp) * 256 + looked_up.value]
        np.testing.assert_array_equal(saturation_bin, unit_bin(chroma / np.maximum(value, 1.0), 5))
        np.testing.assert_array_equal(tables.value[looked_up.value], unit_bin(value / 255, 7))
        weight = chroma / np.float32(255.0)
        expected_weight = np.where(weight >= 0.2, weight, 0.0)
        np.testing.assert_array_equal(tables.weight[looked_up.chroma], expected_weight)
    assert expected_hue.min() == 0 and expected_hue.max() == 23  # every bin reached


def test_classic_encoders_work_in_chunks_without_changing_a_row():
    # Batches larger than one cache-sized chunk (CHUNK_BYTES) give the rows of one-item calls.
    rng = np.random.default_rng(4)
    visual = ClassicVisualEncoder()
    clips = rng.integers(0, 256, (25, 4, 64, 64, 3), dtype=np.uint8)
    assert clips.nbytes > 2 * CHUNK_BYTES
    pooled, grid = visual.encode_with_grid(clips)
    one_by_one = [visual.encode_with_grid(clip[None]) for clip in clips]
    np.testing.assert_array_equal(pooled, np.concatenate([rows for rows, _ in one_by_one]))
    np.testing.assert_array_equal(grid, np.concatenate([cells for _, cells in one_by_one]))
    np.testing.assert_array_equal(pooled, visual.encode(clips))
    np.testing.assert_array_equal(grid, visual.encode_grid(clips))
    audio = ClassicAudioEncoder()
    windows = (0.2 * rng.standard_normal((20, 15360))).astype(np.float32)
    assert windows.nbytes > 2 * CHUNK_BYTES
    features = audio.encode(windows)
    # The mel matrix product may round differently for another number of rows.
    one_by_one = np.concatenate([audio.encode(window[None]) for window in windows])
    np.testing.assert_allclose(features, one_by_one, rtol=1e-6)


# --- classic audio ----------------------------------------------------------------------------


def test_classic_audio_shapes_dtype_determinism():
    encoder = build_audio_encoder({"name": "classic"})
    assert isinstance(encoder, ClassicAudioEncoder) and encoder.sample_rate == SAMPLE_RATE
    rng = np.random.default_rng(0)
    windows = np.stack(
        [
            0.1 * rng.standard_normal(15360).astype(np.float32),
            np.zeros(15360, dtype=np.float32),
            sine(1000.0, 0.5),
        ]
    )
    features = encoder.encode(windows)
    assert features.shape == (3, encoder.dim) == (3, 2 * (64 + 6))
    assert features.dtype == np.float32 and np.isfinite(features).all()
    np.testing.assert_array_equal(features, encoder.encode(windows.copy()))
    assert_config_json_stable(encoder, build_audio_encoder({"name": "classic"}))
    without_std = ClassicAudioEncoder(include_std=False)
    assert without_std.encode(windows).shape == (3, 64 + 6)


def test_classic_audio_tone_peaks_in_its_mel_band():
    encoder = ClassicAudioEncoder()
    features = encoder.encode(sine(1000.0, 0.5)[None])[0]
    # Mel filter m rises from edge m to its peak at edge m + 1 and falls to edge m + 2.
    edges = librosa.mel_frequencies(n_mels=64 + 2, fmin=0.0, fmax=SAMPLE_RATE / 2)
    peak_band = int(np.argmax(features[:64]))
    assert edges[peak_band] < 1000.0 < edges[peak_band + 2]
    assert peak_band == int(np.argmin(np.abs(edges[1:-1] - 1000.0)))
    centroid, bandwidth, rolloff, flatness, zcr, rms = features[128:134]
    assert centroid == pytest.approx(1000.0 / 8000.0, abs=1e-4)
    assert rolloff == pytest.approx(1000.0 / 8000.0, abs=2 * 31.25 / 8000)  # two FFT bins
    assert bandwidth < 100.0 / 8000.0
    assert flatness < 1e-3
    assert zcr == pytest.approx(2 * 1000.0 / SAMPLE_RATE, abs=2 / 512)
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert features[134 + 5] == pytest.approx(0.0, abs=1e-4)  # RMS of a steady tone is steady


def test_classic_audio_silence_and_short_windows_are_finite():
    encoder = ClassicAudioEncoder()
    silence = encoder.encode(np.zeros((2, 15360), dtype=np.float32))
    assert np.isfinite(silence).all()
    np.testing.assert_allclose(silence[:, :64], np.log(1e-10), rtol=1e-5)
    np.testing.assert_allclose(silence[:, 128:131], 0.0)  # centroid, bandwidth, roll-off
    np.testing.assert_allclose(silence[:, 133], 0.0)  # RMS
    short = encoder.encode(np.full((3, 100), 0.25, dtype=np.float32))
    assert short.shape == (3, encoder.dim) and np.isfinite(short).all()
    with pytest.raises(ValueError, match="NaN"):
        encoder.encode(np.full((1, 1000), np.nan, dtype=np.float32))


def test_classic_audio_statistics_match_librosa():
    encoder = ClassicAudioEncoder()
    rng = np.random.default_rng(3)
    windows = (rng.standard_normal((3, 8000)) * np.array([[0.01], [0.3], [1.0]])).astype(np.float32)
    windows[2, :3000] = 0.0
    features = encoder.encode(windows)
    frames = dict(n_fft=512, hop_length=160, center=False)
    magnitude = np.abs(librosa.stft(windows, **frames))
    nyquist = SAMPLE_RATE / 2
    reference = [
        librosa.feature.spectral_centroid(S=magnitude, sr=SAMPLE_RATE, n_fft=512) / nyquist,
        librosa.feature.spectral_bandwidth(S=magnitude, sr=SAMPLE_RATE, n_fft=512) / nyquist,
        librosa.feature.spectral_rolloff(S=magnitude, sr=SAMPLE_RATE, n_fft=512) / nyquist,
        librosa.feature.spectral_flatness(S=magnitude),
        librosa.feature.zero_crossing_rate(windows, frame_length=512, hop_length=160, center=False),
        librosa.feature.rms(y=windows, frame_length=512, hop_length=160, center=False),
    ]
    for index, per_frame in enumerate(reference):
        np.testing.assert_allclose(features[:, 128 + index], per_frame[:, 0].mean(-1), atol=1e-4)
        np.testing.assert_allclose(features[:, 134 + index], per_frame[:, 0].std(-1), atol=1e-4)
    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=SAMPLE_RATE, n_mels=64)
    np.testing.assert_allclose(features[:, :64], np.log(mel + 1e-10).mean(-1), atol=1e-3)


def _grid_batch(waveform: np.ndarray, stride: int, length: int, count: int) -> WindowBatch:
    """``count`` windows of ``length`` samples every ``stride`` samples of ``waveform``, zeros
    past its end."""
    offsets = np.arange(count, dtype=np.int64) * stride  # (B,)
    samples = np.zeros(int(offsets[-1]) + length, np.float32)
    samples[: len(waveform)] = waveform[: len(samples)]
    return WindowBatch(samples, offsets, length)


def test_classic_audio_batch_on_a_hop_grid_shares_frames_and_matches_encode(monkeypatch):
    encoder = ClassicAudioEncoder()
    rng = np.random.default_rng(4)
    waveform = np.concatenate(
        [0.3 * rng.standard_normal(250000), np.zeros(9000), sine(440.0, 0.8, 2.5)]
    ).astype(np.float32)
    # The default grid (0.32 s stride, 0.96 s windows), running past the sound's end into
    # silence, and a stretch that needs several chunks of frames.
    batch = _grid_batch(waveform, stride=5120, length=15360, count=64)
    assert batch.samples.nbytes > 2 * CHUNK_BYTES
    expected = encoder.encode(batch.windows())  # (64, D)

    def refused(windows):
        raise AssertionError("a hop grid must not be cut into windows")

    monkeypatch.setattr(encoder, "encode", refused)
    shared = encoder.encode_batch(batch)
    assert shared.shape == expected.shape and shared.dtype == np.float32
    # Equal up to float32 rounding of the matrix products (summed in another order).
    np.testing.assert_allclose(shared, expected, rtol=1e-5, atol=1e-6)
    # One window, and windows that touch without overlapping, share frames too.
    np.testing.assert_allclose(
        encoder.encode_batch(_grid_batch(waveform, 5120, 15360, 1)), expected[:1], rtol=1e-5
    )
    touching = _grid_batch(waveform, stride=4800, length=4800, count=5)
    monkeypatch.undo()
    np.testing.assert_allclose(
        encoder.encode_batch(touching), encoder.encode(touching.windows()), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("stride", "length"),
    [(5000, 15360), (6400, 4800), (160, 300)],  # off the hop grid; apart; shorter than n_fft
)
def test_classic_audio_batch_off_the_hop_grid_is_encode_of_its_windows(stride, length):
    encoder = ClassicAudioEncoder()
    waveform = (0.2 * np.random.default_rng(5).standard_normal(60000)).astype(np.float32)
    batch = _grid_batch(waveform, stride, length, count=6)
    np.testing.assert_array_equal(encoder.encode_batch(batch), encoder.encode(batch.windows()))


def test_classic_audio_batch_refuses_nan_samples():
    batch = _grid_batch(np.zeros(30000, np.float32), stride=5120, length=15360, count=3)
    batch.samples[20000] = np.nan
    with pytest.raises(ValueError, match="NaN or inf samples"):
        ClassicAudioEncoder().encode_batch(batch)


# --- registry ---------------------------------------------------------------------------------


def test_registry_refuses_unknown_names_and_keys():
    assert {"classic", "clip", "resnet", "videomae"} <= set(VISUAL_ENCODERS.names())
    assert {"classic", "clap", "ast"} <= set(AUDIO_ENCODERS.names())
    with pytest.raises(ValueError, match=r"'swin'.*valid names: \['classic', 'clip', 'resnet'"):
        build_visual_encoder({"name": "swin"})
    with pytest.raises(ValueError, match=r"'visual encoder classic\.hue_binz'; valid keys here"):
        build_visual_encoder({"name": "classic", "hue_binz": 4})
    with pytest.raises(ValueError, match=r"classic\.n_mfcc'; valid keys here: .*n_mels"):
        build_audio_encoder({"name": "classic", "n_mfcc": 13})
    with pytest.raises(ValueError, match=r"'visual encoder clip\.device'"):
        build_visual_encoder({"name": "clip", "device": "cpu"})  # a runtime argument, not a key
    with pytest.raises(ValueError, match="'name' key"):
        build_audio_encoder({"n_mels": 64})
    with pytest.raises(ValueError, match="'frames_per_snippet'"):
        build_visual_encoder({"name": "classic", "frames_per_snippet": 0})
    with pytest.raises(ValueError, match="'grid_shape'"):
        build_visual_encoder({"name": "classic", "frame_size": [8, 8], "grid_shape": [16, 16]})
    with pytest.raises(ValueError, match="'fmax'"):
        build_audio_encoder({"name": "classic", "fmax": 12000.0})


def test_registry_builds_from_yaml_style_lists_and_config_tracks_kwargs():
    cfg = {"name": "classic", "frame_size": [32, 24], "grid_shape": [4, 4]}
    encoder = build_visual_encoder(cfg)
    assert encoder.frame_size == (32, 24) and encoder.grid_shape == (4, 4)
    assert encoder.config()["frame_size"] == [32, 24]
    default = build_visual_encoder({"name": "classic"})
    assert encoder.config() != default.config()


# --- lazy registry ----------------------------------------------------------------------------

# Runs in a fresh interpreter: this test module has already imported torch.
CLASSIC_WITHOUT_TORCH = """
import sys
import numpy as np
from pipeline.encoders import VISUAL_ENCODERS, build_audio_encoder, build_visual_encoder
assert VISUAL_ENCODERS.get("classic").__name__ == "ClassicVisualEncoder"
visual = build_visual_encoder({"name": "classic"})
audio = build_audio_encoder({"name": "classic"})
width, height = visual.frame_size
clips = np.zeros((1, visual.frames_per_snippet, height, width, 3), dtype=np.uint8)
assert visual.encode(clips).shape == (1, visual.dim)
assert audio.encode(np.zeros((1, 16000), dtype=np.float32)).shape == (1, audio.dim)
try:
    build_visual_encoder({"name": "swin"})
except ValueError as error:
    print(error)
heavy = sorted(name for name in ("torch", "transformers", "open_clip") if name in sys.modules)
print("heavy modules:", heavy)
"""


def test_classic_encoders_do_not_import_torch():
    result = subprocess.run(
        [sys.executable, "-c", CLASSIC_WITHOUT_TORCH],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "heavy modules: []" in result.stdout
    # Unknown names list every built-in encoder, also those whose module is not imported yet.
    valid = "['classic', 'clip', 'resnet', 'videomae']"
    assert f"unknown visual encoder 'swin'; valid names: {valid}" in result.stdout


def test_lazy_entry_imports_its_module_on_first_lookup():
    probe = (
        "import sys\n"
        "from pipeline.encoders import AUDIO_ENCODERS\n"
        "print('clap' in AUDIO_ENCODERS, 'pipeline.encoders.clap' in sys.modules)\n"
        "print(AUDIO_ENCODERS.get('clap').__name__, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "CLAPAudioEncoder", "True"]


def test_lazy_entries_are_reserved_and_checked():
    registry = VisualEncoderRegistry(
        modules={
            "classic": "pipeline.encoders.classic_visual",
            "ghost": "pipeline.encoders.no_such_module",
        }
    )
    assert registry.names() == ["classic", "ghost"] and "ghost" in registry

    class Impostor(VisualEncoder):
        def encode(self, clips):
            return clips

        def config(self):
            return {}

    with pytest.raises(ValueError, match=r"'classic' is reserved for pipeline\.encoders\.classic_"):
        registry.register("classic")(Impostor)
    registry.register("impostor")(Impostor)
    assert registry.get("impostor") is Impostor
    # classic_visual registers into the global VISUAL_ENCODERS, not into this registry.
    with pytest.raises(RuntimeError, match="did not register visual encoder 'classic'"):
        registry.get("classic")
    with pytest.raises(
        ImportError, match=r"'ghost' needs module pipeline\.encoders\.no_such_module"
    ):
        registry.get("ghost")
    with pytest.raises(ValueError, match=r"valid names: \['classic', 'ghost', 'impostor'\]"):
        registry.get("resnet")
    assert AudioEncoderRegistry().names() == []


# --- pretrained encoders: missing weights -----------------------------------------------------


@pytest.mark.parametrize(
    ("build", "cfg", "model_name"),
    [
        (
            build_visual_encoder,
            {"name": "clip", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
            "ViT-B-32",
        ),
        (build_visual_encoder, {"name": "videomae", "model": "avloc-test/absent"}, "absent"),
        (build_audio_encoder, {"name": "clap", "model": "avloc-test/absent"}, "absent"),
        (build_audio_encoder, {"name": "ast", "model": "avloc-test/absent"}, "absent"),
    ],
)
def test_missing_weights_fail_fast(build, cfg, model_name, tmp_path):
    import open_clip  # noqa: F401  (imports are slow; time only the lookup)
    import transformers  # noqa: F401

    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match=model_name) as raised:
        build({**cfg, "cache_dir": str(tmp_path)}, device="cpu")
    assert time.perf_counter() - start < 5.0
    assert "download: true" in str(raised.value)


def test_missing_local_directory_and_bad_clip_names(tmp_path):
    with pytest.raises(MissingWeightsError, match="no_such_dir"):
        build_visual_encoder({"name": "videomae", "model": str(tmp_path / "no_such_dir")})
    with pytest.raises(MissingWeightsError, match="weights_path"):
        build_visual_encoder(
            {"name": "clip", "pretrained": None, "weights_path": str(tmp_path / "x.pt")}
        )
    with pytest.raises(ValueError, match=r"'laion9b'.*valid tags"):
        build_visual_encoder({"name": "clip", "pretrained": "laion9b"})
    with pytest.raises(ValueError, match="not a built-in open_clip"):
        build_visual_encoder({"name": "clip", "model": "ViT-Z-99"})


# --- pretrained encoders: tiny random models --------------------------------------------------

TINY_CLIP_NAME = "avloc-test-tiny-vit"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def random_clips(frames: int, size: int, batch: int = 3) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8)


def random_windows(samples: int) -> np.ndarray:
    windows = 0.1 * np.random.default_rng(8).standard_normal((3, samples)).astype(np.float32)
    windows[1] = 0.0  # one silent window
    return windows


@pytest.fixture(scope="module")
def tiny_clip_checkpoint(tmp_path_factory):
    """A tiny open_clip architecture registered under TINY_CLIP_NAME and a checkpoint of it."""
    import open_clip

    directory = tmp_path_factory.mktemp("tiny_clip")
    (directory / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(directory / f"{TINY_CLIP_NAME}.json")
    torch.manual_seed(0)
    clip_model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    checkpoint = directory / "tiny_clip.pt"
    torch.save(clip_model.state_dict(), checkpoint)
    return clip_model, checkpoint


def test_tiny_clip_encoder(tiny_clip_checkpoint):
    import open_clip

    clip_model, checkpoint = tiny_clip_checkpoint
    cfg = {"name": "clip", "model": TINY_CLIP_NAME, "pretrained": None}
    cfg["weights_path"] = str(checkpoint)
    encoder = build_visual_encoder({**cfg, "frames_per_snippet": 3}, device="cpu")
    assert isinstance(encoder, CLIPVisualEncoder)
    assert encoder.frame_size == (32, 32) and encoder.frames_per_snippet == 3
    assert (encoder.dim, encoder.grid_shape, encoder.grid_dim) == (16, (4, 4), 16)
    assert encoder.mean == tuple(open_clip.OPENAI_DATASET_MEAN)
    clips = random_clips(frames=3, size=32)
    embeddings = encoder.encode(clips)
    grid = encoder.encode_grid(clips)
    assert embeddings.shape == (3, 16) and embeddings.dtype == np.float32
    assert grid.shape == (3, 4, 4, 16) and grid.dtype == np.float32
    assert np.isfinite(embeddings).all() and np.isfinite(grid).all()
    np.testing.assert_array_equal(embeddings, encoder.encode(clips))
    # Loaded weights equal the wrapped model's: same outputs as from_model.
    wrapped = CLIPVisualEncoder.from_model(
        clip_model,
        mean=open_clip.OPENAI_DATASET_MEAN,
        std=open_clip.OPENAI_DATASET_STD,
        frames_per_snippet=3,
    )
    np.testing.assert_allclose(wrapped.encode(clips), embeddings, atol=1e-6)
    both = wrapped.encode_with_grid(clips)
    np.testing.assert_allclose(both[0], embeddings, atol=1e-6)
    np.testing.assert_allclose(both[1], grid, atol=1e-6)
    # Frame embeddings are L2-normalised before the mean: identical frames give norm 1.
    still = np.repeat(clips[:, :1], 3, axis=1)
    np.testing.assert_allclose(np.linalg.norm(encoder.encode(still), axis=1), 1.0, atol=1e-5)
    assert (np.linalg.norm(embeddings, axis=1) <= 1.0 + 1e-6).all()
    assert_config_json_stable(encoder, build_visual_encoder({**cfg, "frames_per_snippet": 3}))
    assert encoder.config()["weights_path"] == str(checkpoint)


def test_tiny_clip_resnet_tower_has_no_grid():
    import open_clip

    torch.manual_seed(0)
    resnet_clip = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
        text_cfg=TINY_CLIP_CONFIG["text_cfg"],
    )
    encoder = CLIPVisualEncoder.from_model(resnet_clip, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert (encoder.dim, encoder.grid_shape, encoder.grid_dim) == (16, None, None)
    clips = random_clips(frames=4, size=32)
    embeddings = encoder.encode(clips)
    assert embeddings.shape == (3, 16) and np.isfinite(embeddings).all()
    with pytest.raises(NotImplementedError, match="no spatial grid"):
        encoder.encode_grid(clips)
    assert encoder.config()["grid_shape"] is None


def test_tiny_videomae_encoder(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

    torch.manual_seed(0)
    video_model = VideoMAEModel(
        VideoMAEConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=32,
            patch_size=16,
            num_frames=4,
            tubelet_size=2,
        )
    )
    video_model.save_pretrained(tmp_path)
    processor = VideoMAEImageProcessor(crop_size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path)
    encoder = build_visual_encoder({"name": "videomae", "model": str(tmp_path)}, device="cpu")
    assert isinstance(encoder, VideoMAEVisualEncoder)
    assert (encoder.frames_per_snippet, encoder.frame_size) == (4, (32, 32))
    assert (encoder.dim, encoder.grid_shape, encoder.grid_dim) == (32, (2, 2), 32)
    assert encoder.mean == tuple(processor.image_mean)
    clips = random_clips(frames=4, size=32)
    embeddings = encoder.encode(clips)
    grid = encoder.encode_grid(clips)
    assert embeddings.shape == (3, 32) and embeddings.dtype == np.float32
    assert grid.shape == (3, 2, 2, 32) and grid.dtype == np.float32
    assert np.isfinite(embeddings).all() and np.isfinite(grid).all()
    np.testing.assert_array_equal(embeddings, encoder.encode(clips))
    # The embedding is the mean over all space-time tokens: the grid's mean over cells.
    np.testing.assert_allclose(grid.mean(axis=(1, 2)), embeddings, atol=1e-5)
    wrapped = VideoMAEVisualEncoder.from_model(
        video_model, image_mean=processor.image_mean, image_std=processor.image_std
    )
    np.testing.assert_allclose(wrapped.encode(clips), embeddings, atol=1e-5)
    with pytest.raises(ValueError, match="frames_per_snippet=4"):
        encoder.encode(random_clips(frames=3, size=32))
    rebuilt = build_visual_encoder({"name": "videomae", "model": str(tmp_path)}, device="cpu")
    assert_config_json_stable(encoder, rebuilt)


def _save_videomae_classifier(folder, hidden_size: int, num_attention_heads: int):
    """A tiny random fine-tuned VideoMAE (VideoMAE V2's form) with its image processor."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    torch.manual_seed(0)
    classifier = VideoMAEForVideoClassification(
        VideoMAEConfig(
            hidden_size=hidden_size,
            num_hidden_layers=1,
            num_attention_heads=num_attention_heads,
            intermediate_size=32,
            image_size=32,
            patch_size=16,
            num_frames=4,
            tubelet_size=2,
            num_labels=3,
            use_mean_pooling=True,
        )
    )
    classifier.save_pretrained(folder)
    VideoMAEImageProcessor(crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return classifier


def test_videomae_v2_classifier_checkpoint(tmp_path):
    """A VideoMAEForVideoClassification folder of ViT-g's width: 1408 read from its config, the
    backbone's token mean then the classifier's fc_norm (VideoMAE V2's forward_features)."""
    classifier = _save_videomae_classifier(tmp_path, hidden_size=1408, num_attention_heads=16)
    encoder = build_visual_encoder({"name": "videomae", "model": str(tmp_path)}, device="cpu")
    assert (encoder.dim, encoder.grid_dim, encoder.grid_shape) == (1408, 1408, (2, 2))
    clips = random_clips(frames=4, size=32)
    embeddings, grid = encoder.encode_with_grid(clips)
    assert embeddings.shape == (3, 1408) and grid.shape == (3, 2, 2, 1408)
    pixels = clips_to_pixels(clips, encoder.mean, encoder.std, torch.device("cpu"))
    with torch.no_grad():
        hidden = classifier.videomae(pixel_values=pixels).last_hidden_state  # (B, N, D)
        expected = classifier.fc_norm(hidden.mean(dim=1)).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    np.testing.assert_allclose(encoder.encode(clips), embeddings, atol=1e-5)
    config = encoder.config()
    assert config["architecture"] == "VideoMAEForVideoClassification"
    assert config["pooling"] == "mean of last hidden state, then fc_norm"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"model_type": "VideoMAEv2_Giant"}, "model_type 'VideoMAEv2_Giant', not 'videomae'"),
        ({"num_hidden_layers": 2}, "weights of VideoMAEForVideoClassification are missing"),
        ({"hidden_size": 32}, "its weights do not fit its config.json"),
        (None, "has no config.json"),
    ],
)
def test_unloadable_videomae_checkpoint_says_how_to_get_weights(tmp_path, change, problem):
    _save_videomae_classifier(tmp_path, hidden_size=16, num_attention_heads=2)
    config_path = tmp_path / "config.json"
    if change is None:
        config_path.unlink()
    else:
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **change}))
    with pytest.raises(MissingWeightsError) as raised:
        build_visual_encoder({"name": "videomae", "model": str(tmp_path)}, device="cpu")
    message = str(raised.value)
    assert f"VideoMAE model {str(tmp_path)!r}" in message and problem in message
    assert "github.com/OpenGVLab/VideoMAEv2" in message and "save_pretrained" in message


@pytest.mark.parametrize("enable_fusion", [False, True])
def test_tiny_clap_encoder(enable_fusion, tmp_path):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(0)
    clap_config = ClapConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 20,
            "max_position_embeddings": 40,
        },
        audio_config={
            "window_size": 4,
            "num_mel_bins": 16,
            "spec_size": 64,
            "patch_size": 4,
            "patch_stride": [4, 4],
            "hidden_size": 16,
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "patch_embeds_hidden_size": 8,
            "enable_fusion": enable_fusion,
        },
        projection_dim=8,
    )
    full_model = ClapModel(clap_config).eval()
    full_model.save_pretrained(tmp_path)
    extractor = ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        max_length_s=1,
        fft_window_size=400,
        frequency_max=8000,
    )
    extractor.save_pretrained(tmp_path)
    encoder = build_audio_encoder({"name": "clap", "model": str(tmp_path)}, device="cpu")
    assert isinstance(encoder, CLAPAudioEncoder)
    assert (encoder.sample_rate, encoder.dim) == (SAMPLE_RATE, 8)
    windows = random_windows(samples=8000)
    embeddings = encoder.encode(windows)
    assert embeddings.shape == (3, 8) and embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(embeddings, encoder.encode(windows))
    # Independent of the batch (the extractor's random is_longer flag is overridden).
    np.testing.assert_allclose(encoder.encode(windows[2:3]), embeddings[2:3], atol=1e-5)
    # Same as the full model's get_audio_features on windows shorter than max_length_s.
    inputs = extractor(
        list(windows),
        sampling_rate=SAMPLE_RATE,
        truncation="fusion" if enable_fusion else "rand_trunc",
        return_tensors="pt",
    )
    inputs["is_longer"] = torch.zeros_like(inputs["is_longer"])
    with torch.inference_mode():
        expected = full_model.get_audio_features(**inputs)
    np.testing.assert_allclose(embeddings, expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="shorter snippet window"):
        encoder.encode(np.zeros((1, SAMPLE_RATE + 1), dtype=np.float32))
    rebuilt = build_audio_encoder({"name": "clap", "model": str(tmp_path)}, device="cpu")
    assert_config_json_stable(encoder, rebuilt)


def test_tiny_ast_encoder(tmp_path):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(0)
    ast_model = ASTModel(
        ASTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            max_length=48,
            num_mel_bins=16,
        )
    ).eval()
    extractor = ASTFeatureExtractor(num_mel_bins=16, max_length=48)
    ast_model.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    encoder = build_audio_encoder({"name": "ast", "model": str(tmp_path)}, device="cpu")
    assert isinstance(encoder, ASTAudioEncoder)
    assert (encoder.sample_rate, encoder.dim) == (SAMPLE_RATE, 32)
    windows = random_windows(samples=4000)
    embeddings = encoder.encode(windows)
    assert embeddings.shape == (3, 32) and embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    np.testing.assert_array_equal(embeddings, encoder.encode(windows))
    inputs = extractor(list(windows), sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.inference_mode():
        expected = ast_model(**inputs).pooler_output
    np.testing.assert_allclose(embeddings, expected.numpy(), atol=1e-5)
    # 48 frames of 25 ms every 10 ms: 1 + (N - 400) // 160 <= 48 -> N <= 8079 samples.
    assert encoder.max_samples == 8079
    assert encoder.encode(np.zeros((1, 8079), dtype=np.float32)).shape == (1, 32)
    with pytest.raises(ValueError, match="8080 samples"):
        encoder.encode(np.zeros((1, 8080), dtype=np.float32))
    assert np.isfinite(encoder.encode(np.full((2, 50), 0.1, dtype=np.float32))).all()
    wrapped = ASTAudioEncoder.from_model(ast_model, extractor)
    np.testing.assert_allclose(wrapped.encode(windows), embeddings, atol=1e-6)
    rebuilt = build_audio_encoder({"name": "ast", "model": str(tmp_path)}, device="cpu")
    assert_config_json_stable(encoder, rebuilt)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_clip_fp16_on_cuda(tiny_clip_checkpoint):
    import open_clip

    clip_model, _ = tiny_clip_checkpoint
    constants = {"mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD}
    reference = CLIPVisualEncoder.from_model(copy_of(clip_model), **constants, device="cpu")
    half = CLIPVisualEncoder.from_model(copy_of(clip_model), **constants, device="cuda", fp16=True)
    assert half.config()["precision"] == "fp16" and reference.config()["precision"] == "fp32"
    clips = random_clips(frames=4, size=32)
    embeddings = half.encode(clips)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, reference.encode(clips), atol=1e-2)
    assert half.encode_grid(clips).dtype == np.float32


def copy_of(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy, so moving one encoder's model to a device leaves the fixture's alone."""
    import copy

    return copy.deepcopy(module)
