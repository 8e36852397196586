"""Weight-free audio features: log-mel band energies and spectral statistics (librosa)."""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np

from pipeline.audio import LogMelSpectrogram
from pipeline.encoders.base import (
    AudioEncoder,
    cache_sized_chunks,
    check_bool,
    pad_to_length,
    positive_int,
)
from pipeline.encoders.registry import AUDIO_ENCODERS

# Bump when the feature definition changes, so stores written by older code hash differently.
FEATURE_VERSION = 1

# Floor added to powers before taking logs and to denominators, so silence stays finite.
EPS = 1e-10

SPECTRAL_STATISTICS = ("centroid", "bandwidth", "rolloff", "flatness", "zero_crossing_rate", "rms")


@AUDIO_ENCODERS.register("classic")
class ClassicAudioEncoder(AudioEncoder):
    """Log-mel band energies plus spectral statistics of each window; no learned weights.

    STFT frames lie wholly inside the window (no centring, no padding across the window edge;
    windows shorter than ``n_fft`` are zero-padded to one frame). ``encode`` concatenates:

    1. ``log(mel power + 1e-10)`` per band, mean over the window's frames (``n_mels``), then
       the std over frames (``n_mels``, only if ``include_std``),
    2. per frame spectral centroid, bandwidth and 85 % roll-off (as fractions of the Nyquist
       frequency), spectral flatness, zero-crossing rate and RMS amplitude; their means, then
       their stds (only if ``include_std``), in the order of :data:`SPECTRAL_STATISTICS`.

    Args:
        sample_rate: Hz the waveform is delivered at.
        n_fft: STFT frame length in samples (Hann window).
        hop_length: STFT hop in samples.
        n_mels: mel bands.
        fmin: lowest mel band edge in Hz.
        fmax: highest mel band edge in Hz; ``None`` for ``sample_rate / 2``.
        rolloff_percent: energy fraction below the roll-off frequency.
        include_std: also append the std over frames of each feature.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float | None = None,
        rolloff_percent: float = 0.85,
        include_std: bool = True,
    ) -> None:
        self.sample_rate = positive_int(sample_rate, "sample_rate")
        self.n_fft = positive_int(n_fft, "n_fft")
        self.hop_length = positive_int(hop_length, "hop_length")
        self.n_mels = positive_int(n_mels, "n_mels")
        nyquist = self.sample_rate / 2
        self.fmin = float(fmin)
        self.fmax = nyquist if fmax is None else float(fmax)
        if not 0 <= self.fmin < self.fmax <= nyquist:
            raise ValueError(
                f"config keys 'fmin'/'fmax' must satisfy 0 <= fmin < fmax <= sample_rate / 2 "
                f"= {nyquist}, got fmin={fmin}, fmax={fmax}"
            )
        if not 0 < rolloff_percent < 1:
            raise ValueError(
                f"config key 'rolloff_percent' must be in (0, 1), got {rolloff_percent}"
            )
        self.rolloff_percent = float(rolloff_percent)
        self.include_std = check_bool(include_std, "include_std")
        self.front_end = LogMelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            power=2,
            log_offset=EPS,
        )  # Slaney mel bank on powers, periodic Hann window as in librosa.stft
        self.frequencies = librosa.fft_frequencies(sr=self.sample_rate, n_fft=self.n_fft).astype(
            np.float32
        )  # (K,)
        per_statistic = 2 if include_std else 1
        self.dim = per_statistic * (self.n_mels + len(SPECTRAL_STATISTICS))

    def config(self) -> dict[str, Any]:
        """Resolved options, output width and the feature-definition version."""
        return {
            "name": self.name,
            "feature_version": FEATURE_VERSION,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "rolloff_percent": self.rolloff_percent,
            "include_std": self.include_std,
            "dim": self.dim,
        }

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Windows ``(B, N)`` float32 at ``sample_rate`` -> features ``(B, dim)`` float32."""
        windows = pad_to_length(self.check_windows(windows), self.n_fft)
        return np.concatenate([self._encode(chunk) for chunk in cache_sized_chunks(windows)])

    def _encode(self, windows: np.ndarray) -> np.ndarray:
        """:meth:`encode` of checked windows ``(B, N)``, ``N >= n_fft``."""
        frames = self.front_end.frames(windows)  # (B, T, n_fft), a strided view
        power = self.front_end.spectrogram(frames)  # (B, T, K) float32
        magnitude = np.sqrt(power)  # (B, T, K)
        log_mel = self.front_end.log_mel(power)  # (B, T, M)

        # Spectral shape from the magnitude spectrum, as librosa.feature.spectral_* define it.
        magnitude_sum = magnitude.sum(axis=-1) + EPS  # (B, T)
        centroid = (magnitude @ self.frequencies) / magnitude_sum  # (B, T), Hz
        second_moment = (magnitude @ self.frequencies**2) / magnitude_sum  # (B, T), Hz^2
        bandwidth = np.sqrt(np.maximum(second_moment - centroid**2, 0.0))  # (B, T), Hz
        cumulative = np.cumsum(magnitude, axis=-1)  # (B, T, K)
        threshold = self.rolloff_percent * cumulative[..., -1:]  # (B, T, 1)
        rolloff_bin = np.minimum((cumulative < threshold).sum(axis=-1), len(self.frequencies) - 1)
        rolloff = self.frequencies[rolloff_bin]  # (B, T), Hz
        # Flatness: geometric over arithmetic mean of the power spectrum (floored at EPS).
        floored_power = np.maximum(power, EPS)  # (B, T, K)
        flatness = np.exp(np.log(floored_power).mean(axis=-1)) / floored_power.mean(axis=-1)
        zero_crossing_rate, rms = self.framed_time_statistics(windows, frames)

        nyquist = self.sample_rate / 2
        statistics = np.stack(
            [
                centroid / nyquist,
                bandwidth / nyquist,
                rolloff / nyquist,
                flatness,
                zero_crossing_rate,
                rms,
            ],
            axis=-1,
        )  # (B, T, 6)
        parts = [log_mel.mean(axis=1)]
        if self.include_std:
            parts.append(log_mel.std(axis=1))
        parts.append(statistics.mean(axis=1))
        if self.include_std:
            parts.append(statistics.std(axis=1))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def framed_time_statistics(
        self, windows: np.ndarray, frames: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Zero-crossing rate and RMS amplitude of each STFT frame.

        Matches ``librosa.feature.zero_crossing_rate`` / ``rms`` with ``center=False``:
        crossings among the frame's consecutive samples divided by the frame length, samples
        with ``|x| <= 1e-10`` counting as positive.

        Args:
            windows: ``(B, N)`` waveform windows.
            frames: ``(B, T, n_fft)`` strided frame view of ``windows``.

        Returns:
            ``(B, T)`` zero-crossing rate and ``(B, T)`` RMS amplitude.
        """
        negative = windows < -1e-10  # (B, N)
        crossings = negative[:, 1:] != negative[:, :-1]  # (B, N - 1), crossing into sample n
        framed_crossings = np.lib.stride_tricks.sliding_window_view(
            crossings, self.n_fft - 1, axis=-1
        )[:, :: self.hop_length]  # (B, T, n_fft - 1), pairs inside each frame
        zero_crossing_rate = np.count_nonzero(framed_crossings, axis=-1) / self.n_fft  # (B, T)
        rms = np.sqrt(np.einsum("btn,btn->bt", frames, frames) / self.n_fft)  # (B, T)
        return zero_crossing_rate, rms
