"""The LoCo detector (Xing et al., "Locality-aware Cross-modal Correspondence Learning for
Dense Audio-Visual Events Localization", arXiv 2409.07967), registered as ``loco`` in
``DETECTORS``: a :class:`~models.detector_base.TemporalDetector`, so the same training loop
trains it.

Pipeline (Sec. 3.2, Eq. 1): unimodal encoders (``models.loco.encoders``) -> LCC loss on their
outputs (Sec. 3.3, ``models.loco.lcc``) -> cross-modal feature pyramid of CDP blocks (Sec.
3.4, ``models.loco.pyramid``, ``models.loco.cdp``) -> decoder transformer blocks per level ->
classification head (``models.heads``) and class-aware regression head
(``models.loco.heads``). Losses (Sec. 3.5, Eq. 9): sigmoid focal (classification),
generalised IoU (regression, class-aware) and ``lcc_weight * LCC`` (lambda = 0.1); the first
two divided by an EMA of the positive (point, class) pairs (ActionFormer Sec. 3.4, as in
UnAV). Inference: per-class Soft-NMS (``models.postprocessing``). Config groups:
``models.loco.config``. Where the text leaves a choice open, the module doing it says which
we made (LCC's Eq. 5 mean, CDP's size/offset units and window positions, the downsampling,
the class-aware assignment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from models.blocks import ChannelLayerNorm, TransformerBlock
from models.detector_base import DetectorOutput, TemporalDetector
from models.detector_config import HeadConfig, TargetConfig
from models.heads import ClassificationHead
from models.loco.config import LCCConfig, LoCoEncoderConfig, LoCoLossConfig, LoCoPyramidConfig
from models.loco.encoders import UnimodalEncoder
from models.loco.heads import ClassAwareRegressionHead, assign_class_aware
from models.loco.lcc import LocalityCorrespondence
from models.loco.pyramid import CrossModalPyramid
from models.points import make_points
from models.postprocessing import PostProcessingConfig
from models.registry import DETECTORS


@dataclass
class LoCoOutput(DetectorOutput):
    """``DetectorOutput`` with class-aware offsets and the LCC embeddings.

    Attributes:
        offsets: per level (B, T_l, C, 2) ``(left, right)`` per class, stride units.
        audio_embed: (B, T, C // 2) projected audio encoder output (LCC; None without).
        visual_embed: (B, T, C // 2) projected visual encoder output (LCC; None without).
        input_mask: (B, T) bool valid snippets.
    """

    audio_embed: Tensor | None = None
    visual_embed: Tensor | None = None
    input_mask: Tensor | None = None


@DETECTORS.register("loco")
class LoCoDetector(TemporalDetector):
    """LoCo: unimodal encoders + LCC, CDP cross-modal pyramid, class-aware decoder.

    Built from the flat config by :meth:`from_config`: every field of a group below is one
    key of the run's ``model`` config.

    Args:
        input_dims: feature width of every available modality (from the feature store).
        num_classes: number of event classes C (from the annotations).
        encoder: modalities, unimodal encoders and the settings all blocks share.
        pyramid: cross-modal pyramid (CDP) and decoder.
        lcc: the LCC loss.
        head: the classification and class-aware regression heads.
        targets: regression ranges and centre sampling.
        loss: loss weights, focal loss and the loss normaliser (GIoU by default).
        postprocessing: decoding and NMS.
    """

    config_groups: ClassVar[dict[str, type]] = {
        "encoder": LoCoEncoderConfig,
        "pyramid": LoCoPyramidConfig,
        "lcc": LCCConfig,
        "head": HeadConfig,
        "targets": TargetConfig,
        "loss": LoCoLossConfig,
    }

    def __init__(
        self,
        *,
        input_dims: Mapping[str, int],
        num_classes: int,
        encoder: LoCoEncoderConfig | None = None,
        pyramid: LoCoPyramidConfig | None = None,
        lcc: LCCConfig | None = None,
        head: HeadConfig | None = None,
        targets: TargetConfig | None = None,
        loss: LoCoLossConfig | None = None,
        postprocessing: PostProcessingConfig | None = None,
    ) -> None:
        encoder, pyramid = encoder or LoCoEncoderConfig(), pyramid or LoCoPyramidConfig()
        lcc, head = lcc or LCCConfig(), head or HeadConfig()
        super().__init__(
            num_classes=num_classes,
            targets=targets or TargetConfig(),
            loss=loss or LoCoLossConfig(),
            postprocessing=postprocessing or PostProcessingConfig(),
        )
        self.modalities = encoder.modalities
        self.input_modalities = self.modalities
        absent = [m for m in self.modalities if m not in input_dims]
        if absent:
            raise ValueError(
                f"loco reads modalities {absent} that the features lack (input_dims: "
                f"{', '.join(sorted(input_dims))}); extract them"
            )
        embed_dim, local_window = encoder.embed_dim, encoder.local_window
        num_levels = 1 + pyramid.num_pyramid_blocks
        self.strides = tuple(2**level for level in range(num_levels))
        self.max_stride = self.strides[-1]
        blocks = {
            "num_heads": encoder.num_heads,
            "mlp_ratio": encoder.mlp_ratio,
            "dropout": encoder.dropout,
            "path_drop": encoder.path_drop,
        }
        self.encoders = nn.ModuleDict(
            {
                m: UnimodalEncoder(
                    input_dims[m],
                    embed_dim,
                    num_embed_convs=encoder.num_embed_convs,
                    embed_kernel_size=encoder.embed_kernel_size,
                    num_blocks=encoder.num_encoder_blocks,
                    attn_window=local_window,
                    **blocks,
                )
                for m in self.modalities
            }
        )
        self.lcc_weight = lcc.lcc_weight
        # without LCC (lambda = 0) neither its projection heads nor its parameters exist
        self.lcc: LocalityCorrespondence | None = None
        if lcc.lcc_weight > 0:
            self.lcc = LocalityCorrespondence(
                embed_dim,
                lcc.lcc_target,
                lcc.lcc_sigma,
                lcc.lcc_epsilon,
                lcc.lcc_temperature,
                lcc.lcc_loss_form,
            )
        self.pyramid = CrossModalPyramid(
            embed_dim,
            num_levels,
            cross_attention=pyramid.cross_attention,
            window_size=pyramid.cdp_window,
            layers_per_level=pyramid.cross_layers_per_level,
            downsample=pyramid.pyramid_downsample,
            local_window=local_window,
            **blocks,
        )
        self.decoder = nn.ModuleList(
            nn.ModuleList(
                TransformerBlock(
                    embed_dim,
                    encoder.num_heads,
                    local_window,
                    False,
                    encoder.mlp_ratio,
                    encoder.dropout,
                    encoder.path_drop,
                )
                for _ in range(pyramid.num_decoder_blocks)
            )
            for _ in range(num_levels)
        )
        self.decoder_norms = nn.ModuleList(ChannelLayerNorm(embed_dim) for _ in range(num_levels))
        self.regression_ranges = self.target_config.ranges_for(num_levels)
        self.cls_head = ClassificationHead(
            embed_dim,
            head.head_dim,
            num_classes,
            head.num_head_convs,
            head.head_kernel_size,
            head.cls_prior_prob,
        )
        self.reg_head = ClassAwareRegressionHead(
            embed_dim,
            head.head_dim,
            num_classes,
            num_levels,
            head.num_head_convs,
            head.head_kernel_size,
        )

    @classmethod
    def num_levels(cls, groups: Mapping[str, Any]) -> int:
        return 1 + groups["pyramid"].num_pyramid_blocks

    def assign_targets(
        self, points: Tensor, segments: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Class-aware targets ``(cls (P, C), reg (P, C, 2))`` (``models.loco.heads``)."""
        return assign_class_aware(
            points, segments, labels, self.num_classes, self.target_config.center_sample_radius
        )

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> LoCoOutput:
        """Per-level logits (B, T_l, C) and class-aware offsets (B, T_l, C, 2).

        Args:
            inputs: per modality (B, T, D_m) snippet features.
            mask: (B, T) bool, a prefix of each row; T a multiple of ``max_stride``.
        """
        self.check_inputs(inputs, mask)
        dtype = self.loss_normalizer.dtype
        audio_name, visual_name = self.modalities
        audio = self.encoders[audio_name](inputs[audio_name].to(dtype).transpose(1, 2), mask)
        visual = self.encoders[visual_name](inputs[visual_name].to(dtype).transpose(1, 2), mask)
        audio_embed = visual_embed = None
        if self.lcc is not None:  # LoCo Sec. 3.3: LCC on the unimodal encoder outputs
            audio_embed, visual_embed = self.lcc.embed(audio, visual)  # (B, T, C // 2) each
        feats, masks = self.pyramid(audio, visual, mask)
        decoded = []
        for blocks, norm, x, level_mask in zip(
            self.decoder, self.decoder_norms, feats, masks, strict=True
        ):
            for block in blocks:
                x, _ = block(x, level_mask)
            decoded.append(norm(x) * level_mask[:, None, :].to(x.dtype))
        points = make_points(
            [x.shape[-1] for x in decoded], self.strides, self.regression_ranges, mask.device
        )
        return LoCoOutput(
            cls_logits=self.cls_head(decoded, masks),
            offsets=self.reg_head(decoded, masks),
            masks=list(masks),
            points=points,
            audio_embed=audio_embed,
            visual_embed=visual_embed,
            input_mask=mask,
        )

    def loss(
        self, output: LoCoOutput, gt_segments: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> dict[str, Tensor]:
        """The base class's focal and (class-aware) IoU losses plus the LCC loss.

        Args:
            output: this model's ``forward`` output.
            gt_segments: per video (N_b, 2) ``(start, end)`` in grid units; N_b may be 0.
            gt_labels: per video (N_b,) long in [0, C).

        Returns:
            ``{"cls", "reg", "lcc", "loss": cls + loss_weight_reg * reg + lcc_weight * lcc}``.
        """
        losses = super().loss(output, gt_segments, gt_labels)
        if self.lcc is not None and output.audio_embed is not None:
            lcc = self.lcc(output.audio_embed, output.visual_embed, output.input_mask)
        else:
            lcc = torch.cat(output.cls_logits, dim=1).sum() * 0.0  # keeps the graph connected
        total = losses["loss"] + self.lcc_weight * lcc  # LoCo Eq. (9)
        return {"cls": losses["cls"], "reg": losses["reg"], "lcc": lcc, "loss": total}
