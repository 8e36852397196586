"""From per-point scores and offsets to a short list of detections per video.

Steps (ActionFormer's inference, arXiv 2202.07925, Sec. 3.4): per level keep point-class
pairs scoring above ``pre_nms_score_threshold`` and the ``pre_nms_topk`` best; decode them
to segments (``models.points``), clamp to the valid part of the video and drop segments
shorter than ``min_duration``; then, per class, Soft-NMS (Bodla et al., arXiv 1704.04503,
Gaussian decay ``exp(-IoU^2 / sigma)`` or linear ``1 - IoU`` above ``iou_threshold``) or
hard NMS (``torchvision.ops.batched_nms`` on segments mapped to boxes ``[s, 0, e, 1]``,
whose 2-D IoU equals the 1-D IoU); optional score voting; finally keep the
``max_detections`` best, sorted by score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from models.keys import check_keys
from models.points import decode_segments


@dataclass(frozen=True)
class PostProcessingConfig:
    """Post-processing settings (defaults: ActionFormer's, ``max_detections`` from the
    Perception Test baseline).

    Args:
        nms: "soft" (Soft-NMS), "hard" (NMS) or "none".
        soft_nms_decay: "gaussian" or "linear".
        sigma: Gaussian Soft-NMS width.
        iou_threshold: IoU above which hard NMS suppresses and linear Soft-NMS decays.
        pre_nms_score_threshold: per point-class probability kept before NMS.
        pre_nms_topk: best point-class pairs kept per level before NMS.
        min_score: candidates below it are dropped before NMS, and Soft-NMS drops those
            whose decayed score falls below it.
        min_duration: shortest segment kept, grid units.
        max_detections: detections kept per video.
        voting_iou_threshold: None (off) or the IoU at which same-class candidates vote on
            a kept segment's boundaries.
        boundary_margin: grid units past the outer cell edges (``-0.5`` and ``L - 0.5``) that a
            segment may reach: a snippet's window is wider than its grid cell when the window
            exceeds the stride, so the video starts ``window / (2 * stride) - 0.5`` cells
            before the first cell's edge. The caller derives it from the feature grid.
    """

    nms: str = "soft"
    soft_nms_decay: str = "gaussian"
    sigma: float = 0.5
    iou_threshold: float = 0.1
    pre_nms_score_threshold: float = 0.001
    pre_nms_topk: int = 5000
    min_score: float = 0.001
    min_duration: float = 0.05
    max_detections: int = 500
    voting_iou_threshold: float | None = None
    boundary_margin: float = 0.0

    def __post_init__(self) -> None:
        if self.nms not in ("soft", "hard", "none"):
            raise ValueError(f"postprocessing.nms must be soft, hard or none, got {self.nms!r}")
        if self.soft_nms_decay not in ("gaussian", "linear"):
            raise ValueError(
                "postprocessing.soft_nms_decay must be gaussian or linear, "
                f"got {self.soft_nms_decay!r}"
            )
        if self.sigma <= 0 or self.pre_nms_topk < 1 or self.max_detections < 1:
            raise ValueError(
                "postprocessing.sigma must be > 0 and pre_nms_topk, max_detections >= 1"
            )

    @classmethod
    def from_dict(
        cls, cfg: Mapping[str, Any] | None, where: str = "postprocessing"
    ) -> PostProcessingConfig:
        """Build from a config mapping at ``where`` (named in errors), refusing unknown keys."""
        cfg = dict(cfg or {})
        check_keys(cfg, [f.name for f in dataclasses.fields(cls)], where)
        return cls(**cfg)


def segment_iou(segments_a: Tensor, segments_b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pairwise 1-D IoU of (N, 2) and (M, 2) ``(start, end)`` segments -> (N, M)."""
    start = torch.maximum(segments_a[:, None, 0], segments_b[None, :, 0])
    end = torch.minimum(segments_a[:, None, 1], segments_b[None, :, 1])
    intersection = (end - start).clamp(min=0)  # (N, M)
    len_a = (segments_a[:, 1] - segments_a[:, 0])[:, None]
    len_b = (segments_b[:, 1] - segments_b[:, 0])[None, :]
    return intersection / (len_a + len_b - intersection).clamp(min=eps)


