"""Building blocks of the sound-source localisers in :mod:`models.m2vsl`.

- :class:`GridPyramid`: learnable multi-scale visual features from a patch grid: a per-cell MLP,
  then average pooling to coarser grids, or the levels of a backbone's pyramid packed in the
  grid (:func:`check_grid_levels`), and a projection head per scale.
- :class:`AudioEmbedding`: an MLP from the snippet's audio embedding to the shared space.
- :func:`mil_similarity` and :func:`mmc_loss`: the multiple-instance contrastive objective of
  EZ-VSL (Mo & Morgado, ECCV 2022, arXiv 2203.09324, Sec. 3), and :func:`bag_similarity`, the
  bag over every scale's locations of M2VSL's MMC (arXiv 2409.00486, Sec. 3): a frame and a
  sound match as well as the best location of the frame matches the sound; the other frames of
  the batch are the negatives.
- :class:`CategoryTransformer`: M2VSL's MMT, a transformer over category tokens, the sound and
  (optionally) the cells of all scales, whose category embeddings draw the category maps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pooled_shape(grid_shape: Sequence[int], pool_factor: int) -> tuple[int, int]:
    """Cells ``(rows, cols)`` of a ``grid_shape`` grid average-pooled by ``pool_factor``."""
    rows, cols = grid_shape
    return math.ceil(rows / pool_factor), math.ceil(cols / pool_factor)


def check_grid_levels(
    grid_levels: Sequence[Sequence[int]] | None, grid_dim: int
) -> tuple[tuple[int, int], ...]:
    """The layout of a grid that packs a backbone's feature pyramid, checked against its width.

    A grid row ``(H', W', Dg)`` may hold several levels of a backbone (a ResNet's stages): level
    ``l`` of ``c_l`` channels has ``f_l`` times the grid's resolution and is packed
    space-to-depth (``torch.nn.functional.pixel_unshuffle``) into ``c_l f_l^2`` values per
    cell, the levels concatenated along the last axis, finest (largest ``f_l``) first. A plain
    grid is one level, ``((Dg, 1),)``, the value for ``None``.

    Raises:
        ValueError: the levels are not ``(channels, factor)`` pairs of positive integers with
            strictly decreasing factors, or their packed widths do not add up to ``grid_dim``.
    """
    if grid_levels is None:
        return ((int(grid_dim), 1),)
    levels = tuple((int(c), int(f)) for c, f in grid_levels)
    factors = [f for _, f in levels]
    packed = sum(c * f * f for c, f in levels)
    if (
        not levels
        or min(c for c, _ in levels) < 1
        or min(factors) < 1
        or any(a <= b for a, b in itertools.pairwise(factors))
        or packed != grid_dim
    ):
        raise ValueError(
            f"grid_levels {[list(level) for level in levels]} must be (channels, factor) pairs, "
            f"finest (largest factor) first, whose packed widths channels * factor^2 add up to "
            f"the grid's {grid_dim} values per cell (they add up to {packed})"
        )
    return levels


def unpack_levels(grid: Tensor, grid_levels: Sequence[tuple[int, int]]) -> list[Tensor]:
    """A packed grid (B, Dg, H', W') -> one map per level, (B, c_l, f_l H', f_l W'), finest
    first (the inverse of the packing of :func:`check_grid_levels`)."""
    parts = torch.split(grid, [c * f * f for c, f in grid_levels], dim=1)
    return [
        F.pixel_shuffle(part, f) if f > 1 else part
        for part, (_, f) in zip(parts, grid_levels, strict=True)
    ]


def _cell_mlp(in_dim: int, hidden: int, dim: int) -> nn.Sequential:
    """A two-layer MLP applied to every cell (1x1 convolutions)."""
    return nn.Sequential(
        nn.Conv2d(in_dim, hidden, kernel_size=1),
        nn.GELU(),
        nn.Conv2d(hidden, dim, kernel_size=1),
    )


class GridPyramid(nn.Module):
    """Multi-scale visual features of a patch grid (M2VSL's learnable multi-scale features).

    Two sources of scales:

    - a one-level grid (CLIP patch tokens, the classic features): each cell goes through a
      small MLP (1x1 convolutions); scale ``s`` average-pools the cell features to
      ``ceil(H' / p_s) x ceil(W' / p_s)`` cells (``pool_factors``) and applies its own head;
    - a grid that packs a backbone's levels (``grid_levels``, the ResNet pyramid of the
      ``resnet`` encoder): the levels are the scales, each with its own cell MLP (the levels
      differ in width) and head, at its own resolution.

    Args:
        in_dim: values per cell of the input grid (``Dg``).
        dim: width of the shared audio-visual space.
        hidden: width of the per-cell MLP's hidden layer.
        grid_shape: ``(H', W')`` cells of the input grid.
        pool_factors: pooling factor of each scale of a one-level grid, finest first; the first
            must be 1. ``None``: ``(1,)``. A grid of several levels refuses them.
        grid_levels: the grid's packed levels (:func:`check_grid_levels`); ``None``: one level.
        levels: the levels of a packed grid kept as scales (indices, 0 the finest, -1 the
            coarsest), in the grid's order; ``None``: every level.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        dim: int,
        hidden: int,
        grid_shape: Sequence[int],
        pool_factors: Sequence[int] | None = None,
        grid_levels: Sequence[Sequence[int]] | None = None,
        levels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.grid_levels = check_grid_levels(grid_levels, in_dim)
        self.grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
        rows, cols = self.grid_shape
        self.pool_factors: tuple[int, ...] = ()
        if len(self.grid_levels) > 1:
            if pool_factors is not None:
                raise ValueError(
                    "model key 'pool_factors' applies to a one-level grid; this grid packs "
                    f"{len(self.grid_levels)} levels of a backbone (grid_levels "
                    f"{[list(level) for level in self.grid_levels]}), which are the scales: "
                    "leave it unset"
                )
            count = len(self.grid_levels)
            kept = list(range(count)) if levels is None else [int(i) for i in levels]
            if not kept or any(not -count <= i < count for i in kept):
                raise ValueError(
                    f"model key 'levels' must index the grid's {count} levels ({-count} to "
                    f"{count - 1}), got {levels}"
                )
            self.kept = sorted({i % count for i in kept})
            used = [self.grid_levels[index] for index in self.kept]
            self.shapes = [(rows * f, cols * f) for _, f in used]
            self.cell_mlps = nn.ModuleList(_cell_mlp(c, hidden, dim) for c, _ in used)
        else:
            if levels is not None and any(int(i) not in (0, -1) for i in levels):
                raise ValueError(
                    f"model key 'levels' must be 0 or -1 on a one-level grid, got {levels}"
                )
            pool_factors = tuple(int(p) for p in (pool_factors or (1,)))
            if pool_factors[0] != 1 or min(pool_factors) < 1:
                raise ValueError(
                    f"model key 'pool_factors' must start with 1 (the finest grid) and hold "
                    f"positive integers, got {list(pool_factors)}"
                )
            self.pool_factors = pool_factors
            self.shapes = [pooled_shape(self.grid_shape, p) for p in pool_factors]
            self.cell_mlps = nn.ModuleList([_cell_mlp(in_dim, hidden, dim)])
        self.heads = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv2d(dim, dim, kernel_size=1)) for _ in self.shapes
        )

    def forward(self, grid: Tensor) -> list[Tensor]:
        """``grid`` (B, Dg, H', W') -> one map per scale, (B, dim, h_s, w_s), finest first."""
        if tuple(grid.shape[-2:]) != self.grid_shape:
            raise ValueError(
                f"the model was built for a {self.grid_shape} grid but got "
                f"{tuple(grid.shape[-2:])}; features from another extraction?"
            )
        if self.pool_factors:  # one level, pooled to the scales
            cells = self.cell_mlps[0](grid)  # (B, dim, H', W')
            pooled = [
                cells if shape == self.grid_shape else F.adaptive_avg_pool2d(cells, shape)
                for shape in self.shapes
            ]
        else:  # the backbone's levels are the scales
            levels = unpack_levels(grid, self.grid_levels)
            kept = [levels[index] for index in self.kept]
            pooled = [mlp(level) for mlp, level in zip(self.cell_mlps, kept, strict=True)]
        return [head(m) for head, m in zip(self.heads, pooled, strict=True)]


