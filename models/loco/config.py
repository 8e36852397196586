"""LoCo's config groups (arXiv 2409.07967): every field is one key of a run's flat ``model``
config (``models.detector_config``); building a group checks its values, no module built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.detector_config import LossConfig
from models.loco.lcc import LCC_TARGETS
from models.loco.pyramid import CROSS_ATTENTIONS


@dataclass(frozen=True)
class LoCoEncoderConfig:
    """The two unimodal encoders, and the transformer settings every LoCo block shares.

    Args:
        modalities: the (audio, visual) modality names, in that order.
        embed_dim: width C of encoders, pyramid and decoder (even: LCC uses C // 2).
        num_heads: attention heads everywhere.
        num_embed_convs: embedding convolutions per encoder (>= 1).
        embed_kernel_size: their kernel size (odd).
        num_encoder_blocks: transformer blocks per unimodal encoder (>= 0).
        local_window: local self-attention window of encoder, downsampling and decoder
            blocks (odd).
        mlp_ratio: MLP width multiple of every block.
        dropout: dropout in the blocks.
        path_drop: stochastic depth of the self-attention blocks.
    """

    modalities: Sequence[str] = ("audio", "visual")
    embed_dim: int = 512
    num_heads: int = 4
    num_embed_convs: int = 2
    embed_kernel_size: int = 3
    num_encoder_blocks: int = 2
    local_window: int = 9
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    path_drop: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.modalities, str):
            raise ValueError(f"modalities must be a list, e.g. [audio, visual]: {self.modalities}")
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if len(self.modalities) != 2 or len(set(self.modalities)) != 2:
            raise ValueError(f"loco needs two modalities (audio, visual), got {self.modalities}")
        if self.embed_dim % 2 != 0:
            raise ValueError(f"embed_dim must be even (LCC uses embed_dim // 2): {self.embed_dim}")
        if self.num_embed_convs < 1 or self.num_encoder_blocks < 0:
            raise ValueError(
                "num_embed_convs must be >= 1 and num_encoder_blocks >= 0; got "
                f"{self.num_embed_convs}, {self.num_encoder_blocks}"
            )
        if self.embed_kernel_size % 2 != 1:
            raise ValueError(f"embed_kernel_size must be odd, got {self.embed_kernel_size}")


@dataclass(frozen=True)
class LoCoPyramidConfig:
    """The cross-modal feature pyramid with CDP (``models.loco.pyramid``) and the decoder.

    Args:
        num_pyramid_blocks: downsamplings; levels = 1 + this (>= 0).
        cross_attention: "cdp" (LoCo), "fixed_window" or "global" (ablations).
        cdp_window: base window w of the window variants.
        shifted_windows: alternate window shifts 0 and w // 2 between cross-modal layers.
        cross_layers_per_level: cross-modal layers per direction and level (>= 1).
        num_decoder_blocks: transformer blocks per level in the decoder.
    """

    num_pyramid_blocks: int = 5
    cross_attention: str = "cdp"
    cdp_window: int = 8
    shifted_windows: bool = True
    cross_layers_per_level: int = 1
    num_decoder_blocks: int = 1

    def __post_init__(self) -> None:
        if self.cross_attention not in CROSS_ATTENTIONS:
            raise ValueError(
                f"cross_attention must be one of {', '.join(CROSS_ATTENTIONS)}, "
                f"got {self.cross_attention!r}"
            )
        if self.num_pyramid_blocks < 0 or self.cross_layers_per_level < 1:
            raise ValueError(
                "num_pyramid_blocks must be >= 0 and cross_layers_per_level >= 1; got "
                f"{self.num_pyramid_blocks}, {self.cross_layers_per_level}"
            )


@dataclass(frozen=True)
class LCCConfig:
    """The locality-aware correspondence correction loss (``models.loco.lcc``).

    Args:
        lcc_weight: weight of the LCC loss (>= 0; 0 disables it).
        lcc_target: "learnable_gaussian", "fixed_gaussian", "smoothed" or "diagonal".
        lcc_sigma: initial / fixed Gaussian standard deviation, snippets (> 0).
        lcc_epsilon: label-smoothing mass of the "smoothed" target, in [0, 1).
        lcc_temperature: initial (learnable) temperature of the LCC logits (> 0).
    """

    lcc_weight: float = 0.1
    lcc_target: str = "learnable_gaussian"
    lcc_sigma: float = 1.0
    lcc_epsilon: float = 0.1
    lcc_temperature: float = 0.07

    def __post_init__(self) -> None:
        if self.lcc_target not in LCC_TARGETS:
            raise ValueError(
                f"lcc_target must be one of {', '.join(LCC_TARGETS)}, got {self.lcc_target!r}"
            )
        if self.lcc_weight < 0:
            raise ValueError(f"lcc_weight must be >= 0, got {self.lcc_weight}")
        if self.lcc_sigma <= 0 or self.lcc_temperature <= 0 or not 0.0 <= self.lcc_epsilon < 1.0:
            raise ValueError("lcc_sigma and lcc_temperature must be > 0, lcc_epsilon in [0, 1)")


@dataclass(frozen=True)
class LoCoLossConfig(LossConfig):
    """:class:`~models.detector_config.LossConfig` with LoCo's generalised IoU regression loss
    (``reg_loss: giou``) as the default."""

    reg_loss: str = "giou"