def soft_nms_1d(
    segments: Tensor,
    scores: Tensor,
    decay: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.1,
    min_score: float = 0.001,
    max_keep: int | None = None,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al., arXiv 1704.04503, Alg. 1), class by class.

    Per class, repeatedly take the highest-scoring candidate, then multiply every remaining
    score of that class by ``exp(-IoU^2 / sigma)`` (Gaussian) or, where ``IoU >=
    iou_threshold``, by ``1 - IoU`` (linear); candidates falling below ``min_score`` are
    dropped. Selected scores of a class never increase, so stopping at ``max_keep``
    selections keeps exactly its ``max_keep`` best. All classes advance together, one
    selection each per step, so the loop runs ``max_keep`` times, not once per class.

    Args:
        segments: (N, 2) ``(start, end)``.
        scores: (N,) scores.
        decay: "gaussian" or "linear".
        sigma: Gaussian width.
        iou_threshold: linear decay applies from this IoU on.
        min_score: drop threshold.
        max_keep: selections per class (None: no limit).
        labels: (N,) class of every candidate; None puts all in one class.

    Returns:
        ``keep`` (K,) indices into the input and ``new_scores`` (K,) their decayed scores;
        within a class in selection order (non-increasing scores).
    """
    if decay not in ("gaussian", "linear"):
        raise ValueError(f"soft-NMS decay must be gaussian or linear, got {decay!r}")
    candidates = torch.nonzero(scores >= min_score).flatten()  # indices into the input
    if candidates.numel() == 0:
        return scores.new_zeros(0, dtype=torch.long), scores.new_zeros(0)
    groups = torch.zeros_like(candidates) if labels is None else labels[candidates]
    _, group = torch.unique(groups, return_inverse=True)  # (n,) class slot of each
    order = torch.argsort(group, stable=True)
    candidates, group = candidates[order], group[order]
    counts = torch.bincount(group)  # (G,)
    firsts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(group.numel(), device=group.device) - firsts[group]
    num_groups, width = counts.numel(), int(counts.max())
    # one row per class: candidate index, score, segment and whether still in play
    index_table = torch.zeros(num_groups, width, dtype=torch.long, device=scores.device)
    index_table[group, slot] = candidates
    current = scores.new_zeros(num_groups, width)
    current[group, slot] = scores[candidates]
    segment_table = segments.new_zeros(num_groups, width, 2)
    segment_table[group, slot] = segments[candidates]
    alive = torch.zeros(num_groups, width, dtype=torch.bool, device=scores.device)
    alive[group, slot] = True
    rows = torch.arange(num_groups, device=scores.device)
    limit = width if max_keep is None else min(max_keep, width)
    keep: list[Tensor] = []
    new_scores: list[Tensor] = []
    for _ in range(limit):
        best_score, best_slot = current.masked_fill(~alive, float("-inf")).max(dim=1)  # (G,)
        selecting = alive[rows, best_slot]  # (G,) classes with a candidate left
        if not selecting.any():
            break
        keep.append(index_table[rows, best_slot][selecting])
        new_scores.append(best_score[selecting])
        alive[rows, best_slot] = False
        best = segment_table[rows, best_slot]  # (G, 2)
        start = torch.maximum(best[:, None, 0], segment_table[..., 0])
        end = torch.minimum(best[:, None, 1], segment_table[..., 1])
        intersection = (end - start).clamp(min=0)  # (G, W)
        union = (best[:, 1:] - best[:, :1]) + (segment_table[..., 1] - segment_table[..., 0])
        overlap = intersection / (union - intersection).clamp(min=1e-8)  # (G, W)
        if decay == "gaussian":
            weight = torch.exp(-overlap.square() / sigma)
        else:
            weight = torch.where(overlap >= iou_threshold, 1.0 - overlap, 1.0)
        current = current * weight
        alive &= current >= min_score
    return torch.cat(keep), torch.cat(new_scores)


def hard_nms_1d(segments: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Per-class NMS via ``torchvision.ops.batched_nms``: segments become boxes
    ``[s, 0, e, 1]`` of height 1, whose IoU is the 1-D IoU. A candidate is suppressed by a
    higher-scoring one of its class when their IoU is strictly above ``iou_threshold``.

    Args:
        segments: (N, 2); scores: (N,); labels: (N,) long.
        iou_threshold: suppression IoU.

    Returns:
        (K,) kept indices, by decreasing score.
    """
    zeros = torch.zeros_like(segments[:, 0])
    boxes = torch.stack([segments[:, 0], zeros, segments[:, 1], zeros + 1.0], dim=1)  # (N, 4)
    return batched_nms(boxes.float(), scores.float(), labels, iou_threshold)


