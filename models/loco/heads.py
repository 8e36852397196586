"""LoCo's class-aware regression (arXiv 2409.07967, Sec. 3.2 "Multimodal Decoder": three 1-D
convolutions and ReLU; as in the UnAV-100 baseline, arXiv 2303.12930): every point predicts
a ``(left, right)`` pair per class, so overlapping events of different classes around one
point each get their own boundaries.

Targets are assigned class by class with ActionFormer's rule (``models.losses.assign_labels``
on the ground truths of that class only): a point is positive for class ``c`` when a
``c`` event qualifies, and regresses the shortest such event with class ``c``'s offsets.
Decoding mirrors ``models.postprocessing.decode_candidates`` with the offsets of each
candidate's own class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks import ChannelLayerNorm, MaskedConv1d, Scale
from models.losses import assign_labels


class ClassAwareRegressionHead(nn.Module):
    """Per-point, per-class non-negative distances to the segment start and end (strides).

    Args:
        in_channels: pyramid width.
        head_dim: hidden width.
        num_classes: C.
        num_levels: pyramid levels (one learnable scale each, init 1).
        num_convs: convolutions including the predictor (>= 1).
        kernel_size: odd kernel size.
        init_offset: initial ``(left, right)`` of every point and class, in strides; the
            predictor starts at weights N(0, 0.01) and this bias (see ``models.heads``).
    """

    def __init__(
        self,
        in_channels: int,
        head_dim: int,
        num_classes: int,
        num_levels: int,
        num_convs: int = 3,
        kernel_size: int = 3,
        init_offset: float = 1.0,
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"num_head_convs must be >= 1 (it counts the predictor): {num_convs}")
        self.num_classes = num_classes
        self.hidden = nn.ModuleList(
            MaskedConv1d(in_channels if i == 0 else head_dim, head_dim, kernel_size, bias=False)
            for i in range(num_convs - 1)
        )
        self.norms = nn.ModuleList(ChannelLayerNorm(head_dim) for _ in range(num_convs - 1))
        last_in = head_dim if num_convs > 1 else in_channels
        self.predictor = MaskedConv1d(last_in, 2 * num_classes, kernel_size)
        nn.init.normal_(self.predictor.conv.weight, std=0.01)
        nn.init.constant_(self.predictor.conv.bias, init_offset)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """Levels (B, C_in, T_l), masks (B, T_l) -> offsets (B, T_l, C, 2) per level, >= 0."""
        if len(feats) != len(self.scales):
            raise ValueError(
                f"regression head built for {len(self.scales)} levels, got {len(feats)}"
            )
        out = []
        for scale, x, mask in zip(self.scales, feats, masks, strict=True):
            for conv, norm in zip(self.hidden, self.norms, strict=True):
                x, _ = conv(x, mask)
                x = F.relu(norm(x))
            offsets = F.relu(scale(self.predictor(x, mask)[0]))  # (B, 2C, T_l)
            batch, _, length = offsets.shape
            out.append(offsets.view(batch, self.num_classes, 2, length).permute(0, 3, 1, 2))
        return out


@torch.no_grad()
def assign_class_aware(
    points: Tensor,
    gt_segments: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    center_sample_radius: float | None,
) -> tuple[Tensor, Tensor]:
    """Per-class targets of one video.

    Args:
        points: (P, 4) rows ``[t, lo, hi, s]``.
        gt_segments: (N, 2) grid units; N may be 0.
        gt_labels: (N,) long in [0, C).
        num_classes: C.
        center_sample_radius: see ``models.losses.assign_labels``.

    Returns:
        ``cls_targets`` (P, C) 0/1 and ``reg_targets`` (P, C, 2) ``(left, right)`` in
        strides of the shortest qualifying event of each class (meaningful where 1).
    """
    num_points = points.shape[0]
    cls_targets = points.new_zeros(num_points, num_classes)
    reg_targets = points.new_zeros(num_points, num_classes, 2)
    for label in gt_labels.unique().tolist():
        of_class = gt_labels == label
        single = torch.zeros(int(of_class.sum()), dtype=torch.long, device=points.device)
        cls_c, reg_c = assign_labels(points, gt_segments[of_class], single, 1, center_sample_radius)
        cls_targets[:, label] = cls_c[:, 0]
        reg_targets[:, label] = reg_c
    return cls_targets, reg_targets
