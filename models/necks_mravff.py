"""MRAV-FF: multi-resolution audio-visual feature fusion as a neck (contract: ``NECKS``).

Fish, Weinbren and Gilbert, "Multi-Resolution Audio-Visual Feature Fusion for Temporal
Action Localization", arXiv 2310.03456. The backbone builds a pyramid from the visual
features only; audio joins at every pyramid level through a hierarchical gated
cross-attention, so each level decides how much audio helps at its temporal resolution
(abstract and Fig. 1 of the paper). Per level ``l`` with stride ``s_l``:

* the raw audio features (``inputs["audio"]``, (B, D_a, T)) are max-pooled to the level's
  length ``T // s_l`` (:func:`pool_audio_to_level`);
* visual queries (the pyramid level) and audio keys/values are projected to a shared width
  ``fusion_dim`` and fused by multi-head cross-attention;
* a gate, the sigmoid of a learned 1x1 convolution of the visual features, weighs the
  audio contribution per channel and position: ``out = v + g(v) * CrossAttn(v, a)``
  (``gate: false``: the plain residual sum ``out = v + CrossAttn(v, a)``).

The heads are unchanged: the neck returns a pyramid of the backbone's width. A typical run
config lets the backbone see visual only and the neck read audio::

    model: {name: actionformer, modalities: [visual], neck: {name: mravff, num_heads: 4}}

(the detector adds ``audio`` to its ``input_modalities`` because the neck declares it in
``required_modalities``).

Only the paper's abstract and Fig. 1 were available to us, not its equations: the formulas
above are our reading of that description. Our choice for the pooling window: the window
of point ``t`` is centred on its grid position ``t * s_l`` (kernel ``2 * (s_l // 2) + 1``),
the convention of ``models.points`` and of the backbone's strided max-pool skip, so the
audio a point sees is the audio around the snippets it describes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks import ChannelLayerNorm
from models.cross_attention import MaskedCrossAttention
from models.registry import NECKS


def pool_audio_to_level(audio: Tensor, mask: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Masked max-pool of ``audio`` to a stride-``stride`` pyramid level.

    Output ``t`` is the channel-wise maximum over the valid input snippets
    ``t*s - s//2 .. t*s + s//2`` (centred on the point's grid position); padded snippets
    never win, and padded outputs are zero.

    Args:
        audio: (B, D_a, T) audio features; T a multiple of ``stride``.
        mask: (B, T) bool, True for valid snippets (a prefix of each row).
        stride: the level's stride (>= 1).

    Returns:
        ``(pooled (B, D_a, T // stride), level_mask (B, T // stride))``, ``level_mask =
        mask[:, ::stride]``.
    """
    if audio.shape[-1] % stride != 0:
        raise ValueError(f"audio length {audio.shape[-1]} is not a multiple of stride {stride}")
    level_mask = mask[:, ::stride]
    keep = level_mask[:, None, :].to(audio.dtype)
    if stride == 1:
        return audio * keep, level_mask
    half = stride // 2
    filled = audio.masked_fill(~mask[:, None, :], float("-inf"))
    pooled = F.max_pool1d(filled, kernel_size=2 * half + 1, stride=stride, padding=half)
    # a valid point's window holds its own (valid) snippet, so only padded outputs are -inf
    return pooled.masked_fill(~level_mask[:, None, :], 0.0), level_mask  # (B, D_a, T // s)