class AudioEmbedding(nn.Module):
    """Two-layer MLP from a snippet's audio embedding into the shared space.

    Args:
        in_dim: audio embedding width (``Da``).
        hidden: hidden width.
        dim: output width (the shared space).
    """

    def __init__(self, *, in_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, audio: Tensor) -> Tensor:
        """(B, Da) -> (B, dim)."""
        return self.mlp(audio)


def cosine_maps(visual_map: Tensor, audio: Tensor) -> Tensor:
    """Cosine similarity of every (frame, sound) pair at every cell.

    Args:
        visual_map: (Bv, D, h, w) visual features.
        audio: (Ba, D) audio embeddings.

    Returns:
        (Bv, Ba, h, w) cosine similarities.
    """
    visual_unit = F.normalize(visual_map, dim=1)
    audio_unit = F.normalize(audio, dim=1)
    return torch.einsum("vdhw,ad->vahw", visual_unit, audio_unit)


def mil_similarity(visual_map: Tensor, audio: Tensor) -> Tensor:
    """Multiple-instance similarity: the best-matching cell of each frame for each sound.

    ``sim(i, j) = max_{h,w} cos(v_i[:, h, w], a_j)`` (EZ-VSL, arXiv 2203.09324, Sec. 3). The
    max passes gradient only to the selected cell.

    Args:
        visual_map: (Bv, D, h, w) visual features.
        audio: (Ba, D) audio embeddings.

    Returns:
        (Bv, Ba) similarities in [-1, 1].
    """
    maps = cosine_maps(visual_map, audio)  # (Bv, Ba, h, w)
    return maps.flatten(2).max(dim=2).values  # (Bv, Ba)


