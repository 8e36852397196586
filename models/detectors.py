"""The ActionFormer detector (contract: ``DETECTORS`` in ``models.registry``).

``actionformer``: the single-stage anchor-free detector of ActionFormer (Zhang et al., ECCV
2022, arXiv 2202.07925) with the early audio-visual fusion of the Perception Test 2023
temporal-sound-localisation 2nd-place solution (arXiv 2407.02318): per-snippet modality
features are concatenated (``models.embeddings``), encoded by a multi-scale local
transformer (``models.backbones``), passed through a neck (``models.necks``) and decoded
by shared heads into per-point class scores and boundary distances (``models.heads``).
Losses, the loss normaliser and decoding are :class:`~models.detector_base.TemporalDetector`'s;
grid and point conventions: ``models.points``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from models.detector_base import DetectorOutput, TemporalDetector
from models.detector_config import HeadConfig, LossConfig, TargetConfig
from models.embeddings import EarlyFusionEmbedding
from models.heads import ClassificationHead, RegressionHead
from models.points import make_points
from models.postprocessing import PostProcessingConfig
from models.registry import BACKBONES, DETECTORS, NECKS

NECK_DERIVED_KEYS = ("channels", "strides", "input_dims")  # the detector passes them to a neck


def build_detector(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a registered detector from the flat config ``{"name": ..., **kwargs}``."""
    return DETECTORS.build(cfg)


@dataclass(frozen=True)
class FusionConfig:
    """Which modalities the detector reads and where it fuses them.

    Args:
        modalities: modalities fused early (concatenated per snippet), in concatenation
            order; one for unimodal.
        modality_proj_dim: None, or a width (int or per-modality mapping) each modality is
            projected to before concatenation.
        neck: neck config ``{"name": ..., **kwargs}`` (``NECKS``; e.g. ``mravff`` fuses audio
            at every pyramid level); None means ``{"name": "identity"}``.
    """

    modalities: Sequence[str] = ("audio", "visual")
    modality_proj_dim: int | Mapping[str, int] | None = None
    neck: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.modalities, str):
            raise ValueError(f"modalities must be a list, e.g. [{self.modalities!r}]")
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if not self.modalities:
            raise ValueError("modalities is empty; name at least one, e.g. ['audio']")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities {list(self.modalities)} name a modality twice")


@dataclass(frozen=True)
class BackboneConfig:
    """ActionFormer's conv + transformer backbone (``conv_transformer`` in ``BACKBONES``).

    Args:
        embed_dim: width of the backbone.
        embed_kernel_size: kernel of the embedding convolutions (odd).
        num_embed_convs: embedding convolutions (>= 1).
        num_stem_blocks: full-resolution transformer blocks (>= 0).
        num_pyramid_blocks: downsampling transformer blocks (levels = 1 + this, >= 0).
        attn_window: local attention window (odd); one int or one per level.
        num_heads: attention heads.
        mlp_ratio: transformer MLP width / embed_dim.
        dropout: dropout in the transformer blocks.
        path_drop: stochastic-depth rate.
    """

    embed_dim: int = 512
    embed_kernel_size: int = 3
    num_embed_convs: int = 2
    num_stem_blocks: int = 2
    num_pyramid_blocks: int = 5
    attn_window: int | Sequence[int] = 11
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    path_drop: float = 0.1

    def __post_init__(self) -> None:
        if self.num_embed_convs < 1 or self.num_stem_blocks < 0 or self.num_pyramid_blocks < 0:
            raise ValueError(
                "num_embed_convs must be >= 1 and num_stem_blocks, num_pyramid_blocks >= 0; "
                f"got {self.num_embed_convs}, {self.num_stem_blocks}, {self.num_pyramid_blocks}"
            )
        if self.embed_kernel_size % 2 != 1:
            raise ValueError(f"embed_kernel_size must be odd, got {self.embed_kernel_size}")
        num_levels = 1 + self.num_pyramid_blocks
        if not isinstance(self.attn_window, int) and len(self.attn_window) != num_levels:
            raise ValueError(
                f"attn_window lists {len(self.attn_window)} windows but the pyramid has "
                f"{num_levels} levels (1 + num_pyramid_blocks); give one int or one per level"
            )

    def registry_config(self) -> dict[str, Any]:
        """The ``BACKBONES`` config of this backbone."""
        return {
            "name": "conv_transformer",
            **{key: getattr(self, key) for key in self.__dataclass_fields__},
        }


@dataclass(frozen=True)
class ActionFormerLossConfig(LossConfig):
    """:class:`~models.detector_config.LossConfig` plus ActionFormer's label smoothing.

    Args:
        label_smoothing: classification target smoothing, in [0, 1): targets become
            ``y (1 - s) + s / (C + 1)``.
    """

    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@DETECTORS.register("actionformer")
