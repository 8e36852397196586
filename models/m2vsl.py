"""Visual sound-source localisers on per-snippet patch grids: M2VSL and a similarity baseline.

Both take a snippet's visual patch grid ``(B, H', W', Dg)`` (``visual_grid`` of the feature
store, which may pack a backbone's feature pyramid: ``grid_levels``,
:func:`~models.m2vsl_parts.check_grid_levels`) and its audio embedding ``(B, Da)`` and return a
localisation heatmap per frame. Both are
weakly supervised: training sees which sound goes with which frame (and, for M2VSL's MMT, which
event categories sound in the snippet), never a box or mask.

- ``m2vsl``: Multi-scale Multi-instance Visual Sound Localization (arXiv 2409.00486, Sec. 3). A
  pyramid of visual features (a ResNet's stages packed in the grid by the ``resnet`` encoder,
  the text's multi-scale features; or a one-level grid pooled 1x, 2x, 4x) is aligned with the
  audio by one multiple-instance contrastive loss over the bag of all scales' locations (MMC),
  and a transformer over category tokens, the sound and the cells of all scales (MMT) draws one
  map per category, trained from the snippets' labels. The paper's trained backbones, its
  segmentation decoder and its AVSBench mask supervision are not reproduced: the features here
  are fixed.
- ``similarity``: the plain audio-visual similarity map: cosine similarity between the
  projected audio and every cell of the grid (one level of a packed pyramid, the finest by
  default),
  trained with the same MMC loss at one scale (EZ-VSL, arXiv 2203.09324, without its
  object-guided refinement).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.m2vsl_parts import (
    AudioEmbedding,
    CategoryTransformer,
    GridPyramid,
    bag_similarity,
    check_grid_levels,
    cosine_maps,
    mil_similarity,
    mmc_loss,
)
from models.registry import Registry


class SoundLocaliser(nn.Module):
    """Base of the sound-source localisers: input normalisation and the heatmap interface.

    Subclasses implement :meth:`losses` and :meth:`cell_scores`; :meth:`heatmap` upsamples the
    cell scores to the video frame.

    Args:
        grid_dim: values per grid cell (``Dg``), from the feature store.
        audio_dim: audio embedding width (``Da``), from the feature store.
        grid_shape: ``(H', W')`` cells of the grid, from the feature store.
        num_classes: event categories of the training labels (0: none); only localisers that
            learn from labels use it.
        grid_levels: the backbone levels packed in the grid, ``(channels, factor)`` finest
            first (:func:`~models.m2vsl_parts.check_grid_levels`), from the feature store;
            ``None``: a plain one-level grid.
    """

    def __init__(
        self,
        *,
        grid_dim: int,
        audio_dim: int,
        grid_shape: Sequence[int],
        num_classes: int = 0,
        grid_levels: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.grid_dim, self.audio_dim = int(grid_dim), int(audio_dim)
        self.num_classes = int(num_classes)
        self.grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
        self.grid_levels = check_grid_levels(grid_levels, self.grid_dim)
        self.visual: GridPyramid  # built by the subclasses
        self.register_buffer("grid_mean", torch.zeros(grid_dim))
        self.register_buffer("grid_std", torch.ones(grid_dim))
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))

    @property
    def cell_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of :meth:`cell_scores`: the cells of the finest scale used."""
        rows, cols = self.visual.shapes[0]
        return rows, cols

    def set_normalisation(
        self, grid_mean: Tensor, grid_std: Tensor, audio_mean: Tensor, audio_std: Tensor
    ) -> None:
        """Store the training set's per-channel mean and std (a std of 0 is taken as 1)."""
        for name, value in (
            ("grid_mean", grid_mean),
            ("grid_std", grid_std),
            ("audio_mean", audio_mean),
            ("audio_std", audio_std),
        ):
            value = torch.as_tensor(value, dtype=torch.float32)
            if name.endswith("std"):
                value = torch.where(value > 1e-6, value, torch.ones_like(value))
            getattr(self, name).copy_(value)

    def normalise(self, grid: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Raw ``grid`` (B, H', W', Dg) and ``audio`` (B, Da) -> standardised (B, Dg, H', W')
        and (B, Da)."""
        if grid.ndim != 4 or grid.shape[-1] != self.grid_dim or audio.shape[-1] != self.audio_dim:
            raise ValueError(
                f"expected grid (B, H', W', {self.grid_dim}) and audio (B, {self.audio_dim}), "
                f"got {tuple(grid.shape)} and {tuple(audio.shape)}; features from another "
                "extraction?"
            )
        grid = (grid - self.grid_mean) / self.grid_std
        audio = (audio - self.audio_mean) / self.audio_std
        return grid.permute(0, 3, 1, 2), audio  # (B, Dg, H', W'), (B, Da)

    def losses(
        self, grid: Tensor, audio: Tensor, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Training losses of a batch of matching (frame, sound) pairs; ``"loss"`` is the sum.

        ``labels`` (B, num_classes) multi-hot: the event categories sounding at each snippet
        (weak, video-level labels); localisers that do not learn from labels ignore them."""
        raise NotImplementedError

    def cell_scores(self, grid: Tensor, audio: Tensor) -> Tensor:
        """Localisation score of every cell of the finest scale, (B, *cell_shape); higher =
        source."""
        raise NotImplementedError

    @torch.no_grad()
    def heatmap(self, grid: Tensor, audio: Tensor, frame_size: Sequence[int]) -> Tensor:
        """Heatmaps (B, height, width) at the video frame's ``frame_size = (width, height)``.

        The cell scores are upsampled bilinearly (cell centres at pixel-area centres); the grid
        is taken to cover the whole frame in equal cells, as the grid encoders compute it.
        """
        width, height = int(frame_size[0]), int(frame_size[1])
        scores = self.cell_scores(grid, audio)  # (B, rows, cols) of cell_shape
        upsampled = F.interpolate(
            scores[:, None], size=(height, width), mode="bilinear", align_corners=False
        )
        return upsampled[:, 0]  # (B, height, width)


SOUND_LOCALISERS = Registry(
    "sound localiser",
    base=SoundLocaliser,
    contract="""Sound-source localiser contract.

    Constructor: keyword-only; ``grid_dim``, ``audio_dim``, ``grid_shape``, ``grid_levels`` and
    ``num_classes`` are derived from the data by the caller, the rest comes from the config.
    ``losses(grid: Tensor (B, H', W', Dg), audio: Tensor (B, Da), labels: Tensor (B, C) |
    None) -> dict[str, Tensor]`` with a scalar ``"loss"`` (row b of the grid, the audio and the
    labels come from the same snippet);
    ``cell_scores(grid, audio) -> Tensor (B, *cell_shape)``; ``heatmap(grid, audio, frame_size=(W,
    H)) -> Tensor (B, H, W)``. Inputs are raw store values; the model normalises them with the
    statistics set by ``set_normalisation``.
    """,
)


@SOUND_LOCALISERS.register("similarity")
class SimilarityMap(SoundLocaliser):
    """Plain audio-visual similarity map, trained with single-scale MMC (the baseline).

    Args:
        grid_dim: values per grid cell (derived).
        audio_dim: audio embedding width (derived).
        grid_shape: ``(H', W')`` grid cells (derived).
        num_classes: event categories (derived; unused: the baseline learns without labels).
        grid_levels: backbone levels packed in the grid (derived).
        level: which level of a packed grid the map is drawn on: 0 the finest (default), -1
            the coarsest (EZ-VSL's map: ResNet-18's last stage, 7x7 at 224x224).
        dim: width of the shared space.
        hidden: hidden width of the visual and audio MLPs.
        temperature: InfoNCE temperature of the MMC loss.
    """

    def __init__(
        self,
        *,
        grid_dim: int,
        audio_dim: int,
        grid_shape: Sequence[int],
        num_classes: int = 0,
        grid_levels: Sequence[Sequence[int]] | None = None,
        level: int = 0,
        dim: int = 32,
        hidden: int = 64,
        temperature: float = 0.2,
    ) -> None:
        super().__init__(
            grid_dim=grid_dim,
            audio_dim=audio_dim,
            grid_shape=grid_shape,
            num_classes=num_classes,
            grid_levels=grid_levels,
        )
        self.temperature = float(temperature)
        self.visual = GridPyramid(
            in_dim=grid_dim,
            dim=dim,
            hidden=hidden,
            grid_shape=grid_shape,
            grid_levels=grid_levels,
            levels=[level],
        )
        self.audio = AudioEmbedding(in_dim=audio_dim, hidden=hidden, dim=dim)

    def losses(
        self, grid: Tensor, audio: Tensor, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        grid, audio = self.normalise(grid, audio)
        (visual_map,) = self.visual(grid)
        loss = mmc_loss(mil_similarity(visual_map, self.audio(audio)), self.temperature)
        return {"mmc": loss, "loss": loss}

    def cell_scores(self, grid: Tensor, audio: Tensor) -> Tensor:
        grid, audio = self.normalise(grid, audio)
        (visual_map,) = self.visual(grid)
        embedded = self.audio(audio)
        visual_unit = F.normalize(visual_map, dim=1)  # (B, D, H', W')
        audio_unit = F.normalize(embedded, dim=1)  # (B, D)
        return torch.einsum("bdhw,bd->bhw", visual_unit, audio_unit)  # paired cosines


MMC_BAGS = ("joint", "per_scale")
MAP_FEATURES = ("input", "output")


@SOUND_LOCALISERS.register("m2vsl")
class M2VSL(SoundLocaliser):
    """M2VSL: MMC alignment over one multi-scale bag, and the MMT's category maps
    (arXiv 2409.00486, Sec. 3).

    Training loss ``L_MMC + mmt_weight L_cls``:

    - ``L_MMC``: the symmetric InfoNCE of :func:`~models.m2vsl_parts.mmc_loss` over the batch's
      (frame, sound) pairs, a pair's similarity being the best match of the sound anywhere in
      the frame's bag of multi-scale features (:func:`~models.m2vsl_parts.bag_similarity`).
      ``mmc_bag: per_scale`` is the ablation that takes one bag, and one loss, per scale
      (weighted by ``scale_weights``).
    - ``L_cls``: the MMT (:class:`~models.m2vsl_parts.CategoryTransformer`) turns C category
      tokens and the sound (and, with the switches below, the frame's multi-scale cells) into
      audio-visual category embeddings ``c^av_k``. The map of category k is the cosine between
      ``c^av_k`` and each cell of the finest scale, ``M_k(h, w)``; its logit is
      ``max_{h,w} M_k / class_temperature + b_k`` (a category sounds in a frame when at least
      one location shows it: the multiple-instance reading of the text), trained with binary
      cross-entropy against the snippet's labels, the only supervision the text names
      ("video-level labels"). Comparing with every scale's cells instead (one bag, as MMC)
      was tried: the coarse cells then win the max and the finest map, which draws the
      heatmap, stays flat (pointing 0.29 on the toy task of the tests, against 0.76).

    Readings where the summary is silent, each with its switch (the demo's five seeds chose
    the defaults; README, spatial stage):

    - ``mmt_attention``: ``structured`` (default) lets the category tokens attend to each other
      and to the sound only, ``full`` every token to every token (some seeds then point every
      category at the background).
    - ``mmt_map_features``: the maps compare the category embeddings with the MMT's input
      cells (``input``, default) or with the cells after its self-attention (``output``:
      every cell carries the frame's context, and the maps lost their location on the demo).
      Under ``structured`` attention with ``input`` cells the cells' updates would be unused,
      so the MMT's sequence holds the category tokens and the sound only.
    - The heatmap of a snippet is the average of the category maps weighted by the
      categories' probabilities ``sigmoid(logit_k)``.
    - With ``mmt: false`` (the ablation without MMT) the heatmap is the mean over scales of
      the sound's cosine maps, upsampled to the finest grid.

    Args:
        grid_dim: values per grid cell (derived).
        audio_dim: audio embedding width (derived).
        grid_shape: ``(H', W')`` grid cells (derived).
        num_classes: event categories of the labels (derived; the MMT's category tokens).
        grid_levels: backbone levels packed in the grid (derived): when there are several,
            they are the scales (the text's multi-scale features).
        levels: the packed levels used as scales (indices, 0 the finest, -1 the coarsest);
            ``None``: all (the scales ablation of a backbone pyramid).
        dim: width of the shared space and of the MMT tokens.
        hidden: hidden width of the visual and audio MLPs.
        pool_factors: for a one-level grid, the pooling factor of each pyramid scale, finest
            (1) first; ``None``: ``(1, 2, 4)``. A grid of several levels refuses it.
        mmc_bag: ``joint`` (one bag over all scales, the text) or ``per_scale``.
        scale_weights: with ``per_scale``, each scale's loss weight (normalised to sum 1).
        temperature: InfoNCE temperature of the MMC loss.
        mmt: use the MMT (False: the ablation without it).
        mmt_depth: transformer layers of the MMT.
        mmt_heads: attention heads of the MMT.
        mmt_mlp_ratio: MMT feed-forward width as a multiple of ``dim``.
        mmt_dropout: dropout inside the MMT.
        mmt_map_features: ``input`` or ``output`` cells for the category maps (see above).
        mmt_attention: ``structured`` or ``full``: which tokens attend to which
            (:class:`~models.m2vsl_parts.CategoryTransformer`).
        mmt_weight: weight of ``L_cls`` in the total loss.
        class_temperature: divides the category maps' maxima into logits.
    """

    def __init__(
        self,
        *,
        grid_dim: int,
        audio_dim: int,
        grid_shape: Sequence[int],
        num_classes: int = 0,
        grid_levels: Sequence[Sequence[int]] | None = None,
        levels: Sequence[int] | None = None,
        dim: int = 32,
        hidden: int = 64,
        pool_factors: Sequence[int] | None = None,
        mmc_bag: str = "joint",
        scale_weights: Sequence[float] | None = None,
        temperature: float = 0.2,
        mmt: bool = True,
        mmt_depth: int = 1,
        mmt_heads: int = 4,
        mmt_mlp_ratio: int = 2,
        mmt_dropout: float = 0.0,
        mmt_map_features: str = "input",
        mmt_attention: str = "structured",
        mmt_weight: float = 1.0,
        class_temperature: float = 0.1,
    ) -> None:
        super().__init__(
            grid_dim=grid_dim,
            audio_dim=audio_dim,
            grid_shape=grid_shape,
            num_classes=num_classes,
            grid_levels=grid_levels,
        )
        if mmc_bag not in MMC_BAGS:
            raise ValueError(f"model key 'mmc_bag' must be one of {MMC_BAGS}, got {mmc_bag!r}")
        if mmt_map_features not in MAP_FEATURES:
            raise ValueError(
                f"model key 'mmt_map_features' must be one of {MAP_FEATURES}, "
                f"got {mmt_map_features!r}"
            )
        if mmt and self.num_classes < 1:
            raise ValueError(
                "M2VSL's MMT needs event categories (video-level labels) to train its category "
                "tokens, and the data has none; set the model key 'mmt: false' to train MMC only"
            )
        if pool_factors is None and len(self.grid_levels) == 1:
            pool_factors = (1, 2, 4)
        self.visual = GridPyramid(
            in_dim=grid_dim,
            dim=dim,
            hidden=hidden,
            grid_shape=grid_shape,
            pool_factors=pool_factors,
            grid_levels=grid_levels,
            levels=levels,
        )
        num_scales = len(self.visual.shapes)
        if scale_weights is not None and mmc_bag != "per_scale":
            raise ValueError("model key 'scale_weights' needs mmc_bag: per_scale")
        if scale_weights is None:
            scale_weights = [1.0] * num_scales
        if len(scale_weights) != num_scales or min(scale_weights) < 0:
            raise ValueError(
                f"model key 'scale_weights' needs one non-negative weight per scale "
                f"({num_scales}), got {list(scale_weights)}"
            )
        total = float(sum(scale_weights))
        self.scale_weights = [float(w) / total for w in scale_weights]
        self.mmc_bag = mmc_bag
        self.temperature = float(temperature)
        self.use_mmt = bool(mmt)
        self.mmt_map_features = mmt_map_features
        self.mmt_weight = float(mmt_weight)
        self.class_temperature = float(class_temperature)
        self.audio = AudioEmbedding(in_dim=audio_dim, hidden=hidden, dim=dim)
        if self.use_mmt:
            self.mmt = CategoryTransformer(
                dim=dim,
                num_classes=self.num_classes,
                grid_shapes=self.visual.shapes,
                depth=mmt_depth,
                heads=mmt_heads,
                mlp_ratio=mmt_mlp_ratio,
                dropout=mmt_dropout,
                attention=mmt_attention,
                with_cells=mmt_attention == "full" or mmt_map_features == "output",
            )
            self.category_head = nn.Linear(dim, dim)
            self.class_bias = nn.Parameter(torch.zeros(self.num_classes))

    def scale_maps(self, grid: Tensor, audio: Tensor) -> tuple[list[Tensor], Tensor]:
        """Per-scale visual maps (B, D, h_s, w_s) and audio embeddings (B, D) of raw inputs."""
        grid, audio = self.normalise(grid, audio)
        return self.visual(grid), self.audio(audio)

    def scale_cosines(self, grid: Tensor, audio: Tensor) -> list[Tensor]:
        """Paired cosine map of each scale, (B, h_s, w_s), for inspection and plots."""
        maps, embedded = self.scale_maps(grid, audio)
        index = torch.arange(grid.shape[0], device=grid.device)
        return [cosine_maps(m, embedded)[index, index] for m in maps]

    def category_maps(self, maps: Sequence[Tensor], embedded: Tensor) -> tuple[Tensor, Tensor]:
        """The MMT's category maps (B, C, H', W') on the finest grid and their logits (B, C)."""
        categories, cells = self.mmt(maps, embedded)  # (B, C, D), (B, L, D) or None
        rows, cols = self.visual.shapes[0]
        if self.mmt_map_features == "output":
            finest = cells[:, : rows * cols]  # the finest cells after self-attention
        else:
            finest = maps[0].flatten(2).transpose(1, 2)  # (B, H'W', D): the MMT's input cells
        category_unit = F.normalize(self.category_head(categories), dim=-1)
        category_maps = torch.einsum(
            "bcd,bld->bcl", category_unit, F.normalize(finest, dim=-1)
        )  # (B, C, H'W')
        logits = category_maps.max(dim=2).values / self.class_temperature + self.class_bias
        return category_maps.unflatten(2, (rows, cols)), logits

    def losses(
        self, grid: Tensor, audio: Tensor, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        maps, embedded = self.scale_maps(grid, audio)
        if self.mmc_bag == "joint":
            losses = {"mmc": mmc_loss(bag_similarity(maps, embedded), self.temperature)}
        else:
            losses = {
                f"mmc_{scale}": mmc_loss(mil_similarity(m, embedded), self.temperature)
                for scale, m in enumerate(maps)
            }
            losses["mmc"] = sum(w * losses[f"mmc_{s}"] for s, w in enumerate(self.scale_weights))
        losses["loss"] = losses["mmc"]
        if self.use_mmt:
            if labels is None:
                raise ValueError("M2VSL's MMT is trained with the snippets' labels; pass them")
            _, logits = self.category_maps(maps, embedded)
            losses["cls"] = F.binary_cross_entropy_with_logits(logits, labels.to(logits))
            losses["loss"] = losses["loss"] + self.mmt_weight * losses["cls"]
        return losses

    def cell_scores(self, grid: Tensor, audio: Tensor) -> Tensor:
        maps, embedded = self.scale_maps(grid, audio)
        if not self.use_mmt:
            index = torch.arange(grid.shape[0], device=grid.device)
            finest = self.visual.shapes[0]
            upsampled = [
                F.interpolate(
                    cosine_maps(m, embedded)[index, index][:, None],
                    size=finest,
                    mode="bilinear",
                    align_corners=False,
                )[:, 0]
                for m in maps
            ]
            return torch.stack(upsampled).mean(dim=0)  # (B, H', W')
        category_maps, logits = self.category_maps(maps, embedded)
        weights = torch.sigmoid(logits)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.einsum("bc,bchw->bhw", weights, category_maps)


def build_localiser(
    cfg: Mapping[str, Any],
    *,
    grid_dim: int,
    audio_dim: int,
    grid_shape: Sequence[int],
    num_classes: int = 0,
    grid_levels: Sequence[Sequence[int]] | None = None,
) -> SoundLocaliser:
    """Build a registered localiser from ``{"name": ..., **kwargs}`` and the data's sizes."""
    return SOUND_LOCALISERS.build(
        cfg,
        grid_dim=grid_dim,
        audio_dim=audio_dim,
        grid_shape=list(grid_shape),
        num_classes=num_classes,
        grid_levels=None if grid_levels is None else [list(level) for level in grid_levels],
    )