def mmc_loss(similarity: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE over a batch's (frame, sound) similarities; pairs on the diagonal.

    ``L = 1/2 [CE(S / tau, diag) over sounds + CE(S^T / tau, diag) over frames]``, the
    frame-to-sound and sound-to-frame terms of EZ-VSL's loss (arXiv 2203.09324, Sec. 3).

    Args:
        similarity: (B, B) ``sim(frame i, sound j)``.
        temperature: ``tau`` > 0.
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"mmc_loss needs a square (B, B) matrix, got {tuple(similarity.shape)}")
    logits = similarity / temperature
    targets = torch.arange(similarity.shape[0], device=similarity.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def bag_similarity(scale_maps: Sequence[Tensor], audio: Tensor) -> Tensor:
    """Multiple-instance similarity over one bag holding every location of every scale.

    ``sim(i, j) = max_s max_{h,w} cos(v_i^s[:, h, w], a_j)``: M2VSL's MMC aligns the sound with
    "at least one location in a bag of multi-scale visual features" (arXiv 2409.00486, Sec. 3),
    so the scales share one max rather than each scale taking its own.

    Args:
        scale_maps: per scale (Bv, D, h_s, w_s) visual features.
        audio: (Ba, D) audio embeddings.

    Returns:
        (Bv, Ba) similarities in [-1, 1].
    """
    per_scale = torch.stack([mil_similarity(m, audio) for m in scale_maps])  # (S, Bv, Ba)
    return per_scale.max(dim=0).values


def scale_tokens(scale_maps: Sequence[Tensor]) -> Tensor:
    """(B, sum_s h_s w_s, D): the cells of every scale as tokens, scales in order, row-major."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in scale_maps], dim=1)


MMT_ATTENTION = ("structured", "full")


class CategoryTransformer(nn.Module):
    """M2VSL's multi-scale multi-instance transformer (MMT, arXiv 2409.00486, Sec. 3).

    Reading of the text: the MMT "processes the categorical token embeddings" ``{c_i}_{i=1..C}``
    together with the audio and the multi-scale visual features with self-attention ``phi``.
    Here the sequence of one (frame, sound) pair is ``[c_1 .. c_C; a; v^1 .. v^S]``: C learned
    category tokens, the sound's token and every cell of every scale (a learned position
    embedding per cell and an embedding per scale); ``phi`` is ``depth`` standard pre-norm
    transformer layers. Its outputs are the audio-visual category embeddings ``c^av_i`` and
    the multi-scale cells; the caller compares the two to draw one map per category (the
    cross-modal step) and classifies each category through its map (video-level labels).

    Which tokens attend to which is not in the summary. By default (``attention:
    structured``) the category tokens attend to each other and to the sound, and the cells of
    every scale to each other: a category embedding is then a query conditioned on what is
    heard, and a cell carries its multi-scale context but not the sound, so a map can only be
    high where the frame shows the category. With ``full`` every token attends to every other;
    on the demo set some seeds then learnt to point every category at the background (a
    category embedding that copies a cell of the frame always matches it).

    Args:
        dim: token width (the shared space's width).
        num_classes: number of category tokens ``C``.
        grid_shapes: ``(h_s, w_s)`` of each scale, finest first.
        depth: transformer layers.
        heads: attention heads (must divide ``dim``).
        mlp_ratio: feed-forward width as a multiple of ``dim``.
        dropout: dropout inside the transformer.
        attention: ``structured`` (the category tokens and the sound attend to each other, the
            cells of all scales to each other) or ``full`` (every token to every token).
        with_cells: put the cells in the sequence. Under ``structured`` attention the two
            blocks of tokens never meet, so a caller that does not read the updated cells leaves
            them out (the same category embeddings, without unused weights).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_classes: int,
        grid_shapes: Sequence[Sequence[int]],
        depth: int,
        heads: int,
        mlp_ratio: int,
        dropout: float,
        attention: str = "structured",
        with_cells: bool = True,
    ) -> None:
        super().__init__()
        if attention not in MMT_ATTENTION:
            raise ValueError(
                f"model key 'mmt_attention' must be one of {MMT_ATTENTION}, got {attention!r}"
            )
        if attention == "full" and not with_cells:
            raise ValueError("full attention needs the cells in the sequence")
        if dim % heads:
            raise ValueError(f"model key 'mmt_heads' ({heads}) must divide 'dim' ({dim})")
        self.num_classes = int(num_classes)
        self.grid_shapes = [(int(h), int(w)) for h, w in grid_shapes]
        self.with_cells = bool(with_cells)
        num_cells = sum(h * w for h, w in self.grid_shapes) if with_cells else 0
        self.categories = nn.Parameter(torch.randn(self.num_classes, dim) * 0.02)
        self.sound_embedding = nn.Parameter(torch.randn(dim) * 0.02)
        if with_cells:
            self.positions = nn.Parameter(torch.randn(num_cells, dim) * 0.02)
            scale_of_cell = torch.cat(
                [torch.full((h * w,), s) for s, (h, w) in enumerate(self.grid_shapes)]
            )
            self.register_buffer("scale_of_cell", scale_of_cell, persistent=False)
            self.scale_embedding = nn.Parameter(torch.randn(len(self.grid_shapes), dim) * 0.02)
            self.visual_proj = nn.Linear(dim, dim)
        self.audio_proj = nn.Linear(dim, dim)
        self.phi = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                d_model=dim,
                nhead=heads,
                dim_feedforward=mlp_ratio * dim,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            ),
            num_layers=depth,
            enable_nested_tensor=False,
        )
        self.norm = nn.LayerNorm(dim)
        heard = self.num_classes + 1  # the category tokens and the sound come first
        blocked = torch.zeros(heard + num_cells, heard + num_cells, dtype=torch.bool)
        if attention == "structured":  # True: may not attend
            blocked[:heard, heard:] = True
            blocked[heard:, :heard] = True
        self.register_buffer("blocked", blocked, persistent=False)

    def forward(self, scale_maps: Sequence[Tensor], audio: Tensor) -> tuple[Tensor, Tensor]:
        """Update the tokens of each (frame, sound) pair; row b of both inputs is one pair.

        Args:
            scale_maps: per scale (B, D, h_s, w_s) visual features.
            audio: (B, D) sound embeddings.

        Returns:
            ``(categories, cells)``: (B, C, D) audio-visual category embeddings ``c^av`` and
            (B, sum_s h_s w_s, D) the updated cell tokens (None without ``with_cells``), both
            layer-normalised.
        """
        sound = self.audio_proj(audio) + self.sound_embedding  # (B, D)
        categories = self.categories.expand(audio.shape[0], -1, -1)  # (B, C, D)
        tokens = [categories, sound[:, None]]
        if self.with_cells:
            cells = self.visual_proj(scale_tokens(scale_maps))  # (B, L, D)
            tokens.append(cells + self.positions + self.scale_embedding[self.scale_of_cell])
        tokens = self.norm(self.phi(torch.cat(tokens, dim=1), mask=self.blocked))
        cells = tokens[:, self.num_classes + 1 :] if self.with_cells else None
        return tokens[:, : self.num_classes], cells
