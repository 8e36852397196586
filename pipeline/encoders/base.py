"""Encoder interfaces shared by every registered encoder, plus small input and torch helpers.

An encoder turns one batch of snippets into one row of features per snippet:
a :class:`VisualEncoder` takes ``(B, F, H, W, 3)`` uint8 clips, an :class:`AudioEncoder` takes
``(B, N)`` float32 mono waveform windows (or, from the extraction, the stretch of waveform they
are cut from: :meth:`AudioEncoder.encode_batch`). Both are built once per extraction job (the
model is loaded once) and called on many batches.

torch is imported inside the helpers that need it, never at module level: the weight-free
classic encoders subclass these interfaces, and an extraction job that uses only them must not
pay torch's import time (seconds). The torch encoders resolve their ``device`` setting with
:func:`pipeline.runtime.resolve_device`, as the training stages do.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from pipeline.audio import WindowBatch


class MissingWeightsError(RuntimeError):
    """Pretrained weights are not available locally; the message names the model and the fix."""


def positive_int_pair(value: Sequence[int], key: str) -> tuple[int, int]:
    """Validate a config value of two positive integers (e.g. ``[64, 64]`` from YAML)."""
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"config key {key!r} must be two positive integers, got {value!r}")
    return int(value[0]), int(value[1])


def positive_int(value: int, key: str) -> int:
    """Validate a config value that must be a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"config key {key!r} must be a positive integer, got {value!r}")
    return value


def check_bool(value: bool, key: str) -> bool:
    """Validate a config value that must be true or false."""
    if not isinstance(value, bool):
        raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
    return value


class VisualEncoder(ABC):
    """Embeds snippets of video frames.

    Attributes:
        name: registry name of the encoder.
        dim: output width D of :meth:`encode`.
        frame_size: ``(width, height)`` the decoder must deliver frames at.
        frames_per_snippet: F, frames sampled uniformly inside each snippet window.
        grid_shape: ``(H', W')`` of :meth:`encode_grid`, or ``None`` if unsupported.
        grid_dim: Dg, feature width of one grid cell, or ``None`` if unsupported.
        grid_levels: for a grid that packs a backbone's feature pyramid (``resnet``), its
            ``(channels, factor)`` per level, finest first
            (:func:`models.m2vsl_parts.check_grid_levels`); ``None``: a plain grid.
    """

    name: str
    dim: int
    frame_size: tuple[int, int]
    frames_per_snippet: int
    grid_shape: tuple[int, int] | None = None
    grid_dim: int | None = None
    grid_levels: tuple[tuple[int, int], ...] | None = None

    @abstractmethod
    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Embed clips ``(B, F, H, W, 3)`` uint8 into ``(B, D)`` float32."""

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Embed clips ``(B, F, H, W, 3)`` uint8 into a spatial grid ``(B, H', W', Dg)`` float32.

        Used for sound-source localisation. Encoders whose ``grid_shape`` is ``None`` raise.
        """
        raise NotImplementedError(
            f"visual encoder {self.name!r} has no spatial grid (grid_shape is None); "
            "pick an encoder with a grid (e.g. 'classic', 'clip' with a ViT, 'resnet', "
            "'videomae')"
        )

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))``; torch encoders share one forward pass."""
        return self.encode(clips), self.encode_grid(clips)

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Full resolved JSON-serialisable configuration, hashed into the feature store."""

    def check_clips(self, clips: np.ndarray) -> None:
        """Raise ValueError unless ``clips`` is ``(B, F, H, W, 3)`` uint8 at ``frame_size``."""
        if not isinstance(clips, np.ndarray) or clips.ndim != 5 or clips.shape[-1] != 3:
            shape = getattr(clips, "shape", None)
            raise ValueError(
                f"visual encoder {self.name!r}: clips must be a (B, F, H, W, 3) array, got {shape}"
            )
        if clips.dtype != np.uint8:
            raise ValueError(
                f"visual encoder {self.name!r}: clips must be uint8 RGB, got dtype {clips.dtype}"
            )
        width, height = self.frame_size
        if clips.shape[2:4] != (height, width):
            raise ValueError(
                f"visual encoder {self.name!r}: frames are {clips.shape[3]}x{clips.shape[2]} "
                f"(W x H) but the encoder needs frame_size {width}x{height}; decode the video "
                "at encoder.frame_size"
            )
        if clips.shape[0] == 0 or clips.shape[1] == 0:
            raise ValueError(
                f"visual encoder {self.name!r}: empty batch or clip (shape {clips.shape})"
            )


