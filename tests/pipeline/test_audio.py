"""pipeline.audio: the log-mel front end against librosa's own spectrogram; windows cut from a
waveform as it streams."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from pipeline.audio import LogMelSpectrogram, iter_windows


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


# --- iter_windows ------------------------------------------------------------------------------


def _blocks(waveform: np.ndarray, sizes: tuple[int, ...], pulled: list[int] | None = None):
    """``waveform`` in consecutive blocks whose sizes cycle through ``sizes``; ``pulled[0]``
    counts the samples handed out."""
    start, k = 0, 0
    while start < len(waveform):
        block = waveform[start : start + sizes[k % len(sizes)]]
        start, k = start + len(block), k + 1
        if pulled is not None:
            pulled[0] += len(block)
        yield block


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_iter_windows_cuts_each_window_zero_padded_past_the_end(batch_size):
    waveform = np.random.default_rng(0).uniform(-1, 1, 997).astype(np.float32)
    starts = np.array([0, 0, 5, 100, 350, 900, 990, 997, 1200])  # overlapping, past the end
    window_samples = 40
    expected = np.zeros((len(starts), window_samples), np.float32)  # (T, N)
    for row, start in zip(expected, starts, strict=True):
        part = waveform[start : start + window_samples]
        row[: len(part)] = part
    batches = list(
        iter_windows(_blocks(waveform, (1, 7, 50, 3, 200)), starts, window_samples, batch_size)
    )
    assert [len(batch) for batch in batches[:-1]] == [batch_size] * (len(batches) - 1)
    windows = np.concatenate([batch.windows() for batch in batches])
    assert windows.dtype == np.float32
    np.testing.assert_array_equal(windows, expected)


def test_iter_windows_reads_the_stream_only_as_far_as_each_batch_needs():
    sample_rate, window_samples, block = 100, 96, 25
    waveform = np.arange(600 * sample_rate, dtype=np.float32)  # 10 min, sample i has value i
    starts = np.round(np.arange(1873) * 0.32 * sample_rate).astype(np.int64)  # (T,)
    pulled = [0]
    batch_size = 8
    batches = iter_windows(_blocks(waveform, (block,), pulled), starts, window_samples, batch_size)
    for first, batch in zip(range(0, len(starts), batch_size), batches, strict=True):
        windows = batch.windows()
        last_end = min(int(starts[first : first + batch_size][-1]) + window_samples, len(waveform))
        # Held at most: this batch's span of the waveform, and one block more.
        assert last_end <= pulled[0] < last_end + block
        np.testing.assert_array_equal(windows[:, 0], starts[first : first + batch_size])
    assert pulled[0] == len(waveform)


def test_iter_windows_reads_the_stream_to_its_end():
    def failing_at_the_end():
        yield np.ones(100, np.float32)
        yield np.ones(100, np.float32)
        raise RuntimeError("truncated")

    batches = iter_windows(failing_at_the_end(), np.array([0, 10]), 20, 2)
    assert len(next(batches)) == 2  # the windows need only the first block
    with pytest.raises(RuntimeError, match="truncated"):
        next(batches)


def test_iter_windows_refuses_starts_that_go_back():
    with pytest.raises(ValueError, match="non-decreasing"):
        list(iter_windows(iter([np.ones(10, np.float32)]), np.array([5, 2]), 4, 2))
