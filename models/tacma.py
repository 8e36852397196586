"""TACMA, temporally adaptive cross-modal attention, and the AVE segment classifiers.

Source: "Self-Supervised Video Representation and Temporally Adaptive Attention for
Audio-Visual Event Localization", Applied Sciences 12(24) 12622 (2022), Sec. 3.3-3.4,
Eq. (3)-(9); the Table 2 classifiers of Sec. 4.2.1.

Given fixed per-segment features ``f_a``, ``f_v`` ``(T, d_l)`` (one row per 1-second segment):

- Eq. (3): one score matrix from shared query/key projections,
  ``M_av = (f_a W_a1)(f_v W_v1)^T / sqrt(d_l)`` and ``M_va = M_av^T``; ReLU drops negatively
  correlated pairs, then each row is soft-maxed.
- Eq. (4)-(5): each entry is multiplied by ``exp(-theta |i - j| / M_ij)``. The weights are not
  renormalised, so a row's total attention shrinks when its mass lies on asynchronous or weakly
  similar pairs. ``theta = 0`` makes every weight 1 (plain cross-modal attention, still with the
  ReLU, the shared projections and Eq. (6)-(8)).
- Eq. (6): attended values plus a cross-modal residual; Eq. (7): linear then LayerNorm;
  Eq. (8): the two streams summed, then a three-layer MLP; Eq. (9): cross-entropy.

Reading of Eq. (6). As printed, ``V_fuse = W_va (f_v W_v2) + f_a`` multiplies visual values
by the rows of ``W_va``, whose columns index *audio* segments (``M_va = M_av^T`` and ``M_av``
has audio rows, Eq. (3)), so the time difference ``|i - j|`` of Eq. (4) would weigh two visual
segments, not an audio and a visual one as Sec. 3.3 says it does. The default
(``eq6_reading="cross"``) is the reading consistent with Eq. (3), Eq. (4) and Table 1: each
stream's queries attend to the *other* modality's values and keep their own residual,
``V_fuse = W_va (f_a W_a2) + f_v`` (the visual stream, ``f_{v<-a}``: visual fed by audio) and
``A_fuse = W_av (f_v W_v2) + f_a``, as in PSP (Zhou et al., CVPR 2021), whose shared
query/key strategy the paper adopts. ``eq6_reading="literal"`` computes Eq. (6) as printed.

Shapes: sequences ``(B, T, D)``, masks ``(B, T)`` bool (True = a real segment), attention
maps ``(B, T, T)`` with rows indexing the first-named modality, logits ``(B, T, C)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EQ6_READINGS = ("cross", "literal")
# Softmax entries below this are treated as this value in Eq. (4)'s denominator: the weight
# exp(-theta |i - j| / M) is then below exp(-theta / 1e-6), i.e. 0 in float32 for any theta
# worth using, and the gradient theta |i - j| / M^2 stays finite.
MIN_SCORE = 1e-6


def time_differences(length: int, device: torch.device | None = None) -> Tensor:
    """``|i - j|`` for ``i, j < length``, float ``(T, T)``."""
    steps = torch.arange(length, device=device, dtype=torch.float32)
    return (steps[:, None] - steps[None, :]).abs()


def masked_row_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis of ``(B, T, T)`` scores with padded columns (``mask`` False)
    at zero; rows of padded segments are zeroed too."""
    if mask is None:
        return scores.softmax(dim=-1)
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(dim=-1).masked_fill(~mask[:, :, None], 0.0)


def temporal_weights(attention: Tensor, theta: float) -> Tensor:
    """Eq. (4): ``exp(-theta |i - j| / M_ij)`` for a soft-maxed ``(B, T, T)`` map ``M``.

    The diagonal (``|i - j| = 0``) always weighs 1; an entry that is 0 (a padded segment) gets
    weight 0 off the diagonal (see :data:`MIN_SCORE`).
    """
    distance = time_differences(attention.shape[-1], attention.device).to(attention.dtype)
    return torch.exp(-theta * distance / attention.clamp_min(MIN_SCORE))  # (B, T, T)


@dataclass
class TACMAOutput:
    """What :class:`TACMA` computes for one batch.

    Attributes:
        visual_from_audio: ``f_{v<-a}`` ``(B, T, d_e)``, Eq. (7).
        audio_from_visual: ``f_{a<-v}`` ``(B, T, d_e)``, Eq. (7).
        weighted_av: ``W_av`` ``(B, T, T)``, audio rows, visual columns, Eq. (5).
        weighted_va: ``W_va`` ``(B, T, T)``, visual rows, audio columns, Eq. (5).
    """

    visual_from_audio: Tensor
    audio_from_visual: Tensor
    weighted_av: Tensor
    weighted_va: Tensor


