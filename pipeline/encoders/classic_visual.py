"""Weight-free visual features: colour histograms, a thumbnail and frame-difference motion.

Everything is numpy on uint8 frames; no model, no weights, fast on one CPU core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from pipeline.encoders.base import (
    VisualEncoder,
    cache_sized_chunks,
    positive_int,
    positive_int_pair,
)
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


# The hexcone hue numerator of uint8 RGB (see ColourTables) lies in [-255, 5 * 255].
HUE_NUMERATOR_MIN = -255
HUE_NUMERATOR_MAX = 5 * 255


def hue_bin(numerator: np.ndarray, chroma: np.ndarray, hue_bins: int) -> np.ndarray:
    """Hue bin of pixels from their hexcone hue numerator and chroma (float32 whole numbers).

    Hue follows the usual hexcone definition, ``numerator / chroma`` in sixths of a turn in
    [-1, 5); bins are centred on 0 degrees, so pure red is the middle of bin 0. A grey pixel
    (chroma 0) falls in bin 0 and should be weighted by its chroma.
    """
    hue_sixths = numerator / np.maximum(chroma, 1.0)
    bins_per_sixth = np.float32(hue_bins / 6)
    return np.floor(hue_sixths * bins_per_sixth + np.float32(0.5)).astype(np.int64) % hue_bins


def unit_bin(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of values in [0, 1] over ``bins`` equal bins (1.0 falls in the last bin)."""
    return np.minimum((values * bins).astype(np.int64), bins - 1)


def colour_weight(chroma: np.ndarray, min_chroma: float) -> np.ndarray:
    """Hue-histogram weight of pixels from their chroma (float32 in [0, 255]): the chroma in
    [0, 1], zero below ``min_chroma``."""
    weight = chroma / np.float32(255.0)
    return np.where(weight >= min_chroma, weight, np.float32(0.0))


@dataclass(frozen=True)
class ColourTables:
    """The colour of uint8 RGB pixels, looked up instead of computed per pixel.

    Value is max(R, G, B) and chroma max - min, both whole numbers in [0, 255]; the hue
    numerator is G - B where R is the maximum, B - R + 2 chroma where G is, R - G + 4 chroma
    otherwise. Every quantity below depends on at most two of these whole numbers, so each
    table holds its float32 formula's result for every index: the lookups give the formulas'
    values bit for bit, without a division per pixel (a test checks all 2**24 colours).

    Args:
        hue: :func:`hue_bin`, indexed by ``(numerator - HUE_NUMERATOR_MIN) * 256 + chroma``.
        saturation: saturation bin of chroma / max(value, 1), by ``chroma * 256 + value``.
        value: value bin of value / 255, by value.
        weight: :func:`colour_weight` widened to float64 (what ``np.bincount`` sums), by chroma.
    """

    hue: np.ndarray
    saturation: np.ndarray
    value: np.ndarray
    weight: np.ndarray

    @classmethod
    def build(
        cls, *, hue_bins: int, saturation_bins: int, value_bins: int, min_chroma: float
    ) -> ColourTables:
        """Tables for an encoder's bins and ``min_chroma``."""
        levels = np.arange(256, dtype=np.float32)  # every value and chroma
        numerators = np.arange(HUE_NUMERATOR_MIN, HUE_NUMERATOR_MAX + 1, dtype=np.float32)
        hue = hue_bin(numerators[:, None], levels[None, :], hue_bins)  # (numerators, chroma)
        saturation = levels[:, None] / np.maximum(levels[None, :], 1.0)  # (chroma, value)
        return cls(
            hue=hue.astype(np.min_scalar_type(hue_bins - 1)).ravel(),  # small: stays in cache
            saturation=unit_bin(saturation, saturation_bins).ravel(),
            value=unit_bin(levels / np.float32(255.0), value_bins),
            weight=colour_weight(levels, min_chroma).astype(np.float64),
        )


class PixelColours(NamedTuple):
    """Colour of each pixel of ``(B, F, H, W)`` frames (see :class:`ColourTables`).

    Args:
        hue_bin: hue bin.
        value: max(R, G, B), uint8.
        chroma: max - min of R, G, B, uint8.
    """

    hue_bin: np.ndarray
    value: np.ndarray
    chroma: np.ndarray

    @classmethod
    def of(cls, planes: np.ndarray, tables: ColourTables) -> PixelColours:
        """Colours of ``(3, ...)`` uint8 RGB planes."""
        value = planes.max(axis=0)
        chroma = value - planes.min(axis=0)
        red, green, blue = planes.astype(np.int16)
        wide_chroma = chroma.astype(np.int16)
        numerator = np.where(
            value == red,
            green - blue,
            np.where(value == green, blue - red + 2 * wide_chroma, red - green + 4 * wide_chroma),
        )
        index = (numerator.astype(np.intp) - HUE_NUMERATOR_MIN) * 256 + chroma
        return cls(tables.hue[index], value, chroma)

    def frame(self, index: int) -> PixelColours:
        """The colours of frame ``index`` of every clip, ``(B, H, W)`` each."""
        return PixelColours(*(quantity[:, index] for quantity in self))


