"""Log-mel spectrograms of mono waveforms: the one STFT and mel front end of the pipeline; and
:func:`iter_windows`, which cuts an audio encoder's windows from a waveform as it decodes, a
batch at a time, as the stretch of samples the batch reads (:class:`WindowBatch`), so that an
encoder whose windows overlap can analyse the shared samples once.

The classic audio encoder (:mod:`pipeline.encoders.classic_audio`: Slaney mel powers,
``log(mel + 1e-10)``) and the segment clips (:mod:`pipeline.segments.clips`: VGGish's HTK mel
magnitudes, ``log(mel + 0.01)``) are both a :class:`LogMelSpectrogram` with their parameters.

STFT frames lie wholly inside the waveform (no centring, no padding across its edges): frame
``t`` holds samples ``[t * hop_length, t * hop_length + window_length)``, multiplied by a
periodic Hann window and zero-padded to ``n_fft``. The mel filter bank is librosa's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import librosa
import numpy as np
import scipy.fft


@dataclass(frozen=True, eq=False)
class LogMelSpectrogram:
    """Waveforms ``(B, N)`` float32 -> log-mel spectrograms ``(B, T, n_mels)`` float32.

    ``T = 1 + (N - window_length) // hop_length``: the frames wholly inside the waveform.

    Args:
        sample_rate: Hz of the waveforms.
        n_fft: FFT length in samples (frames are zero-padded to it).
        hop_length: samples between the starts of consecutive frames.
        n_mels: mel bands.
        fmin: lowest mel band edge in Hz.
        fmax: highest mel band edge in Hz.
        window_length: samples per frame (periodic Hann); ``None`` for ``n_fft``.
        power: exponent of the spectrum's magnitude that the mel bank weighs: 1 (magnitudes)
            or 2 (powers).
        htk: HTK's mel scale instead of Slaney's.
        norm: librosa's filter normalisation, ``"slaney"`` (equal area) or ``None`` (peak 1).
        log_offset: added to the mel energies before the log, so silence stays finite.
        fft_float64: take the FFT in float64 and round it to complex64, as :func:`numpy.fft.rfft`
            does with float32 input (the segment clips' spectrograms were computed so); else in
            float32 with :func:`scipy.fft.rfft`.
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    window_length: int | None = None
    power: int = 2
    htk: bool = False
    norm: str | None = "slaney"
    log_offset: float = 1e-10
    fft_float64: bool = False
    window: np.ndarray = field(init=False, repr=False)  # (window_length,) float32
    mel_basis: np.ndarray = field(init=False, repr=False)  # (n_mels, n_fft // 2 + 1) float32

    def __post_init__(self) -> None:
        frame_length = self.frame_length
        if not 0 < frame_length <= self.n_fft or self.hop_length < 1:
            raise ValueError(
                f"log-mel spectrogram needs 0 < window_length <= n_fft and hop_length >= 1, "
                f"got window_length={frame_length}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}"
            )
        if self.power not in (1, 2):
            raise ValueError(f"log-mel spectrogram power must be 1 or 2, got {self.power}")
        window = librosa.filters.get_window("hann", frame_length, fftbins=True)  # periodic
        mel_basis = librosa.filters.mel(
            sr=self.sample_rate,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            htk=self.htk,
            norm=self.norm,
        )
        object.__setattr__(self, "window", window.astype(np.float32))
        object.__setattr__(self, "mel_basis", mel_basis.astype(np.float32))

    @property
    def frame_length(self) -> int:
        """Samples per STFT frame before zero-padding to ``n_fft``."""
        return self.n_fft if self.window_length is None else self.window_length

    def frames(self, waveforms: np.ndarray, max_frames: int | None = None) -> np.ndarray:
        """The STFT frames ``(B, T, frame_length)`` of waveforms ``(B, N)``, a strided view;
        only the first ``max_frames`` when given."""
        frames = np.lib.stride_tricks.sliding_window_view(waveforms, self.frame_length, axis=-1)
        return frames[:, :: self.hop_length][:, :max_frames]  # (B, T, frame_length)

    def spectrogram(self, frames: np.ndarray) -> np.ndarray:
        """``|rfft(frame * window)| ** power`` of frames ``(B, T, frame_length)``:
        ``(B, T, n_fft // 2 + 1)`` float32."""
        windowed = frames * self.window  # (B, T, frame_length)
        if self.fft_float64:
            spectrum = scipy.fft.rfft(windowed.astype(np.float64), n=self.n_fft, axis=-1)
            spectrum = spectrum.astype(np.complex64)  # (B, T, K)
        else:
            spectrum = scipy.fft.rfft(windowed, n=self.n_fft, axis=-1)  # (B, T, K) complex64
        if self.power == 1:
            return np.abs(spectrum)
        return spectrum.real**2 + spectrum.imag**2

    def log_mel(self, spectrogram: np.ndarray) -> np.ndarray:
        """``log(spectrogram @ mel_basis.T + log_offset)``: ``(B, T, K)`` -> ``(B, T, n_mels)``."""
        mel = spectrogram @ self.mel_basis.T  # (B, T, n_mels)
        return np.log(mel + self.log_offset).astype(np.float32, copy=False)

    def __call__(self, waveforms: np.ndarray, max_frames: int | None = None) -> np.ndarray:
        """Log-mel spectrograms ``(B, T, n_mels)`` of waveforms ``(B, N)`` (the first
        ``max_frames`` frames when given)."""
        return self.log_mel(self.spectrogram(self.frames(waveforms, max_frames)))


@dataclass(frozen=True, eq=False)
class WindowBatch:
    """Windows of one stretch of waveform: window ``b`` holds ``samples[offsets[b] :
    offsets[b] + length]``.

    Args:
        samples: ``(L,)`` float32, the stretch the windows read, zeros past the waveform's end.
        offsets: ``(B,)`` int64, where each window starts in ``samples``, non-decreasing.
        length: N, samples per window.
    """

    samples: np.ndarray
    offsets: np.ndarray
    length: int

    def windows(self) -> np.ndarray:
        """The windows ``(B, N)``, a copy."""
        return np.lib.stride_tricks.sliding_window_view(self.samples, self.length)[self.offsets]

    def __len__(self) -> int:
        """B, the number of windows."""
        return len(self.offsets)


def iter_windows(
    blocks: Iterable[np.ndarray], starts: np.ndarray, window_samples: int, batch_size: int
) -> Iterator[WindowBatch]:
    """Cut windows from a waveform that arrives as consecutive blocks ``(n,)`` (a stream such as
    :func:`pipeline.decode.iter_audio`), ``batch_size`` windows at a time.

    Window k holds samples ``[starts[k], starts[k] + window_samples)`` of the waveform, zeros
    past its end. ``starts`` must be non-negative and non-decreasing, so only the samples from
    the first window of the current batch to the end of its last one (and one block more) are
    held at a time, however long the waveform. After the last window the rest of the blocks is
    read and dropped, so an error the stream raises at its end (a truncated file) still comes.

    Args:
        blocks: consecutive parts of the waveform, in order.
        starts: ``(T,)`` first sample of each window.
        window_samples: N, samples per window (> 0).
        batch_size: windows per yielded batch (> 0); the last batch may hold fewer.

    Yields:
        a :class:`WindowBatch` per batch: the samples from its first window's start to its last
        window's end, zeros past the waveform's end.
    """
    starts = np.asarray(starts, dtype=np.int64)  # (T,)
    if window_samples < 1 or batch_size < 1:
        raise ValueError(
            f"iter_windows needs window_samples and batch_size >= 1, got {window_samples}, "
            f"{batch_size}"
        )
    if len(starts) and (starts[0] < 0 or np.any(np.diff(starts) < 0)):
        raise ValueError("iter_windows needs non-negative, non-decreasing window starts")
    blocks = iter(blocks)
    held, held_start = np.zeros(0, np.float32), 0  # samples [held_start, held_start + len(held))
    exhausted = False
    for first in range(0, len(starts), batch_size):
        batch_starts = starts[first : first + batch_size]  # (B,)
        needed_end = int(batch_starts[-1]) + window_samples
        parts, held_end = [held], held_start + len(held)
        while held_end < needed_end and not exhausted:
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                parts.append(block)
                held_end += len(block)
        held = np.concatenate(parts)  # (L,) samples [held_start, held_start + L)
        first_sample = int(batch_starts[0]) - held_start  # past the end for a silent tail
        offsets = batch_starts - batch_starts[0]  # (B,)
        length = int(offsets[-1]) + window_samples
        stretch = held[first_sample : first_sample + length]
        yield WindowBatch(np.pad(stretch, (0, length - len(stretch))), offsets, window_samples)
        if first + batch_size < len(starts):  # drop what the next batch does not see
            dropped = min(int(starts[first + batch_size]) - held_start, len(held))
            held, held_start = held[dropped:], held_start + dropped
    for _ in blocks:
        pass