class GatedAudioVisualFusion(nn.Module):
    """One level's fusion ``v + g(v) * CrossAttn(LN(v), LN(a))`` (arXiv 2310.03456).

    Args:
        channels: width C of the visual pyramid level (queries and output).
        audio_dim: width D_a of the raw audio features (keys and values).
        fusion_dim: shared attention width both are projected to.
        num_heads: attention heads.
        gate: multiply the audio contribution by ``sigmoid(W_g LN(v) + b_g)``; False adds it.
        attn_dropout: dropout on the attention weights.
        window: odd band of audio points each visual point attends to; None: all of them.
    """

    def __init__(
        self,
        channels: int,
        audio_dim: int,
        fusion_dim: int,
        num_heads: int,
        gate: bool = True,
        attn_dropout: float = 0.0,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.visual_norm = ChannelLayerNorm(channels)
        self.audio_norm = ChannelLayerNorm(audio_dim)
        self.attn = MaskedCrossAttention(
            channels,
            audio_dim,
            fusion_dim,
            num_heads,
            out_dim=channels,
            attn_dropout=attn_dropout,
            window=window,
        )
        # gate bias 0: every level starts by letting half of the audio contribution through
        self.gate = nn.Conv1d(channels, channels, 1) if gate else None

    def forward(self, visual: Tensor, audio: Tensor, mask: Tensor) -> Tensor:
        """``visual`` (B, C, T_l), ``audio`` (B, D_a, T_l) pooled, ``mask`` (B, T_l) ->
        (B, C, T_l), zero at padded positions."""
        normed = self.visual_norm(visual)
        audio_contribution = self.attn(normed, mask, self.audio_norm(audio), mask)
        if self.gate is not None:
            audio_contribution = torch.sigmoid(self.gate(normed)) * audio_contribution
        return (visual + audio_contribution) * mask[:, None, :].to(visual.dtype)


@NECKS.register("mravff")
class MRAVFFNeck(nn.Module):
    """Hierarchical gated audio-visual cross-attention over the pyramid (MRAV-FF).

    Args:
        channels: backbone width (provided by the detector).
        strides: per-level strides (provided by the detector).
        input_dims: per-modality input widths (provided by the detector); needs ``audio``.
        num_heads: cross-attention heads per level.
        fusion_dim: shared width of the attention; None keeps ``channels``.
        gate: gated fusion (True) or the plain residual sum (False).
        fuse_levels: "all", or one bool per level: fuse audio at that level or pass it
            through unchanged.
        attn_dropout: dropout on the attention weights.
        attention_window: odd number of neighbouring audio points (at the level's resolution)
            a visual point attends to; None attends to the whole video. The cross-attention
            has no positional encoding, so a global one mixes the whole video's audio into
            every point; a band keeps the audio a point sees aligned with it in time.
        layer_norm: LayerNorm each output level, as the ``identity`` neck does.
    """

    required_modalities: tuple[str, ...] = ("audio",)

    def __init__(
        self,
        *,
        channels: int,
        strides: Sequence[int],
        input_dims: Mapping[str, int],
        num_heads: int = 4,
        fusion_dim: int | None = None,
        gate: bool = True,
        fuse_levels: str | Sequence[bool] = "all",
        attn_dropout: float = 0.0,
        attention_window: int | None = None,
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        if "audio" not in input_dims:
            raise ValueError(
                "neck mravff fuses audio but the features have no 'audio' modality "
                f"(input_dims: {', '.join(sorted(input_dims))}); extract audio features"
            )
        self.strides = tuple(int(s) for s in strides)
        self.num_levels = len(self.strides)
        if isinstance(fuse_levels, str):
            if fuse_levels != "all":
                raise ValueError(
                    f"neck mravff: fuse_levels must be 'all' or a list, got {fuse_levels!r}"
                )
            fuse_levels = [True] * self.num_levels
        if len(fuse_levels) != self.num_levels or not all(
            isinstance(flag, bool) for flag in fuse_levels
        ):
            raise ValueError(
                f"neck mravff: fuse_levels needs one bool per pyramid level ({self.num_levels}), "
                f"got {list(fuse_levels)}"
            )
        self.fuse_levels = tuple(fuse_levels)
        self.out_channels = channels
        width = fusion_dim or channels
        self.fusions = nn.ModuleDict(
            {
                str(level): GatedAudioVisualFusion(
                    channels,
                    input_dims["audio"],
                    width,
                    num_heads,
                    gate,
                    attn_dropout,
                    window=attention_window,
                )
                for level, fuse in enumerate(self.fuse_levels)
                if fuse
            }
        )
        self.norms = nn.ModuleList(
            ChannelLayerNorm(channels) if layer_norm else nn.Identity() for _ in self.strides
        )

    def forward(
        self,
        feats: list[Tensor],
        masks: list[Tensor],
        inputs: Mapping[str, Tensor],
        input_mask: Tensor,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """See ``NECKS`` for shapes; reads ``inputs["audio"]`` (B, D_a, T)."""
        if len(feats) != self.num_levels or len(masks) != self.num_levels:
            raise ValueError(
                f"neck mravff built for {self.num_levels} levels got {len(feats)} features and "
                f"{len(masks)} masks"
            )
        if "audio" not in inputs:
            raise ValueError("neck mravff needs inputs['audio'] (B, D_a, T); none was given")
        out = []
        for level, (visual, mask) in enumerate(zip(feats, masks, strict=True)):
            if self.fuse_levels[level]:
                audio, _ = pool_audio_to_level(inputs["audio"], input_mask, self.strides[level])
                visual = self.fusions[str(level)](visual, audio, mask)
            out.append(self.norms[level](visual) * mask[:, None, :].to(visual.dtype))
        return out, list(masks)
