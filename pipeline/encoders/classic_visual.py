"""Weight-free visual features: colour histograms, a thumbnail and frame-difference motion.

Everything is numpy on uint8 frames; no model, no weights, fast on one CPU core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.encoders.base import VisualEncoder, positive_int, positive_int_pair
from pipeline.encoders.registry import VISUAL_ENCODERS

# Bump when the feature definition changes, so stores written by older code hash differently.
FEATURE_VERSION = 2


def cell_index(length: int, cells: int) -> np.ndarray:
    """Index of the cell (out of ``cells`` near-equal cells) each of ``length`` pixels falls in."""
    return (np.arange(length) * cells) // length


def block_mean(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean of ``(..., H, W, C)`` images over a ``rows x cols`` grid of near-equal cells.

    Returns ``(..., rows, cols, C)`` float32. Needs ``rows <= H`` and ``cols <= W``.
    """
    height, width = images.shape[-3], images.shape[-2]
    row_cells, col_cells = cell_index(height, rows), cell_index(width, cols)
    row_starts = np.flatnonzero(np.diff(row_cells, prepend=-1))  # (rows,)
    col_starts = np.flatnonzero(np.diff(col_cells, prepend=-1))  # (cols,)
    sums = np.add.reduceat(images.astype(np.float32), row_starts, axis=-3)  # (..., rows, W, C)
    sums = np.add.reduceat(sums, col_starts, axis=-2)  # (..., rows, cols, C)
    counts = np.outer(np.bincount(row_cells), np.bincount(col_cells))  # (rows, cols)
    return sums / counts[:, :, None]