def score_voting(
    kept: Tensor, candidates: Tensor, candidate_scores: Tensor, iou_threshold: float
) -> Tensor:
    """Refine each kept segment to the mean of the candidates overlapping it by at least
    ``iou_threshold``, weighted by ``score * IoU`` (box voting, ActionFormer's
    ``seg_voting``).

    Args:
        kept: (K, 2) segments after NMS.
        candidates: (N, 2) segments before NMS (same class).
        candidate_scores: (N,) their scores before NMS.
        iou_threshold: minimum IoU to vote.

    Returns:
        (K, 2) refined segments; a kept segment without voters is returned unchanged.
    """
    iou = segment_iou(kept, candidates)  # (K, N)
    weights = (iou >= iou_threshold).to(iou.dtype) * iou * candidate_scores[None, :]
    total = weights.sum(dim=1, keepdim=True)  # (K, 1)
    refined = (weights @ candidates) / total.clamp(min=1e-12)
    return torch.where(total > 0, refined, kept)


def nms_per_class(
    segments: Tensor, scores: Tensor, labels: Tensor, cfg: PostProcessingConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Drop candidates below ``min_score``, NMS (as configured) class by class, optional
    voting, then keep the ``max_detections`` best by score.

    Args:
        segments: (N, 2); scores: (N,); labels: (N,) long candidates of one video.
        cfg: post-processing settings.

    Returns:
        ``(segments (K, 2), scores (K,), labels (K,))`` sorted by decreasing score.
    """
    confident = scores >= cfg.min_score
    segments, scores, labels = segments[confident], scores[confident], labels[confident]
    if cfg.nms == "hard":
        keep = hard_nms_1d(segments, scores, labels, cfg.iou_threshold)
        kept_scores = scores[keep]
    elif cfg.nms == "soft":
        keep, kept_scores = soft_nms_1d(
            segments,
            scores,
            cfg.soft_nms_decay,
            cfg.sigma,
            cfg.iou_threshold,
            cfg.min_score,
            cfg.max_detections,
            labels,
        )
    else:
        keep, kept_scores = torch.arange(scores.numel(), device=scores.device), scores
    kept_segments, kept_labels = segments[keep], labels[keep]
    if cfg.voting_iou_threshold is not None:
        kept_segments = kept_segments.clone()
        for label in torch.unique(kept_labels):
            rows, same = kept_labels == label, labels == label
            kept_segments[rows] = score_voting(
                kept_segments[rows], segments[same], scores[same], cfg.voting_iou_threshold
            )
    order = torch.argsort(kept_scores, descending=True, stable=True)[: cfg.max_detections]
    return kept_segments[order], kept_scores[order], kept_labels[order]


def decode_candidates(
    cls_logits: list[Tensor],
    offsets: list[Tensor],
    masks: list[Tensor],
    points: list[Tensor],
    valid_length: float,
    cfg: PostProcessingConfig,
) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate detections of one video before NMS.

    Args:
        cls_logits: per level (T_l, C) logits.
        offsets: per level ``(left, right)`` in stride units: (T_l, 2), or (T_l, C, 2) from a
            class-aware regression head, where each candidate takes its own class's offsets.
        masks: per level (T_l,) bool.
        points: per level (T_l, 4) rows ``[t, lo, hi, s]``.
        valid_length: number of valid snippets L; segments are clamped to the covered span
            ``[-0.5 - m, L - 0.5 + m]`` with ``m = cfg.boundary_margin``.
        cfg: post-processing settings.

    Returns:
        ``(segments (N, 2), scores (N,), labels (N,) long)``.
    """
    all_segments, all_scores, all_labels = [], [], []
    for logits, level_offsets, mask, level_points in zip(
        cls_logits, offsets, masks, points, strict=True
    ):
        num_classes = logits.shape[1]
        probs = (logits.sigmoid() * mask[:, None].to(logits.dtype)).flatten()  # (T_l * C,)
        flat_idx = torch.nonzero(probs > cfg.pre_nms_score_threshold).flatten()
        level_scores = probs[flat_idx]
        if level_scores.numel() > cfg.pre_nms_topk:
            level_scores, top = level_scores.topk(cfg.pre_nms_topk)
            flat_idx = flat_idx[top]
        point_idx = torch.div(flat_idx, num_classes, rounding_mode="floor")
        class_idx = flat_idx % num_classes
        if level_offsets.dim() == 3:  # class-aware: (T_l, C, 2) -> (K, 2)
            chosen = level_offsets[point_idx, class_idx]
        else:
            chosen = level_offsets[point_idx]  # (K, 2)
        all_segments.append(decode_segments(level_points[point_idx], chosen))
        all_scores.append(level_scores)
        all_labels.append(class_idx)
    low, high = -0.5 - cfg.boundary_margin, float(valid_length) - 0.5 + cfg.boundary_margin
    segments = torch.cat(all_segments).clamp(min=low, max=high)
    scores, labels = torch.cat(all_scores), torch.cat(all_labels)
    long_enough = (segments[:, 1] - segments[:, 0]) > cfg.min_duration
    return segments[long_enough], scores[long_enough], labels[long_enough]
