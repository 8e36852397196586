"""MRAV-FF: multi-resolution audio-visual feature fusion as a neck (contract: ``NECKS``).

Fish, Weinbren and Gilbert, "Multi-Resolution Audio-Visual Feature Fusion for Temporal
Action Localization", arXiv 2310.03456. The backbone builds a pyramid from the visual
features only; audio joins at every pyramid level through a hierarchical gated
cross-attention, so each level decides how much audio helps at its temporal resolution.

What the paper summary states (Method): "Audio and visual features are projected to shared
dimensions, downsampled using max-pooling, and then fused via multi-headed cross-attention.
A gating scalar (computed using a sigmoid function on visual features) determines the
relative contribution of audio vs visual features at each temporal scale." We have neither
the paper's equations nor its code; the formulas below are our reading of that sentence.
Per level ``l`` with stride ``s_l``, visual level ``v`` (B, C, T_l) and audio ``a`` (B, D_a, T):

* project, then pool: ``a' = W_a LN(a)`` (one 1x1 convolution to the shared width ``d =
  fusion_dim``, shared by all levels and applied once at full resolution), then ``a_l =
  maxpool_{s_l}(a')`` (:func:`pool_audio_to_level`). The visual level reaches the shared
  width through the attention's query projection ``W_q`` (a second linear map before it
  would compose with ``W_q`` into one);
* fuse: ``A = W_o MHA(W_q LN(v), W_k a_l, W_v a_l)``, multi-head cross-attention over the
  whole level (``attention_window`` None), projected back to the level's width C;
* gate: ``g = sigmoid(w_g . LN(v) + b_g)``, one scalar per position from the visual features
  of that level, and the convex mix ``out = (1 - g) v + g A``: "relative contribution"
  read as weights on the two that sum to one, so ``g -> 0`` leaves the visual level alone
  (the paper's Fig. 1 "gates out" audio for actions that need none).

Switches (each an ablation row of ``configs/papers/mravff_ablations.yaml``): ``gate_shape:
channel`` (one gate per channel, ``w_g`` a C x C map), ``gate_form: residual`` (``out = v + g
A``), ``gate: false`` (the plain sum ``out = v + A``; shape and form then unused),
``attention_window`` (a band of neighbouring audio points), ``fuse_levels``. The previous
version of this neck gated as ``gate_shape: channel, gate_form: residual, gate_init: 0.5``
(and pooled the raw audio before projecting it, which is no longer an option).

Our other choices: ``b_g`` starts at ``logit(gate_init)`` (default 0.1) so training starts
close to the visual-only pyramid rather than at an equal mix with untrained attention; the
pooling window of point ``t`` is centred on its grid position ``t * s_l`` (kernel ``2 *
(s_l // 2) + 1``), the convention of ``models.points`` and of the backbone's strided
max-pool skip, so the audio a point sees is the audio around the snippets it describes.
The heads are unchanged: the neck returns a pyramid of the backbone's width. A run config::

    model: {name: actionformer, modalities: [visual], neck: {name: mravff, num_heads: 4}}

(the detector adds ``audio`` to its ``input_modalities``: the neck's ``required_modalities``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks import ChannelLayerNorm
from models.cross_attention import MaskedCrossAttention
from models.registry import NECKS

GATE_SHAPES = ("scalar", "channel")
GATE_FORMS = ("convex", "residual")


def pool_audio_to_level(audio: Tensor, mask: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Masked max-pool of ``audio`` to a stride-``stride`` pyramid level.

    Output ``t`` is the channel-wise maximum over the valid input snippets
    ``t*s - s//2 .. t*s + s//2`` (centred on the point's grid position); padded snippets
    never win, and padded outputs are zero.

    Args:
        audio: (B, D, T) audio features; T a multiple of ``stride``.
        mask: (B, T) bool, True for valid snippets (a prefix of each row).
        stride: the level's stride (>= 1).

    Returns:
        ``(pooled (B, D, T // stride), level_mask (B, T // stride))``, ``level_mask =
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
    return pooled.masked_fill(~level_mask[:, None, :], 0.0), level_mask  # (B, D, T // s)


def check_gate_options(
    where: str,
    gate_shape: str,
    gate_form: str,
    gate_init: float,
    attention_window: int | None,
    fuse_levels: str | Sequence[bool],
) -> None:
    """Refuse bad MRAV-FF option values, naming ``where`` (the config path)."""
    if gate_shape not in GATE_SHAPES:
        raise ValueError(f"{where}: gate_shape must be one of {', '.join(GATE_SHAPES)}")
    if gate_form not in GATE_FORMS:
        raise ValueError(f"{where}: gate_form must be one of {', '.join(GATE_FORMS)}")
    if not 0.0 < gate_init < 1.0:
        raise ValueError(f"{where}: gate_init must be in (0, 1), got {gate_init}")
    if attention_window is not None and (attention_window < 1 or attention_window % 2 == 0):
        raise ValueError(
            f"{where}: attention_window must be a positive odd number or null, "
            f"got {attention_window}"
        )
    if isinstance(fuse_levels, str):
        if fuse_levels != "all":
            raise ValueError(f"{where}: fuse_levels must be 'all' or a list, got {fuse_levels!r}")
    elif not any(fuse_levels) or not all(isinstance(flag, bool) for flag in fuse_levels):
        raise ValueError(
            f"{where}: fuse_levels needs one bool per pyramid level, at least one true "
            f"(no fused level is the identity neck), got {list(fuse_levels)}"
        )


class GatedAudioVisualFusion(nn.Module):
    """One level's gated cross-attention fusion (arXiv 2310.03456; formulas: module doc).

    Args:
        channels: width C of the visual pyramid level (queries and output).
        fusion_dim: shared width d of the projected audio (keys and values) and attention.
        num_heads: attention heads.
        gate: weigh the audio by ``g = sigmoid(W_g LN(v) + b_g)``; False: ``v + A``.
        gate_shape: ``scalar`` (one g per position) or ``channel`` (one per channel).
        gate_form: ``convex`` (``(1 - g) v + g A``) or ``residual`` (``v + g A``).
        gate_init: the gate's initial value ``sigmoid(b_g)`` (``W_g`` keeps its random init).
        attn_dropout: dropout on the attention weights.
        window: odd band of audio points each visual point attends to; None: all of them.
    """

    def __init__(
        self,
        channels: int,
        fusion_dim: int,
        num_heads: int,
        *,
        gate: bool = True,
        gate_shape: str = "scalar",
        gate_form: str = "convex",
        gate_init: float = 0.1,
        attn_dropout: float = 0.0,
        window: int | None = None,
    ) -> None:
        super().__init__()
        check_gate_options("neck mravff", gate_shape, gate_form, gate_init, window, "all")
        self.visual_norm = ChannelLayerNorm(channels)
        self.attn = MaskedCrossAttention(
            channels,
            fusion_dim,
            fusion_dim,
            num_heads,
            out_dim=channels,
            attn_dropout=attn_dropout,
            window=window,
        )
        self.gate_form = gate_form
        self.gate = None
        if gate:
            # MRAV-FF (summary, Method): "a gating scalar computed using a sigmoid on visual
            # features"; a channel gate is our ablation
            self.gate = nn.Conv1d(channels, 1 if gate_shape == "scalar" else channels, 1)
            nn.init.constant_(self.gate.bias, math.log(gate_init / (1.0 - gate_init)))

    def audio_weight(self, visual: Tensor) -> Tensor | None:
        """The gate ``g`` (B, 1 or C, T_l) from the visual level (B, C, T_l); None without one
        (for inspecting the learned gates, the paper's second experiment)."""
        return self._audio_weight(self.visual_norm(visual))

    def _audio_weight(self, normed: Tensor) -> Tensor | None:
        return None if self.gate is None else torch.sigmoid(self.gate(normed))

    def forward(self, visual: Tensor, audio: Tensor, mask: Tensor) -> Tensor:
        """``visual`` (B, C, T_l), ``audio`` (B, d, T_l) projected and pooled, ``mask``
        (B, T_l) -> (B, C, T_l), zero at padded positions."""
        normed = self.visual_norm(visual)
        attended = self.attn(normed, mask, audio, mask)  # (B, C, T_l)
        weight = self._audio_weight(normed)  # (B, 1 or C, T_l)
        if weight is None:
            fused = visual + attended
        elif self.gate_form == "convex":
            # MRAV-FF (summary): the gate sets the relative contribution of audio vs visual
            fused = (1.0 - weight) * visual + weight * attended
        else:
            fused = visual + weight * attended
        return fused * mask[:, None, :].to(visual.dtype)


@NECKS.register("mravff")
class MRAVFFNeck(nn.Module):
    """Hierarchical gated audio-visual cross-attention over the pyramid (MRAV-FF).

    Args:
        channels: backbone width (provided by the detector).
        strides: per-level strides (provided by the detector).
        input_dims: per-modality input widths (provided by the detector); needs ``audio``.
        num_heads: cross-attention heads per level.
        fusion_dim: shared width the audio is projected to (and of the attention); None
            keeps ``channels``.
        gate: gated fusion (True) or the plain residual sum ``v + A`` (False).
        gate_shape: ``scalar`` (one gate per position, the paper's) or ``channel``.
        gate_form: ``convex`` (``(1 - g) v + g A``, the paper's relative weighting) or
            ``residual`` (``v + g A``).
        gate_init: initial gate value ``sigmoid(b_g)``: the audio's share at the start.
        fuse_levels: "all", or one bool per level: fuse audio at that level or pass it
            through unchanged.
        attn_dropout: dropout on the attention weights.
        attention_window: odd number of neighbouring audio points (at the level's resolution)
            a visual point attends to; None (the paper's) attends to the whole video. The
            attention has no positional encoding, so a global one matches audio by content
            anywhere in the video; a band keeps the audio a point sees aligned with it.
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
        gate_shape: str = "scalar",
        gate_form: str = "convex",
        gate_init: float = 0.1,
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
        check_gate_options(
            "neck mravff", gate_shape, gate_form, gate_init, attention_window, fuse_levels
        )
        self.strides = tuple(int(s) for s in strides)
        self.num_levels = len(self.strides)
        if isinstance(fuse_levels, str):
            fuse_levels = [True] * self.num_levels
        if len(fuse_levels) != self.num_levels:
            raise ValueError(
                f"neck mravff: fuse_levels needs one bool per pyramid level ({self.num_levels}), "
                f"got {list(fuse_levels)}"
            )
        self.fuse_levels = tuple(fuse_levels)
        self.out_channels = channels
        width = fusion_dim or channels
        # MRAV-FF (summary, Method): project to the shared width, then max-pool; one
        # projection serves every level (each level's keys and values are its own)
        self.audio_norm = ChannelLayerNorm(input_dims["audio"])
        self.audio_proj = nn.Conv1d(input_dims["audio"], width, 1)
        self.fusions = nn.ModuleDict(
            {
                str(level): GatedAudioVisualFusion(
                    channels,
                    width,
                    num_heads,
                    gate=gate,
                    gate_shape=gate_shape,
                    gate_form=gate_form,
                    gate_init=gate_init,
                    attn_dropout=attn_dropout,
                    window=attention_window,
                )
                for level, fuse in enumerate(self.fuse_levels)
                if fuse
            }
        )
        self.norms = nn.ModuleList(
            ChannelLayerNorm(channels) if layer_norm else nn.Identity() for _ in self.strides
        )

    @classmethod
    def check_config(cls, resolved: dict[str, Any], where: str) -> dict[str, Any]:
        """Refuse bad option values at ``where`` without building (see ``Registry.check``)."""
        check_gate_options(
            where,
            resolved["gate_shape"],
            resolved["gate_form"],
            resolved["gate_init"],
            resolved["attention_window"],
            resolved["fuse_levels"],
        )
        return resolved

    def project_audio(self, audio: Tensor) -> Tensor:
        """(B, D_a, T) raw audio -> (B, fusion_dim, T) in the shared width, before pooling."""
        return self.audio_proj(self.audio_norm(audio))

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
        projected = self.project_audio(inputs["audio"])  # (B, d, T)
        out = []
        for level, (visual, mask) in enumerate(zip(feats, masks, strict=True)):
            if self.fuse_levels[level]:
                audio, _ = pool_audio_to_level(projected, input_mask, self.strides[level])
                visual = self.fusions[str(level)](visual, audio, mask)  # (B, C, T_l)
            out.append(self.norms[level](visual) * mask[:, None, :].to(visual.dtype))
        return out, list(masks)