class ActionFormerDetector(TemporalDetector):
    """ActionFormer with early fusion of the snippet features of ``fusion.modalities``.

    Built from the flat config by :meth:`from_config`: every field of a group below is one
    key of the run's ``model`` config.

    Args:
        input_dims: feature width of every available modality (from the feature store).
        num_classes: number of event classes C (from the annotations).
        fusion: modalities, their projection and the neck.
        backbone: the conv + transformer backbone.
        head: the classification and regression heads.
        targets: regression ranges and centre sampling.
        loss: loss weights, focal loss, label smoothing and the loss normaliser.
        postprocessing: decoding and NMS.
    """

    config_groups: ClassVar[dict[str, type]] = {
        "fusion": FusionConfig,
        "backbone": BackboneConfig,
        "head": HeadConfig,
        "targets": TargetConfig,
        "loss": ActionFormerLossConfig,
    }

    def __init__(
        self,
        *,
        input_dims: Mapping[str, int],
        num_classes: int,
        fusion: FusionConfig | None = None,
        backbone: BackboneConfig | None = None,
        head: HeadConfig | None = None,
        targets: TargetConfig | None = None,
        loss: ActionFormerLossConfig | None = None,
        postprocessing: PostProcessingConfig | None = None,
    ) -> None:
        fusion, backbone, head = (
            fusion or FusionConfig(),
            backbone or BackboneConfig(),
            head or HeadConfig(),
        )
        loss = loss or ActionFormerLossConfig()
        super().__init__(
            num_classes=num_classes,
            targets=targets or TargetConfig(),
            loss=loss,
            postprocessing=postprocessing or PostProcessingConfig(),
        )
        self.label_smoothing = loss.label_smoothing
        self.modalities = fusion.modalities
        self.embedding = EarlyFusionEmbedding(input_dims, self.modalities, fusion.modality_proj_dim)
        self.backbone = BACKBONES.build(
            backbone.registry_config(), in_channels=self.embedding.out_channels
        )
        self.strides: tuple[int, ...] = tuple(self.backbone.strides)
        self.max_stride: int = int(self.backbone.max_stride)
        self.neck = NECKS.build(
            dict(fusion.neck) if fusion.neck is not None else {"name": "identity"},
            channels=self.backbone.out_channels,
            strides=self.strides,
            input_dims=dict(input_dims),
        )
        extra = [m for m in self.neck.required_modalities if m not in self.modalities]
        absent = [m for m in extra if m not in input_dims]
        if absent:
            raise ValueError(
                f"neck {self.neck.__class__.__name__} reads modalities {absent} that input_dims "
                f"({', '.join(sorted(input_dims))}) lacks; extract them or choose another neck"
            )
        self.input_modalities = self.modalities + tuple(extra)
        num_levels = len(self.strides)
        self.regression_ranges = self.target_config.ranges_for(num_levels)
        self.cls_head = ClassificationHead(
            self.neck.out_channels,
            head.head_dim,
            num_classes,
            head.num_head_convs,
            head.head_kernel_size,
            head.cls_prior_prob,
        )
        self.reg_head = RegressionHead(
            self.neck.out_channels,
            head.head_dim,
            num_levels,
            head.num_head_convs,
            head.head_kernel_size,
        )

    @classmethod
    def num_levels(cls, groups: Mapping[str, Any]) -> int:
        return 1 + groups["backbone"].num_pyramid_blocks

    @classmethod
    def check_config(cls, resolved: dict[str, Any], where: str) -> dict[str, Any]:
        """See :meth:`TemporalDetector.check_config`; also checks the nested ``neck`` config
        and fills in its defaults (None: the ``identity`` neck)."""
        resolved = super().check_config(resolved, where)
        neck = {"name": "identity"} if resolved["neck"] is None else resolved["neck"]
        resolved["neck"] = NECKS.check(neck, NECK_DERIVED_KEYS, f"{where}.neck")
        return resolved

    def classification_targets(self, cls_targets: Tensor) -> Tensor:
        """ActionFormer's label smoothing of the (N, C) targets."""
        smoothing = self.label_smoothing
        return cls_targets * (1 - smoothing) + smoothing / (self.num_classes + 1)

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> DetectorOutput:
        """Per-level logits and offsets.

        Args:
            inputs: per modality (B, T, D_m) snippet features.
            mask: (B, T) bool, True for valid snippets (a prefix of each row); T must be a
                multiple of ``max_stride``.
        """
        self.check_inputs(inputs, mask)
        dtype = self.loss_normalizer.dtype
        channel_first = {
            m: inputs[m].to(dtype).transpose(1, 2)  # (B, D_m, T)
            for m in self.input_modalities
        }
        fused = self.embedding(channel_first, mask)  # (B, C_in, T)
        feats, masks = self.backbone(fused, mask)
        feats, masks = self.neck(feats, masks, channel_first, mask)
        points = make_points(
            [x.shape[-1] for x in feats], self.strides, self.regression_ranges, mask.device
        )
        return DetectorOutput(
            cls_logits=self.cls_head(feats, masks),
            offsets=self.reg_head(feats, masks),
            masks=list(masks),
            points=points,
        )