def to_planes(rgb8: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> contiguous ``(3, ...)`` float32 planes in [0, 255]."""
    return np.ascontiguousarray(np.moveaxis(rgb8, -1, 0), dtype=np.float32)


def colour_planes(planes: np.ndarray, hue_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue bin, value and chroma of ``(3, ...)`` RGB planes in [0, 255].

    Hue follows the usual hexcone definition, in sixths of a turn in [-1, 5); bins are centred
    on 0 degrees, so pure red is the middle of bin 0. Value is max(R, G, B) and chroma is
    max - min, both in [0, 255]; the hue of a grey pixel (chroma 0) is bin 0 and should be
    weighted by its chroma.
    """
    red, green, blue = planes
    value = np.maximum(np.maximum(red, green), blue)
    chroma = value - np.minimum(np.minimum(red, green), blue)
    hue_numerator = np.where(
        value == red,
        green - blue,
        np.where(value == green, blue - red + 2 * chroma, red - green + 4 * chroma),
    )
    hue_sixths = hue_numerator / np.maximum(chroma, 1.0)
    hue_bin = np.floor(hue_sixths * np.float32(hue_bins / 6) + np.float32(0.5)).astype(np.int64)
    return hue_bin % hue_bins, value, chroma


def unit_bin(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of values in [0, 1] over ``bins`` equal bins (1.0 falls in the last bin)."""
    return np.minimum((values * bins).astype(np.int64), bins - 1)


def grouped_histogram(
    bin_index: np.ndarray, groups: int, bins: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Histogram per group: ``bin_index`` ``(G, ...)`` -> ``(G, bins)`` sums (not normalised)."""
    offsets = (np.arange(groups) * bins).reshape((groups,) + (1,) * (bin_index.ndim - 1))
    flat_index = (bin_index + offsets).ravel()
    flat_weights = None if weights is None else weights.ravel()
    counts = np.bincount(flat_index, weights=flat_weights, minlength=groups * bins)
    return counts.reshape(groups, bins)  # (G, bins)


@VISUAL_ENCODERS.register("classic")
class ClassicVisualEncoder(VisualEncoder):
    """Colour, layout and motion statistics of a clip; no learned weights.

    ``encode`` concatenates, per clip (all values in [0, 1]):

    1. hue histogram of all sampled frames, each pixel weighted by its chroma
       (max - min of RGB), bins centred on red; the mass is the mean chroma, so grey pixels add
       nothing (``hue_bins``); pixels whose chroma is below ``min_chroma`` count as grey, so the
       faint colour noise of a large grey background cannot outweigh a small coloured object,
    2. saturation and value histograms, each summing to 1 (``saturation_bins``, ``value_bins``),
    3. an RGB thumbnail of the middle frame, area-averaged, row-major
       (``3 * thumbnail_size[0] * thumbnail_size[1]``),
    4. motion energy: mean absolute difference of consecutive sampled frames (mean over RGB),
       its mean and max over frame pairs (2 values),
    5. the same motion energy on a coarse ``motion_grid_shape`` grid, mean over frame pairs.

    ``encode_grid`` gives, per cell of a ``grid_shape`` grid: the middle frame's mean RGB (3),
    chroma-weighted hue histogram normalised by the cell's pixel count (``hue_bins``) and the
    cell's motion energy (1).

    Args:
        frame_size: ``(width, height)`` frames are decoded at.
        frames_per_snippet: frames sampled per snippet (1 gives zero motion features).
        hue_bins: bins of the hue histograms.
        saturation_bins: bins of the saturation histogram.
        value_bins: bins of the value (brightness) histogram.
        thumbnail_size: ``(width, height)`` of the middle-frame thumbnail.
        motion_grid_shape: ``(rows, cols)`` of the motion-energy grid in ``encode``.
        grid_shape: ``(rows, cols)`` of ``encode_grid``.
        min_chroma: chroma (fraction of 255) below which a pixel adds nothing to the hue
            histograms.
    """

    def __init__(
        self,
        *,
        frame_size: Sequence[int] = (64, 64),
        frames_per_snippet: int = 4,
        hue_bins: int = 8,
        saturation_bins: int = 8,
        value_bins: int = 8,
        thumbnail_size: Sequence[int] = (8, 6),
        motion_grid_shape: Sequence[int] = (4, 4),
        grid_shape: Sequence[int] = (8, 8),
        min_chroma: float = 0.15,
    ) -> None:
        self.frame_size = positive_int_pair(frame_size, "frame_size")
        self.frames_per_snippet = positive_int(frames_per_snippet, "frames_per_snippet")
        self.hue_bins = positive_int(hue_bins, "hue_bins")
        self.saturation_bins = positive_int(saturation_bins, "saturation_bins")
        self.value_bins = positive_int(value_bins, "value_bins")
        self.thumbnail_size = positive_int_pair(thumbnail_size, "thumbnail_size")
        self.motion_grid_shape = positive_int_pair(motion_grid_shape, "motion_grid_shape")
        self.grid_shape = positive_int_pair(grid_shape, "grid_shape")
        if not 0.0 <= float(min_chroma) < 1.0:
            raise ValueError(f"min_chroma must be in [0, 1), not {min_chroma!r}")
        self.min_chroma = float(min_chroma)
        width, height = self.frame_size
        for key, (rows, cols) in (
            ("thumbnail_size", self.thumbnail_size[::-1]),
            ("motion_grid_shape", self.motion_grid_shape),
            ("grid_shape", self.grid_shape),
        ):
            if rows > height or cols > width:
                raise ValueError(
                    f"config key {key!r} asks for more cells than frame_size {width}x{height} "
                    "has pixels; lower it or raise frame_size"
                )
        thumb_width, thumb_height = self.thumbnail_size
        motion_rows, motion_cols = self.motion_grid_shape
        self.dim = (
            self.hue_bins
            + self.saturation_bins
            + self.value_bins
            + 3 * thumb_width * thumb_height
            + 2
            + motion_rows * motion_cols
        )
        self.grid_dim = 3 + self.hue_bins + 1

    def config(self) -> dict[str, Any]:
        """Resolved options, output widths and the feature-definition version."""
        return {
            "name": self.name,
            "feature_version": FEATURE_VERSION,
            "frame_size": list(self.frame_size),
            "frames_per_snippet": self.frames_per_snippet,
            "hue_bins": self.hue_bins,
            "saturation_bins": self.saturation_bins,
            "value_bins": self.value_bins,
            "thumbnail_size": list(self.thumbnail_size),
            "motion_grid_shape": list(self.motion_grid_shape),
            "grid_shape": list(self.grid_shape),
            "min_chroma": self.min_chroma,
            "dim": self.dim,
            "grid_dim": self.grid_dim,
        }

    def motion_maps(self, planes: np.ndarray) -> np.ndarray:
        """Per-pixel absolute difference of consecutive frames, mean over RGB, in [0, 1].

        ``(3, B, F, H, W)`` planes in [0, 255] -> ``(B, max(F - 1, 1), H, W, 1)`` float32;
        zeros when F == 1.
        """
        _, batch, frames, height, width = planes.shape
        if frames == 1:
            return np.zeros((batch, 1, height, width, 1), dtype=np.float32)
        diffs = np.abs(np.diff(planes, axis=2))  # (3, B, F-1, H, W)
        motion = diffs.sum(axis=0) / np.float32(3 * 255)  # (B, F-1, H, W)
        return motion[..., None]  # (B, F-1, H, W, 1)

    def colour_weight(self, chroma: np.ndarray) -> np.ndarray:
        """Hue-histogram weight of each pixel: its chroma in [0, 1], zero below ``min_chroma``."""
        weight = chroma / np.float32(255.0)
        return np.where(weight >= self.min_chroma, weight, np.float32(0.0))

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> features ``(B, dim)`` float32."""
        self.check_clips(clips)
        planes = to_planes(clips)  # (3, B, F, H, W)
        return self._pooled(clips, colour_planes(planes, self.hue_bins), self.motion_maps(planes))

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> cell features ``(B, rows, cols, 4 + hue_bins)``."""
        self.check_clips(clips)
        planes = to_planes(clips)  # (3, B, F, H, W)
        middle = clips.shape[1] // 2
        hue_bin, _, chroma = colour_planes(planes[:, :, middle], self.hue_bins)  # (B, H, W)
        return self._grid(clips, hue_bin, chroma, self.motion_maps(planes))

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))``, the same values, with one pass over the
        pixels: the colour planes and motion maps are computed once for both."""
        self.check_clips(clips)
        planes = to_planes(clips)  # (3, B, F, H, W)
        colour = colour_planes(planes, self.hue_bins)  # each (B, F, H, W)
        motion = self.motion_maps(planes)
        middle = clips.shape[1] // 2
        hue_bin, _, chroma = colour
        grid = self._grid(clips, hue_bin[:, middle], chroma[:, middle], motion)
        return self._pooled(clips, colour, motion), grid

    def _pooled(
        self,
        clips: np.ndarray,
        colour: tuple[np.ndarray, np.ndarray, np.ndarray],
        motion: np.ndarray,
    ) -> np.ndarray:
        """:meth:`encode`'s features from the clips' colour planes (hue bin, value and chroma,
        each (B, F, H, W)) and motion maps (B, P, H, W, 1)."""
        batch, frames, height, width, _ = clips.shape
        pixels_per_clip = frames * height * width
        hue_bin, value, chroma = colour
        saturation = chroma / np.maximum(value, 1.0)
        hue_hist = grouped_histogram(hue_bin, batch, self.hue_bins, self.colour_weight(chroma))
        sat_hist = grouped_histogram(
            unit_bin(saturation, self.saturation_bins), batch, self.saturation_bins
        )
        val_hist = grouped_histogram(
            unit_bin(value / np.float32(255.0), self.value_bins), batch, self.value_bins
        )
        thumb_width, thumb_height = self.thumbnail_size
        thumbnail = block_mean(clips[:, frames // 2], thumb_height, thumb_width)  # (B, th, tw, 3)
        pair_energy = motion.mean(axis=(2, 3, 4))  # (B, P)
        motion_rows, motion_cols = self.motion_grid_shape
        motion_grid = block_mean(motion, motion_rows, motion_cols).mean(axis=1)  # (B, r, c, 1)
        features = np.concatenate(
            [
                hue_hist / pixels_per_clip,
                sat_hist / pixels_per_clip,
                val_hist / pixels_per_clip,
                thumbnail.reshape(batch, -1) / np.float32(255.0),  # (B, th * tw * 3)
                pair_energy.mean(axis=1, keepdims=True),
                pair_energy.max(axis=1, keepdims=True),
                motion_grid.reshape(batch, -1),  # (B, r * c)
            ],
            axis=1,
        )
        return features.astype(np.float32)

    def _grid(
        self, clips: np.ndarray, hue_bin: np.ndarray, chroma: np.ndarray, motion: np.ndarray
    ) -> np.ndarray:
        """:meth:`encode_grid`'s cells from the middle frames' hue bins and chroma (B, H, W) and
        the clips' motion maps (B, P, H, W, 1)."""
        batch, frames, height, width, _ = clips.shape
        rows, cols = self.grid_shape
        mean_rgb = block_mean(clips[:, frames // 2], rows, cols) / np.float32(255.0)  # (B, r, c, 3)
        cell_of_pixel = (
            cell_index(height, rows)[:, None] * cols + cell_index(width, cols)[None, :]
        )  # (H, W)
        cell_bins = cell_of_pixel * self.hue_bins + hue_bin  # (B, H, W)
        hue_hist = grouped_histogram(
            cell_bins, batch, rows * cols * self.hue_bins, self.colour_weight(chroma)
        )  # (B, cells * hue_bins)
        pixels_per_cell = np.bincount(cell_of_pixel.ravel(), minlength=rows * cols)  # (cells,)
        hue_hist = hue_hist.reshape(batch, rows, cols, self.hue_bins)
        hue_hist = hue_hist / pixels_per_cell.reshape(1, rows, cols, 1)
        motion = block_mean(motion, rows, cols).mean(axis=1)  # (B, r, c, 1)
        grid = np.concatenate([mean_rgb, hue_hist, motion], axis=-1)  # (B, rows, cols, Dg)
        return grid.astype(np.float32)
