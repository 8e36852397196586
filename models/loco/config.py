"""LoCo's config groups (arXiv 2409.07967): every field is one key of a run's flat ``model``
config (``models.detector_config``); building a group checks its values, no module built.

Defaults are the paper's settings where its text gives them: the loss weight lambda = 0.1
(Eq. 9), focal + generalised IoU losses (Sec. 3.5), the learnable Gaussian LCC target
(Sec. 3.3), CDP (Sec. 3.4), a downsampling ratio of 2 between levels, three-layer heads
(Sec. 3.2). Most numbers of Sec. 4.2 did not survive the text we have (embedding width,
block counts, initial sigma, head count, base window size, maximum sequence length): there
the defaults are UniAV's (arXiv 2404.03179; LoCo follows its setup on UnAV-100: 512
channels, 4 heads, 6 pyramid levels, 512-wide heads), or ours where UniAV has no
counterpart (initial sigma 1 snippet, base window 8, one cross-modal layer per level and
direction, max-pooling downsampling), and say so below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.detector_config import LossConfig
from models.loco.lcc import LCC_LOSS_FORMS, LCC_TARGETS, TEMPERATURE_RANGE
from models.loco.pyramid import CROSS_ATTENTIONS, DOWNSAMPLINGS


@dataclass(frozen=True)
class LoCoEncoderConfig:
    """The two unimodal encoders (Sec. 3.2), and the transformer settings every block shares.

    Args:
        modalities: the (audio, visual) modality names, in that order.
        embed_dim: width C of encoders, pyramid and decoder (even: LCC uses C // 2);
            UniAV's 512 (the paper's number is lost).
        num_heads: attention heads everywhere; UniAV's 4 (the paper's number is lost).
        num_embed_convs: embedding convolutions per encoder (>= 1); UniAV's 2.
        embed_kernel_size: their kernel size (odd); UniAV's 3.
        num_encoder_blocks: transformer blocks per unimodal encoder (>= 0); ours 2 (the
            paper's number is lost).
        local_window: local self-attention window of encoder, decoder and "transformer"
            downsampling blocks (odd).
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
    """The cross-modal feature pyramid with CDP (``models.loco.pyramid``, Sec. 3.2, 3.4) and
    the decoder.

    Args:
        num_pyramid_blocks: downsamplings; levels = 1 + this (>= 0); UniAV's 5 (6 levels).
        cross_attention: "cdp" (LoCo), "fixed_window", "global" or "none" (Table 2(c), 3).
        cdp_window: base window w of "cdp" and "fixed_window" (>= 1); ours 8 (the paper's
            choice, Table 2(d), is lost).
        pyramid_downsample: "max_pool", "depthwise_conv" or "transformer": the stride-2
            downsampling a CDP block starts with (not specified by the text).
        cross_layers_per_level: cross-modal layers per direction and level (>= 1).
        num_decoder_blocks: transformer blocks per level in the decoder (>= 0).
    """

    num_pyramid_blocks: int = 5
    cross_attention: str = "cdp"
    cdp_window: int = 8
    pyramid_downsample: str = "max_pool"
    cross_layers_per_level: int = 1
    num_decoder_blocks: int = 1

    def __post_init__(self) -> None:
        if self.cross_attention not in CROSS_ATTENTIONS:
            raise ValueError(
                f"cross_attention must be one of {', '.join(CROSS_ATTENTIONS)}, "
                f"got {self.cross_attention!r}"
            )
        if self.pyramid_downsample not in DOWNSAMPLINGS:
            raise ValueError(
                f"pyramid_downsample must be one of {', '.join(DOWNSAMPLINGS)}, "
                f"got {self.pyramid_downsample!r}"
            )
        if self.cdp_window < 1 or self.num_decoder_blocks < 0:
            raise ValueError(
                "cdp_window must be >= 1 and num_decoder_blocks >= 0; got "
                f"{self.cdp_window}, {self.num_decoder_blocks}"
            )
        if self.num_pyramid_blocks < 0 or self.cross_layers_per_level < 1:
            raise ValueError(
                "num_pyramid_blocks must be >= 0 and cross_layers_per_level >= 1; got "
                f"{self.num_pyramid_blocks}, {self.cross_layers_per_level}"
            )


@dataclass(frozen=True)
class LCCConfig:
    """The Locality-aware Correspondence Correction loss (``models.loco.lcc``, Sec. 3.3).

    Args:
        lcc_weight: lambda of Eq. (9), the paper's 0.1 (>= 0; 0 removes LCC and its
            projection heads: Table 2(a), 3 rows without LCC).
        lcc_target: "learnable_gaussian" (LoCo), "fixed_gaussian", "smoothed" or
            "diagonal" (Table 2(b)).
        lcc_sigma: initial / fixed Gaussian standard deviation in snippets (> 0); ours 1
            (the paper's initial value is lost).
        lcc_epsilon: label-smoothing mass of the "smoothed" target, in [0, 1); ours 0.1.
        lcc_temperature: initial learnable temperature, ALBEF's 0.07 (Eq. 2 follows ALBEF),
            in [0.001, 0.5].
        lcc_loss_form: "cross_entropy" (Eq. 2, soft-target cross-entropy) or "kl" (minus
            the targets' entropy; see ``models.loco.lcc`` for what each does to sigma).
    """

    lcc_weight: float = 0.1
    lcc_target: str = "learnable_gaussian"
    lcc_sigma: float = 1.0
    lcc_epsilon: float = 0.1
    lcc_temperature: float = 0.07
    lcc_loss_form: str = "cross_entropy"

    def __post_init__(self) -> None:
        if self.lcc_target not in LCC_TARGETS:
            raise ValueError(
                f"lcc_target must be one of {', '.join(LCC_TARGETS)}, got {self.lcc_target!r}"
            )
        if self.lcc_loss_form not in LCC_LOSS_FORMS:
            raise ValueError(
                f"lcc_loss_form must be one of {', '.join(LCC_LOSS_FORMS)}, "
                f"got {self.lcc_loss_form!r}"
            )
        if self.lcc_weight < 0:
            raise ValueError(f"lcc_weight must be >= 0, got {self.lcc_weight}")
        low, high = TEMPERATURE_RANGE
        if (
            self.lcc_sigma <= 0
            or not low <= self.lcc_temperature <= high
            or not 0.0 <= self.lcc_epsilon < 1.0
        ):
            raise ValueError(
                f"lcc_sigma must be > 0, lcc_temperature in [{low}, {high}], lcc_epsilon in [0, 1)"
            )


@dataclass(frozen=True)
class LoCoLossConfig(LossConfig):
    """:class:`~models.detector_config.LossConfig` with LoCo's generalised IoU regression loss
    (``reg_loss: giou``, Sec. 3.5) as the default; with ``loss_weight_reg`` 1 the total is
    Eq. (9), ``L_cls + L_reg + lambda * L_LCC``."""

    reg_loss: str = "giou"
