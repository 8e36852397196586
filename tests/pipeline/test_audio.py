"""pipeline.audio: the log-mel front end against librosa's own spectrogram."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from pipeline.audio import LogMelSpectrogram


@pytest.mark.parametrize(("power", "htk", "norm"), [(2, False, "slaney"), (1, True, None)])
def test_matches_librosa_melspectrogram(power, htk, norm):
    waveforms = np.random.default_rng(0).uniform(-1, 1, (2, 4000)).astype(np.float32)
    front_end = LogMelSpectrogram(
        sample_rate=16000,
        n_fft=512,
        hop_length=160,
        n_mels=40,
        fmin=125.0,
        fmax=7500.0,
        power=power,
        htk=htk,
        norm=norm,
        log_offset=0.01,
    )
    ours = front_end(waveforms)
    assert ours.shape == (2, 1 + (4000 - 512) // 160, 40) and ours.dtype == np.float32
    mel = librosa.feature.melspectrogram(
        y=waveforms,
        sr=16000,
        n_fft=512,
        hop_length=160,
        center=False,
        power=float(power),
        n_mels=40,
        fmin=125.0,
        fmax=7500.0,
        htk=htk,
        norm=norm,
    )  # (2, n_mels, T)
    np.testing.assert_allclose(ours, np.log(mel + 0.01).transpose(0, 2, 1), atol=1e-4)


def test_short_window_zero_padded_and_frames_limited():
    waveforms = np.zeros((1, 16000), dtype=np.float32)
    waveforms[0, 200] = 1.0  # an impulse inside frames 0 and 1 only (25 ms every 10 ms)
    front_end = LogMelSpectrogram(
        sample_rate=16000,
        n_fft=512,
        hop_length=160,
        n_mels=64,
        fmin=125.0,
        fmax=7500.0,
        window_length=400,
        power=1,
        htk=True,
        norm=None,
        log_offset=0.01,
        fft_float64=True,
    )
    out = front_end(waveforms, max_frames=96)
    assert out.shape == (1, 96, 64)
    silent = np.log(np.float32(0.01))
    assert (out[0, 2:] == silent).all() and (out[0, :2] > silent).all()
    assert front_end.frames(waveforms).shape == (1, 98, 400)
    # The impulse is sample 200 of frame 0 and sample 40 of frame 1: its flat spectrum is
    # scaled by the periodic Hann window there, in every mel band alike.
    window = np.hanning(401)[:-1]
    np.testing.assert_allclose(
        (np.exp(out[0, 1]) - 0.01) / (np.exp(out[0, 0]) - 0.01),
        window[40] / window[200],
        rtol=1e-4,
    )


def test_refuses_bad_settings():
    with pytest.raises(ValueError, match="window_length <= n_fft"):
        LogMelSpectrogram(16000, 256, 160, 40, 0.0, 8000.0, window_length=400)
    with pytest.raises(ValueError, match="power must be 1 or 2"):
        LogMelSpectrogram(16000, 512, 160, 40, 0.0, 8000.0, power=3)
