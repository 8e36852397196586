"""LoCo's cross-modal feature pyramid (arXiv 2409.07967, Sec. 3.2 "Dynamic Cross-modal
Perception Pyramid" and Sec. 3.4).

The two unimodal encoder outputs pass through one CDP block per level. A block at level
``l > 0`` first downsamples both modalities by 2 (Sec. 3.4: "downsampling is performed
first"; Sec. 3.2: "CDP blocks with downsampling in between", ratio 2 as in UnAV/UniAV); level
0 keeps the input resolution. The text does not say how; ``pyramid_downsample`` chooses:

* ``max_pool`` (default): masked max-pooling, kernel 3, stride 2 (the skip path of the
  downsampling blocks of ActionFormer and UnAV); no parameters.
* ``depthwise_conv``: a masked depthwise convolution, kernel 3, stride 2, then LayerNorm
  (the strided convolution UnAV's downsampling blocks apply before attention).
* ``transformer``: a whole ActionFormer downsampling transformer block (local
  self-attention with stride 2 and MLP), which the text does not describe; kept to compare.

Then each modality queries the other in cross-modal layers (``cross_layers_per_level``
per direction; audio -> visual and visual -> audio from the same inputs), and the level's
two outputs are concatenated (Sec. 3.2) and projected back to C (1x1 convolution,
LayerNorm; our choice, so the decoder keeps width C). One cross-modal layer is LoCo's
Eq. (8) around the attention of ``cross_attention``:

    x_hat = x + Attn(LN(x), LN(y));    out = x_hat + FFN(LN(x_hat))

Eq. (8)'s prose names one LayerNorm and the FFN after the attention residual; we read it as
the pre-LN arrangement of UnAV/UniAV's blocks (LN before the FFN, inside the residual) and
also normalise the attention's inputs, as those pre-LN blocks do. ``cross_attention``:

* ``cdp``: CDP, sliding-window attention over WA-sampled keys/values (``models.loco.cdp``).
* ``fixed_window``: the same sliding window over the context itself (Table 2(c) "Fixed").
* ``global``: dense cross-attention over all valid snippets (Table 2(c)/(d) "Global",
  "Full"; ``models.cross_attention``), as in UnAV/UniAV ("Base*" of Fig. 5).
* ``none``: no cross-modal layer (Table 3's "base"): a level only downsamples (l > 0) and
  concatenates the two unimodal sequences; the modalities meet first in the fusion
  projection and the decoder's transformer blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks import (
    ChannelLayerNorm,
    MaskedConv1d,
    TransformerBlock,
    downsample_mask,
    pointwise_mlp,
)
from models.cross_attention import MaskedCrossAttention
from models.loco.cdp import SlidingWindowCrossAttention

CROSS_ATTENTIONS = ("none", "global", "fixed_window", "cdp")
DOWNSAMPLINGS = ("max_pool", "depthwise_conv", "transformer")


class Downsample(nn.Module):
    """Stride-2 downsampling of one modality between pyramid levels (LoCo Sec. 3.2, 3.4).

    Output ``t`` is centred on input ``2 t`` and its mask is ``mask[:, ::2]``
    (``models.points``); padded inputs never reach a valid output.

    Args:
        kind: "max_pool", "depthwise_conv" or "transformer" (see the module docstring).
        embed_dim: width C.
        num_heads: attention heads of "transformer".
        local_window: local self-attention window of "transformer" (odd).
        mlp_ratio: MLP width multiple of "transformer".
        dropout: dropout of "transformer".
        path_drop: stochastic depth of "transformer".
    """

    def __init__(
        self,
        kind: str,
        embed_dim: int,
        num_heads: int = 4,
        local_window: int = 9,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        path_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in DOWNSAMPLINGS:
            raise ValueError(
                f"pyramid_downsample must be one of {', '.join(DOWNSAMPLINGS)}, got {kind!r}"
            )
        self.kind = kind
        if kind == "depthwise_conv":
            self.conv = MaskedConv1d(embed_dim, embed_dim, 3, 2, embed_dim, bias=False)
            self.norm = ChannelLayerNorm(embed_dim)
        elif kind == "transformer":
            self.block = TransformerBlock(
                embed_dim, num_heads, local_window, True, mlp_ratio, dropout, path_drop
            )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, T), ``mask`` (B, T), T even -> (B, C, T // 2), its mask."""
        if x.shape[-1] % 2 != 0:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of 2")
        if self.kind == "transformer":
            return self.block(x, mask)
        out_mask = downsample_mask(mask, 2)
        keep = out_mask[:, None, :].to(x.dtype)
        if self.kind == "depthwise_conv":
            x, _ = self.conv(x, mask)
            return self.norm(x) * keep, out_mask
        # padded positions must not win the max: fill them with -inf first
        filled = x.masked_fill(~mask[:, None, :], float("-inf"))
        pooled = F.max_pool1d(filled, kernel_size=3, stride=2, padding=1)  # (B, C, T // 2)
        return pooled.masked_fill(~out_mask[:, None, :], 0.0), out_mask