class AudioEncoder(ABC):
    """Embeds mono waveform windows.

    Attributes:
        name: registry name of the encoder.
        dim: output width D of :meth:`encode`.
        sample_rate: Hz the waveform must be delivered at.
    """

    name: str
    dim: int
    sample_rate: int

    @abstractmethod
    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Embed windows ``(B, N)`` float32 into ``(B, D)`` float32."""

    def encode_batch(self, batch: WindowBatch) -> np.ndarray:
        """Embed the windows of ``batch`` into ``(B, D)`` float32, as :meth:`encode` embeds
        ``batch.windows()``; an encoder whose analysis of overlapping windows can be shared
        overrides it."""
        return self.encode(batch.windows())

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Full resolved JSON-serialisable configuration, hashed into the feature store."""

    def check_windows(self, windows: np.ndarray) -> np.ndarray:
        """Return ``windows`` as a ``(B, N)`` float32 array; raise ValueError if malformed."""
        windows = np.asarray(windows)
        if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] == 0:
            raise ValueError(
                f"audio encoder {self.name!r}: windows must be a non-empty (B, N) array, "
                f"got shape {windows.shape}"
            )
        if not np.issubdtype(windows.dtype, np.floating):
            raise ValueError(
                f"audio encoder {self.name!r}: windows must be float waveforms in [-1, 1], "
                f"got dtype {windows.dtype}"
            )
        windows = windows.astype(np.float32, copy=False)
        if not np.isfinite(windows).all():
            raise ValueError(
                f"audio encoder {self.name!r}: windows contain NaN or inf samples; "
                "check the decoded audio"
            )
        return windows


# Input bytes a weight-free encoder works on at a time, in whole clips or windows: its numpy
# temporaries then stay in a core's L2 cache. 10 clips of 4 64x64 frames, 8 windows of 0.96 s
# at 16 kHz; in chunks, the classic encoders took 0.086 CPU-s (visual, with its colour tables)
# and 0.072 (audio) on a minute of video, against 0.158 and 0.086 in batches of 64 (best of 25).
CHUNK_BYTES = 1 << 19


def cache_sized_chunks(batch: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """Successive slices of ``batch`` along its first axis, whole items of about
    ``chunk_bytes`` bytes together (at least one item each)."""
    item_bytes = max(1, batch[:1].nbytes)
    size = max(1, chunk_bytes // item_bytes)
    for first in range(0, len(batch), size):
        yield batch[first : first + size]


def pad_to_length(windows: np.ndarray, min_samples: int) -> np.ndarray:
    """Zero-pad ``(B, N)`` windows at the end to at least ``min_samples`` samples."""
    missing = min_samples - windows.shape[1]
    if missing <= 0:
        return windows
    return np.pad(windows, ((0, 0), (0, missing)))


@contextlib.contextmanager
def inference_context(device: torch.device, fp16: bool) -> Iterator[None]:
    """``torch.inference_mode``, plus float16 autocast when ``fp16`` and ``device`` is CUDA.

    On CPU ``fp16`` is ignored (CPU half precision is slow and inexact); the encoders report the
    precision actually used in their ``config()``.
    """
    import torch

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        if fp16 and device.type == "cuda":
            stack.enter_context(torch.autocast(device_type="cuda", dtype=torch.float16))
        yield


def effective_precision(device: torch.device, fp16: bool) -> str:
    """``"fp16"`` when autocast will be used on ``device``, else ``"fp32"``."""
    return "fp16" if fp16 and device.type == "cuda" else "fp32"


def clips_to_pixels(
    clips: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
) -> torch.Tensor:
    """Turn ``(B, F, H, W, 3)`` uint8 clips into normalised ``(B, F, 3, H, W)`` float32 pixels.

    Pixels are scaled to [0, 1], then ``(x - mean) / std`` per channel, on ``device``.
    """
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(clips)).to(device)  # (B, F, H, W, 3) uint8
    pixels = pixels.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, F, 3, H, W)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 1, 3, 1, 1)
    return (pixels - mean_t) / std_t