def grouped_histogram(
    bin_index: np.ndarray, groups: int, bins: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Histogram per group: ``bin_index`` ``(G, ...)`` -> ``(G, bins)`` sums (not normalised)."""
    offsets = (np.arange(groups) * bins).reshape((groups,) + (1,) * (bin_index.ndim - 1))
    flat_index = (bin_index + offsets).ravel()
    flat_weights = None if weights is None else weights.ravel()
    counts = np.bincount(flat_index, weights=flat_weights, minlength=groups * bins)
    return counts.reshape(groups, bins)  # (G, bins)


def to_planes(rgb8: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> contiguous ``(3, ...)`` uint8 planes."""
    return np.ascontiguousarray(np.moveaxis(rgb8, -1, 0))


def motion_maps(planes: np.ndarray) -> np.ndarray:
    """Per-pixel absolute difference of consecutive frames, mean over RGB, in [0, 1].

    ``(3, B, F, H, W)`` uint8 planes -> ``(B, max(F - 1, 1), H, W, 1)`` float32; zeros when
    F == 1.
    """
    _, batch, frames, height, width = planes.shape
    if frames == 1:
        return np.zeros((batch, 1, height, width, 1), dtype=np.float32)
    differences = np.abs(np.diff(planes.astype(np.int16), axis=2))  # (3, B, F-1, H, W)
    motion = differences.sum(axis=0, dtype=np.int16) / np.float32(3 * 255)  # (B, F-1, H, W)
    return motion[..., None]  # (B, F-1, H, W, 1)


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
        self.tables = ColourTables.build(
            hue_bins=self.hue_bins,
            saturation_bins=self.saturation_bins,
            value_bins=self.value_bins,
            min_chroma=self.min_chroma,
        )

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

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> features ``(B, dim)`` float32."""
        self.check_clips(clips)
        pooled = []
        for chunk in cache_sized_chunks(clips):  # (b, F, H, W, 3) each
            planes = to_planes(chunk)  # (3, b, F, H, W)
            colours = PixelColours.of(planes, self.tables)  # each (b, F, H, W)
            pooled.append(self._pooled(chunk, colours, motion_maps(planes)))
        return np.concatenate(pooled)

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> cell features ``(B, rows, cols, 4 + hue_bins)``."""
        self.check_clips(clips)
        middle = clips.shape[1] // 2
        grids = []
        for chunk in cache_sized_chunks(clips):  # (b, F, H, W, 3) each
            planes = to_planes(chunk)  # (3, b, F, H, W)
            colours = PixelColours.of(planes[:, :, middle], self.tables)  # each (b, H, W)
            grids.append(self._grid(chunk, colours, motion_maps(planes)))
        return np.concatenate(grids)

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))``, the same values, with one pass over the
        pixels: the colours and motion maps are computed once for both."""
        self.check_clips(clips)
        middle = clips.shape[1] // 2
        pooled, grids = [], []
        for chunk in cache_sized_chunks(clips):  # (b, F, H, W, 3) each
            planes = to_planes(chunk)  # (3, b, F, H, W)
            colours, motion = PixelColours.of(planes, self.tables), motion_maps(planes)
            pooled.append(self._pooled(chunk, colours, motion))
            grids.append(self._grid(chunk, colours.frame(middle), motion))
        return np.concatenate(pooled), np.concatenate(grids)

    def _pooled(self, clips: np.ndarray, colours: PixelColours, motion: np.ndarray) -> np.ndarray:
        """:meth:`encode`'s features of clips ``(B, F, H, W, 3)`` from their colours (each
        (B, F, H, W)) and motion maps (B, P, H, W, 1)."""
        batch, frames, height, width, _ = clips.shape
        pixels_per_clip = frames * height * width
        tables = self.tables
        weight = tables.weight[colours.chroma]  # (B, F, H, W)
        saturation_bin = tables.saturation[colours.chroma.astype(np.intp) * 256 + colours.value]
        hue_hist = grouped_histogram(colours.hue_bin, batch, self.hue_bins, weight)
        sat_hist = grouped_histogram(saturation_bin, batch, self.saturation_bins)
        val_hist = grouped_histogram(tables.value[colours.value], batch, self.value_bins)
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

    def _grid(self, clips: np.ndarray, middle: PixelColours, motion: np.ndarray) -> np.ndarray:
        """:meth:`encode_grid`'s cells of clips ``(B, F, H, W, 3)`` from their middle frames'
        colours (each (B, H, W)) and motion maps (B, P, H, W, 1)."""
        batch, frames, height, width, _ = clips.shape
        rows, cols = self.grid_shape
        mean_rgb = block_mean(clips[:, frames // 2], rows, cols) / np.float32(255.0)  # (B, r, c, 3)
        cell_of_pixel = (
            cell_index(height, rows)[:, None] * cols + cell_index(width, cols)[None, :]
        )  # (H, W)
        cell_bins = cell_of_pixel * self.hue_bins + middle.hue_bin  # (B, H, W)
        hue_hist = grouped_histogram(
            cell_bins, batch, rows * cols * self.hue_bins, self.tables.weight[middle.chroma]
        )  # (B, cells * hue_bins)
        pixels_per_cell = np.bincount(cell_of_pixel.ravel(), minlength=rows * cols)  # (cells,)
        hue_hist = hue_hist.reshape(batch, rows, cols, self.hue_bins)
        hue_hist = hue_hist / pixels_per_cell.reshape(1, rows, cols, 1)
        motion = block_mean(motion, rows, cols).mean(axis=1)  # (B, r, c, 1)
        grid = np.concatenate([mean_rgb, hue_hist, motion], axis=-1)  # (B, rows, cols, Dg)
        return grid.astype(np.float32)
