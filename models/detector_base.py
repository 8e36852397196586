"""What every temporal detector shares (contract: ``DETECTORS`` in ``models.registry``).

:class:`TemporalDetector` owns the input check, the loss table (sigmoid focal classification
loss plus a 1-D IoU regression loss), the loss normaliser (ActionFormer, arXiv 2202.07925,
Sec. 3.4: losses are divided by an EMA of the positives per batch), ``predict`` with its
post-processing (``models.postprocessing``) and the map from the flat user config onto the
constructor's config groups (``models.detector_config``). A new detector is a subclass that
builds its modules and implements ``forward``, plus a ``DETECTORS`` registration.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from models.detector_config import (
    REG_LOSSES,
    LossConfig,
    TargetConfig,
    flat_signature,
    key_owners,
    split_flat_config,
)
from models.losses import assign_labels, check_targets, focal_loss
from models.postprocessing import PostProcessingConfig, decode_candidates, nms_per_class


@dataclass
class DetectorOutput:
    """Raw detector outputs for a batch.

    Attributes:
        cls_logits: per level (B, T_l, C) class logits.
        offsets: per level (B, T_l, 2) non-negative ``(left, right)`` in units of the
            level's stride; (B, T_l, C, 2) for class-aware regression (one pair per class).
        masks: per level (B, T_l) bool, True where the point is on a valid snippet.
        points: (sum T_l, 4) rows ``[t, range_lo, range_hi, stride]``, ``t`` in grid units.
    """

    cls_logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    points: Tensor


def check_detector_inputs(
    inputs: Mapping[str, Tensor],
    mask: Tensor,
    input_modalities: Sequence[str],
    max_stride: int,
) -> None:
    """Refuse a batch a detector cannot read, saying what is wrong.

    Args:
        inputs: per modality (B, T, D_m).
        mask: (B, T) bool, True on a prefix of each row (the valid snippets).
        input_modalities: modalities the detector reads.
        max_stride: T must be a multiple of it.
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a (B, T) bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    batch, length = mask.shape
    if length % max_stride != 0:
        raise ValueError(
            f"sequence length {length} is not a multiple of max_stride {max_stride}; "
            "pad the batch (mask False) to a multiple"
        )
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError("mask must be True on a prefix of each row (valid snippets first)")
    for modality in input_modalities:
        if modality not in inputs:
            raise ValueError(
                f"input {modality!r} missing; the model reads {list(input_modalities)}"
            )
        if inputs[modality].shape[:2] != (batch, length):
            raise ValueError(
                f"input {modality!r} has shape {tuple(inputs[modality].shape)}, expected "
                f"({batch}, {length}, D) like the mask"
            )