class CrossModalLayer(nn.Module):
    """One direction of cross-modal interaction, LoCo Eq. (8): queries ``x`` attend to ``y``.

    Args:
        embed_dim: width C of both modalities.
        num_heads: attention heads.
        cross_attention: "global", "fixed_window" or "cdp".
        window_size: base window w (window variants).
        mlp_ratio: FFN hidden width as a multiple of C.
        dropout: dropout on the attention weights and in the FFN.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        cross_attention: str = "cdp",
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cross_attention not in CROSS_ATTENTIONS or cross_attention == "none":
            raise ValueError(
                "a cross-modal layer's attention must be one of global, fixed_window, cdp; "
                f"got {cross_attention!r}"
            )
        self.cross_attention = cross_attention
        self.norm_query = ChannelLayerNorm(embed_dim)
        self.norm_context = ChannelLayerNorm(embed_dim)
        if cross_attention == "global":
            self.attn: nn.Module = MaskedCrossAttention(
                embed_dim, embed_dim, embed_dim, num_heads, attn_dropout=dropout
            )
        else:
            self.attn = SlidingWindowCrossAttention(
                embed_dim, num_heads, window_size, cross_attention == "cdp", dropout
            )
        self.norm_mlp = ChannelLayerNorm(embed_dim)
        self.mlp = pointwise_mlp(embed_dim, mlp_ratio, dropout)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """``x`` queries, ``y`` context, both (B, C, T), ``mask`` (B, T) -> (B, C, T)."""
        keep = mask[:, None, :].to(x.dtype)
        query, context = self.norm_query(x), self.norm_context(y)
        if self.cross_attention == "global":
            attended = self.attn(query, mask, context, mask)
        else:
            attended = self.attn(query, context, mask)
        x = x + attended  # LoCo Eq. (8): attention residual
        return (x + self.mlp(self.norm_mlp(x)) * keep) * keep  # LoCo Eq. (8): LN, FFN


class CrossModalPyramid(nn.Module):
    """CDP blocks with downsampling in between and per-level fusion (LoCo Sec. 3.2, 3.4).

    Args:
        embed_dim: width C.
        num_levels: pyramid levels; strides ``1, 2, ..., 2**(num_levels - 1)``.
        num_heads: attention heads.
        cross_attention: "none", "global", "fixed_window" or "cdp".
        window_size: base window w of the window variants (the same at every level).
        layers_per_level: cross-modal layers per direction and level.
        downsample: "max_pool", "depthwise_conv" or "transformer".
        local_window: local self-attention window of "transformer" downsampling (odd).
        mlp_ratio: FFN width multiple.
        dropout: dropout in the layers.
        path_drop: stochastic depth of "transformer" downsampling.
    """

    def __init__(
        self,
        embed_dim: int,
        num_levels: int,
        num_heads: int,
        cross_attention: str = "cdp",
        window_size: int = 8,
        layers_per_level: int = 1,
        downsample: str = "max_pool",
        local_window: int = 9,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        path_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if num_levels < 1 or layers_per_level < 1:
            raise ValueError("the pyramid needs >= 1 level and >= 1 cross-modal layer per level")
        if cross_attention not in CROSS_ATTENTIONS:
            raise ValueError(
                f"cross_attention must be one of {', '.join(CROSS_ATTENTIONS)}, "
                f"got {cross_attention!r}"
            )
        self.strides = tuple(2**level for level in range(num_levels))
        per_level = 0 if cross_attention == "none" else layers_per_level

        def layers() -> nn.ModuleList:
            return nn.ModuleList(
                CrossModalLayer(
                    embed_dim, num_heads, cross_attention, window_size, mlp_ratio, dropout
                )
                for _ in range(per_level)
            )

        def downsamplers() -> nn.ModuleList:
            return nn.ModuleList(
                Downsample(
                    downsample, embed_dim, num_heads, local_window, mlp_ratio, dropout, path_drop
                )
                for _ in range(num_levels - 1)
            )

        self.audio_layers = nn.ModuleList(layers() for _ in range(num_levels))
        self.visual_layers = nn.ModuleList(layers() for _ in range(num_levels))
        self.audio_down, self.visual_down = downsamplers(), downsamplers()
        self.fuse = nn.ModuleList(nn.Conv1d(2 * embed_dim, embed_dim, 1) for _ in range(num_levels))
        self.fuse_norms = nn.ModuleList(ChannelLayerNorm(embed_dim) for _ in range(num_levels))

    def forward(
        self, audio: Tensor, visual: Tensor, mask: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``audio``, ``visual`` (B, C, T), ``mask`` (B, T) -> fused levels (B, C, T // s_l)
        and their masks (B, T // s_l)."""
        feats, masks = [], []
        for level in range(len(self.strides)):
            if level > 0:  # LoCo Sec. 3.4: a CDP block downsamples first
                audio, next_mask = self.audio_down[level - 1](audio, mask)
                visual, _ = self.visual_down[level - 1](visual, mask)
                mask = next_mask
            for audio_layer, visual_layer in zip(
                self.audio_layers[level], self.visual_layers[level], strict=True
            ):
                # LoCo Sec. 3.4: each modality queries the other, both from the same inputs
                audio, visual = audio_layer(audio, visual, mask), visual_layer(visual, audio, mask)
            both = torch.cat([audio, visual], dim=1)  # LoCo Sec. 3.2: concatenation (B, 2C, T_l)
            fused = self.fuse_norms[level](self.fuse[level](both))
            feats.append(fused * mask[:, None, :].to(fused.dtype))
            masks.append(mask)
        return feats, masks