class TACMA(nn.Module):
    """Temporally adaptive cross-modal attention, Eq. (3)-(7).

    Args:
        feature_dim: ``d_l``, the width of both input features (Eq. (6) adds them).
        attention_dim: ``d_h``, the width of the shared queries/keys (Eq. (3)).
        output_dim: ``d_e``, the width of the fused features (Eq. (7)).
        theta: Eq. (4)'s hyper-parameter (>= 0); the paper's best is 0.03 (Sec. 4.1).
        eq6_reading: ``cross`` (default) or ``literal``; see the module docstring.
    """

    def __init__(
        self,
        *,
        feature_dim: int,
        attention_dim: int,
        output_dim: int,
        theta: float,
        eq6_reading: str = "cross",
    ) -> None:
        super().__init__()
        if theta < 0:
            raise ValueError(f"TACMA theta must be >= 0, got {theta}")
        if eq6_reading not in EQ6_READINGS:
            raise ValueError(
                f"unknown eq6_reading {eq6_reading!r}; valid readings: {', '.join(EQ6_READINGS)}"
            )
        self.theta = float(theta)
        self.eq6_reading = eq6_reading
        self.feature_dim = feature_dim
        self.audio_query_key = nn.Linear(feature_dim, attention_dim)  # W_a1, Eq. (3)
        self.visual_query_key = nn.Linear(feature_dim, attention_dim)  # W_v1, Eq. (3)
        self.audio_value = nn.Linear(feature_dim, feature_dim)  # W_a2, Eq. (6)
        self.visual_value = nn.Linear(feature_dim, feature_dim)  # W_v2, Eq. (6)
        self.audio_output = nn.Linear(feature_dim, output_dim)  # W_a3, Eq. (7)
        self.visual_output = nn.Linear(feature_dim, output_dim)  # W_v3, Eq. (7)
        self.audio_norm = nn.LayerNorm(output_dim)
        self.visual_norm = nn.LayerNorm(output_dim)

    def attention_maps(
        self, audio: Tensor, visual: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``M_av`` and ``M_va`` ``(B, T, T)`` after ReLU and the row softmax (Eq. (3))."""
        scores = self.audio_query_key(audio) @ self.visual_query_key(visual).transpose(1, 2)
        scores = F.relu(scores / math.sqrt(self.feature_dim))  # (B, T_a, T_v), Eq. (3) + ReLU
        return masked_row_softmax(scores, mask), masked_row_softmax(scores.transpose(1, 2), mask)

    def forward(self, audio: Tensor, visual: Tensor, mask: Tensor | None = None) -> TACMAOutput:
        """Fuse ``audio`` and ``visual`` ``(B, T, d_l)`` with ``mask`` ``(B, T)``."""
        if audio.shape != visual.shape:
            raise ValueError(
                f"TACMA needs audio and visual features of one shape (B, T, d_l), got "
                f"{tuple(audio.shape)} and {tuple(visual.shape)}"
            )
        attention_av, attention_va = self.attention_maps(audio, visual, mask)
        weighted_av = temporal_weights(attention_av, self.theta) * attention_av  # Eq. (4)-(5)
        weighted_va = temporal_weights(attention_va, self.theta) * attention_va  # Eq. (4)-(5)
        if self.eq6_reading == "cross":  # Eq. (6), read as cross-modal attention
            visual_fused = weighted_va @ self.audio_value(audio) + visual  # (B, T, d_l)
            audio_fused = weighted_av @ self.visual_value(visual) + audio  # (B, T, d_l)
        else:  # Eq. (6) as printed
            visual_fused = weighted_va @ self.visual_value(visual) + audio  # (B, T, d_l)
            audio_fused = weighted_av @ self.audio_value(audio) + visual  # (B, T, d_l)
        return TACMAOutput(
            visual_from_audio=self.visual_norm(self.visual_output(visual_fused)),  # Eq. (7)
            audio_from_visual=self.audio_norm(self.audio_output(audio_fused)),  # Eq. (7)
            weighted_av=weighted_av,
            weighted_va=weighted_va,
        )


class SegmentMLP(nn.Module):
    """The three-layer classification MLP of Eq. (8) and Table 2, applied to every segment:
    Linear-ReLU-(Dropout)-Linear-ReLU-(Dropout)-Linear.

    The paper gives neither the hidden width nor dropout; both are settings.

    Args:
        input_dim: width of the features.
        hidden_dim: width of the two hidden layers.
        num_outputs: C, the event classes plus background.
        dropout: dropout after each hidden layer (0 = none).
    """

    def __init__(self, *, input_dim: int, hidden_dim: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_outputs),
        )

    def forward(self, features: Tensor) -> Tensor:
        """``(..., input_dim)`` -> logits ``(..., num_outputs)``."""
        return self.layers(features)


class InputProjection(nn.Module):
    """Per-modality linear maps to one width, for features whose widths differ (the AVE
    release: VGG-19 512-d, VGGish 128-d); identity when ``dim`` is 0.

    This is not in the paper, whose AV-BT features share ``d_l``; Eq. (6) needs equal widths.

    Args:
        audio_dim: width of the audio features.
        visual_dim: width of the visual features.
        dim: common width (0 keeps the features as they are).
    """

    def __init__(self, *, audio_dim: int, visual_dim: int, dim: int) -> None:
        super().__init__()
        self.audio = nn.Linear(audio_dim, dim) if dim else nn.Identity()
        self.visual = nn.Linear(visual_dim, dim) if dim else nn.Identity()
        self.audio_dim = dim or audio_dim
        self.visual_dim = dim or visual_dim

    def forward(self, audio: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        return self.audio(audio), self.visual(visual)


CLASSIFIERS = ("audio", "visual", "sum", "tacma")


class SegmentClassifier(nn.Module):
    """The AVE segment classifiers of the paper on fixed features.

    ``audio`` / ``visual``: the MLP on one modality (Table 2, unimodal rows); ``sum``: the MLP on
    ``f_a + f_v`` (Table 2, "Audio-Visual"); ``tacma``: TACMA then the MLP on
    ``f_{v<-a} + f_{a<-v}`` (Eq. (8), Table 3).

    Args:
        kind: one of :data:`CLASSIFIERS`.
        audio_dim: width of the audio features.
        visual_dim: width of the visual features.
        num_outputs: C, the event classes plus background.
        hidden_dim: the MLP's hidden width.
        attention_dim: TACMA's ``d_h``.
        output_dim: TACMA's ``d_e``.
        theta: TACMA's Eq. (4) hyper-parameter.
        eq6_reading: TACMA's reading of Eq. (6).
        input_projection_dim: common width the features are first mapped to (0 = none).
        dropout: the MLP's dropout.
    """

    def __init__(
        self,
        *,
        kind: str,
        audio_dim: int,
        visual_dim: int,
        num_outputs: int,
        hidden_dim: int = 256,
        attention_dim: int = 256,
        output_dim: int = 256,
        theta: float = 0.03,
        eq6_reading: str = "cross",
        input_projection_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in CLASSIFIERS:
            raise ValueError(
                f"unknown segment classifier {kind!r}; valid kinds: {', '.join(CLASSIFIERS)}"
            )
        self.kind = kind
        self.projection = InputProjection(
            audio_dim=audio_dim, visual_dim=visual_dim, dim=input_projection_dim
        )
        audio_dim, visual_dim = self.projection.audio_dim, self.projection.visual_dim
        if kind in ("sum", "tacma") and audio_dim != visual_dim:
            raise ValueError(
                f"the {kind} classifier adds audio and visual features, whose widths differ "
                f"({audio_dim} and {visual_dim}); set input_projection_dim"
            )
        self.tacma = (
            TACMA(
                feature_dim=audio_dim,
                attention_dim=attention_dim,
                output_dim=output_dim,
                theta=theta,
                eq6_reading=eq6_reading,
            )
            if kind == "tacma"
            else None
        )
        mlp_input = {"audio": audio_dim, "visual": visual_dim, "sum": audio_dim}.get(
            kind, output_dim
        )
        self.mlp = SegmentMLP(
            input_dim=mlp_input, hidden_dim=hidden_dim, num_outputs=num_outputs, dropout=dropout
        )

    def forward(self, audio: Tensor, visual: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, C)`` of ``audio`` ``(B, T, D_a)`` and ``visual`` ``(B, T, D_v)``."""
        audio, visual = self.projection(audio, visual)
        if self.kind == "audio":
            return self.mlp(audio)
        if self.kind == "visual":
            return self.mlp(visual)
        if self.kind == "sum":
            return self.mlp(audio + visual)
        fused = self.tacma(audio, visual, mask)
        return self.mlp(fused.visual_from_audio + fused.audio_from_visual)  # Eq. (8)


def masked_segment_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Eq. (9): mean cross-entropy over the real segments of ``(B, T, C)`` logits.

    Eq. (9) divides the sum by ``T C``; this divides by the number of segments only. The
    constant factor ``1 / C`` does not change Adam's steps (invariant to the loss scale).

    Args:
        logits: ``(B, T, C)``.
        labels: ``(B, T)`` long class indices.
        mask: ``(B, T)`` bool, True for real segments.
    """
    return F.cross_entropy(logits[mask], labels[mask])


__all__ = [
    "CLASSIFIERS",
    "EQ6_READINGS",
    "TACMA",
    "InputProjection",
    "SegmentClassifier",
    "SegmentMLP",
    "TACMAOutput",
    "masked_row_softmax",
    "masked_segment_cross_entropy",
    "temporal_weights",
    "time_differences",
]