class TemporalDetector(nn.Module):
    """Base of the single-stage temporal detectors: shared losses, normaliser and decoding.

    A subclass calls this constructor first, then builds its modules (their creation order
    fixes the random initialisation) and sets ``modalities``, ``input_modalities``,
    ``strides``, ``max_stride`` and ``regression_ranges`` (``target_config.ranges_for``); its
    ``forward`` calls :meth:`check_inputs` and returns a :class:`DetectorOutput`.

    Class attributes:
        config_groups: constructor keyword -> frozen dataclass whose fields are the flat
            config keys of that group (``models.detector_config``); it includes this
            constructor's ``targets`` and ``loss`` groups. A subclass also defines the
            classmethod :meth:`num_levels` (pyramid levels, for the regression-range check).

    Args:
        num_classes: number of event classes C (from the annotations).
        targets: centre sampling and regression ranges.
        loss: loss weights, focal-loss settings and the normaliser's EMA.
        postprocessing: decoding and NMS settings.
    """

    config_groups: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = sorted({"targets", "loss"} - set(cls.config_groups))
        if missing:
            raise TypeError(f"{cls.__qualname__}.config_groups lacks the group(s) {missing}")
        key_owners(cls.config_groups)  # one group per flat key

    def __init__(
        self,
        *,
        num_classes: int,
        targets: TargetConfig,
        loss: LossConfig,
        postprocessing: PostProcessingConfig,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.target_config = targets
        self.loss_config = loss
        self.reg_loss_fn = REG_LOSSES[loss.reg_loss]
        # ActionFormer Sec. 3.4: losses are divided by an EMA of the positive count
        self.register_buffer("loss_normalizer", torch.tensor(float(loss.init_loss_normalizer)))
        self.postprocessing = postprocessing

    # --- config -----------------------------------------------------------------------------

    @classmethod
    def config_signature(cls) -> inspect.Signature:
        """The flat config keys :meth:`from_config` reads, with their defaults (the
        registry checks keys against it, as against a constructor's signature)."""
        return flat_signature(cls.config_groups)

    @classmethod
    def groups_from_config(cls, cfg: Mapping[str, Any], where: str = "model") -> dict[str, Any]:
        """The constructor's config groups built from the flat config at ``where``, values
        checked, no module built.

        Raises:
            ValueError: an unknown key or a bad value; the message names ``where`` and the key.
        """
        groups = split_flat_config(cfg, cls.config_groups, where)
        try:
            groups["targets"].ranges_for(cls.num_levels(groups))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        return groups

    @classmethod
    def num_levels(cls, groups: Mapping[str, Any]) -> int:
        """Pyramid levels of the detector the groups describe."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Self:
        """Build from the flat config: the groups' keys plus ``input_dims``, ``num_classes``."""
        return cls(
            input_dims=cfg["input_dims"],
            num_classes=cfg["num_classes"],
            **cls.groups_from_config(cfg),
        )

    @classmethod
    def check_config(cls, resolved: dict[str, Any], where: str) -> dict[str, Any]:
        """Check the values of the flat config at ``where`` whose keys ``Registry.check`` has
        checked and whose defaults it filled; returns it with ``postprocessing`` filled in."""
        groups = cls.groups_from_config(resolved, where)
        return {**resolved, "postprocessing": dataclasses.asdict(groups["postprocessing"])}

    # --- training ---------------------------------------------------------------------------

    def check_inputs(self, inputs: Mapping[str, Tensor], mask: Tensor) -> None:
        """Refuse a batch this detector cannot read (see :func:`check_detector_inputs`)."""
        check_detector_inputs(inputs, mask, self.input_modalities, self.max_stride)

    def assign_targets(
        self, points: Tensor, segments: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One video's targets: ``(cls (P, C), reg (P, 2))`` in stride units
        (``models.losses.assign_labels``); a class-aware detector returns reg (P, C, 2)."""
        return assign_labels(
            points, segments, labels, self.num_classes, self.target_config.center_sample_radius
        )

    def classification_targets(self, cls_targets: Tensor) -> Tensor:
        """The focal loss's targets (N, C) from the assigned ones; identity here."""
        return cls_targets

    def update_loss_normalizer(self, num_positive: int) -> float:
        """ActionFormer Sec. 3.4: in training mode, ``n <- m n + (1 - m) max(num_positive,
        1)`` with momentum ``m``; returns the (updated) normaliser."""
        if self.training:
            with torch.no_grad():
                momentum = self.loss_config.loss_normalizer_momentum
                self.loss_normalizer.mul_(momentum).add_((1 - momentum) * max(num_positive, 1))
        return self.loss_normalizer.item()

    def loss(
        self, output: DetectorOutput, gt_segments: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> dict[str, Tensor]:
        """Focal classification loss and IoU regression loss, each summed and divided by
        the EMA of positives (updated in training mode only). A positive is a valid point
        with an assigned event, or, for class-aware regression, a (point, class) pair, which
        then regresses with its own class's offsets.

        Args:
            output: this model's ``forward`` output.
            gt_segments: per video (N_b, 2) ``(start, end)`` in grid units; N_b may be 0.
            gt_labels: per video (N_b,) long in [0, C).

        Returns:
            ``{"cls": ..., "reg": ..., "loss": cls + loss_weight_reg * reg}``.
        """
        batch = output.cls_logits[0].shape[0]
        check_targets(gt_segments, gt_labels, batch, self.num_classes)
        device = output.points.device
        targets = [
            self.assign_targets(output.points, segments.to(device), labels.to(device))
            for segments, labels in zip(gt_segments, gt_labels, strict=True)
        ]
        cls_targets = torch.stack([t[0] for t in targets])  # (B, P, C)
        reg_targets = torch.stack([t[1] for t in targets])  # (B, P, 2) or (B, P, C, 2)
        valid = torch.cat(output.masks, dim=1)  # (B, P)
        logits = torch.cat(output.cls_logits, dim=1)  # (B, P, C)
        offsets = torch.cat(output.offsets, dim=1)  # like reg_targets
        if reg_targets.dim() == 4:  # class-aware: positive (point, class) pairs
            positive = (cls_targets > 0) & valid[..., None]  # (B, P, C)
        else:
            positive = (cls_targets.sum(dim=-1) > 0) & valid  # (B, P)
        num_positive = int(positive.sum())
        normalizer = self.update_loss_normalizer(num_positive)
        cfg = self.loss_config
        cls_loss = focal_loss(
            logits[valid],
            self.classification_targets(cls_targets[valid]),
            cfg.focal_alpha,
            cfg.focal_gamma,
        )
        cls_loss = cls_loss / normalizer
        if num_positive == 0:
            reg_loss = offsets.sum() * 0.0  # keeps the graph connected
        else:
            reg_loss = self.reg_loss_fn(offsets[positive], reg_targets[positive]).sum()
            reg_loss = reg_loss / normalizer
        return {"cls": cls_loss, "reg": reg_loss, "loss": cls_loss + cfg.loss_weight_reg * reg_loss}

    # --- inference --------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, output: DetectorOutput) -> list[dict[str, Tensor]]:
        """Post-processed detections per video, on the CPU.

        Returns:
            per video ``{"segments": (K, 2) grid units within the covered span (see
            ``PostProcessingConfig.boundary_margin``),
            "scores": (K,) decreasing, "labels": (K,) long}``, K <= ``max_detections``.
        """
        level_sizes = [logits.shape[1] for logits in output.cls_logits]
        level_points = [p.detach().cpu() for p in output.points.split(level_sizes)]
        first_stride = float(output.points[0, 3])
        results = []
        for b in range(output.cls_logits[0].shape[0]):
            masks = [m[b].cpu() for m in output.masks]
            segments, scores, labels = decode_candidates(
                [x[b].detach().float().cpu() for x in output.cls_logits],
                [x[b].detach().float().cpu() for x in output.offsets],
                masks,
                level_points,
                float(masks[0].sum()) * first_stride,
                self.postprocessing,
            )
            segments, scores, labels = nms_per_class(segments, scores, labels, self.postprocessing)
            results.append({"segments": segments, "scores": scores, "labels": labels.long()})
        return results
