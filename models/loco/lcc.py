"""LCC: Locality-aware Correspondence Correction (LoCo, arXiv 2409.07967, Sec. 3.3, Eq. 2-5).

A contrastive loss between the audio and visual snippet features of the unimodal encoders,
over the N valid snippets of a batch. Features are projected to half the channel width (as
in ALBEF, Li et al. 2021) and L2-normalised; logits are their cosine similarities divided
by a learnable temperature (ALBEF's: initial 0.07, kept in [0.001, 0.5]).

Eq. (2), one direction (visual rows over audio columns; the text's "align visual modality
with audio modality"), a cross-entropy with soft targets as in ALBEF::

    L_v2a = -1/N sum_i sum_j y_ij log softmax_j(s(v_i, a_j) / tau)

Eq. (3)-(4), the targets ``y``: within one video, a Gaussian over the distance between
entry ``(i, j)`` and the diagonal, i.e. the perpendicular distance ``|i - j| / sqrt(2)``,
mean 0 and a learnable standard deviation sigma, normalised over the row's snippets of
the same video; 0 for snippets of other videos in the batch (negatives). Eq. (5): the
audio-to-visual loss is computed in the same manner and LCC is their mean,
``(L_a2v + L_v2a) / 2`` (ALBEF's symmetric form; the text says only "in the same manner").

Target variants (``lcc_target``, Table 2(b)), over the ``n`` valid snippets of the row's
video:

* ``learnable_gaussian`` (LoCo) and ``fixed_gaussian`` (sigma a constant):
  ``y_ij = exp(-(i - j)^2 / (4 sigma^2)) / sum_k exp(-(i - k)^2 / (4 sigma^2))``.
* ``smoothed`` ("Softened target", label smoothing; every positive pair attracted
  equally): ``y_ij = (1 - epsilon) [i == j] + epsilon / n`` (the diagonal gets
  ``1 - epsilon + epsilon / n``).
* ``diagonal`` ("Diagonal matrix"): ``y_ij = [i == j]`` (InfoNCE).

Loss form (``lcc_loss_form``): ``cross_entropy`` is Eq. (2). ``kl`` subtracts the targets'
entropy, ``sum_j y_ij log y_ij``, i.e. ``KL(y_i || softmax_i)``. For fixed targets both have
the same gradients. With a learnable sigma they differ: ``CE = H(y) + KL(y || p)`` and the
entropy ``H(y)`` grows with sigma, so the cross-entropy always pushes sigma down (it is
linear in ``y``, so sigma shrinks as long as the similarities fall away from the diagonal,
towards the diagonal target); the KL form instead fits sigma to the locality the
similarities actually show.

Cost: the logits and targets are (N, N) for the N valid snippets of the batch (16 videos
of 256 snippets: 16.8 M entries, 67 MB each in float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LCC_TARGETS = ("diagonal", "smoothed", "fixed_gaussian", "learnable_gaussian")
LCC_LOSS_FORMS = ("cross_entropy", "kl")
TEMPERATURE_RANGE = (0.001, 0.5)  # ALBEF's bounds on the learnable temperature


def lcc_targets(
    mask: Tensor, kind: str, sigma: Tensor | float = 1.0, epsilon: float = 0.1
) -> Tensor:
    """Row-normalised target matrix over the valid snippets of a batch (LoCo Eq. 3-4).

    Args:
        mask: (B, T) bool, True for valid snippets; they are taken in ``mask.nonzero()``
            order (video by video, time within a video).
        kind: one of ``LCC_TARGETS``.
        sigma: standard deviation of the Gaussian variants, in snippets (a tensor keeps
            the graph for a learnable sigma).
        epsilon: label-smoothing mass of ``smoothed``.

    Returns:
        (N, N) with N valid snippets; rows sum to 1; zero between different videos.
    """
    if kind not in LCC_TARGETS:
        raise ValueError(f"lcc_target must be one of {', '.join(LCC_TARGETS)}, got {kind!r}")
    video, time = mask.nonzero(as_tuple=True)  # (N,), (N,)
    dtype = sigma.dtype if isinstance(sigma, Tensor) else torch.get_default_dtype()
    same_video = (video[:, None] == video[None, :]).to(dtype)  # (N, N)
    diagonal = torch.eye(len(video), dtype=dtype, device=mask.device)
    if kind == "diagonal":
        return diagonal
    if kind == "smoothed":
        # Table 2(b) "Softened target": label smoothing over all positives of the video
        count = same_video.sum(dim=1, keepdim=True)  # (N, 1) snippets of the row's video
        return (1.0 - epsilon) * diagonal + epsilon * same_video / count
    # LoCo Eq. (3): Gaussian, mean 0, over the distance of entry (i, j) to the diagonal
    distance = (time[:, None] - time[None, :]).to(dtype).abs() / math.sqrt(2.0)  # (N, N)
    sigma = torch.as_tensor(sigma, dtype=dtype, device=mask.device)
    kernel = torch.exp(-distance.square() / (2 * sigma.square())) * same_video
    return kernel / kernel.sum(dim=1, keepdim=True)  # LoCo Eq. (4): rows of one video


def lcc_loss(
    audio_embed: Tensor,
    visual_embed: Tensor,
    mask: Tensor,
    targets: Tensor,
    temperature: Tensor,
    form: str = "cross_entropy",
) -> Tensor:
    """Symmetric soft-target contrastive loss between audio and visual snippets (Eq. 2, 5).

    Args:
        audio_embed: (B, T, D) audio snippet embeddings (normalised here).
        visual_embed: (B, T, D) visual snippet embeddings.
        mask: (B, T) bool valid snippets.
        targets: (N, N) from :func:`lcc_targets` for the same mask (rows: the direction's
            query modality; the transpose is used for the other direction).
        temperature: scalar > 0 dividing the cosine similarities.
        form: "cross_entropy" (Eq. 2) or "kl" (minus the targets' entropy).

    Returns:
        Scalar ``(L_a2v + L_v2a) / 2``, each the mean over valid rows of
        ``-sum_j y_ij log softmax_j(s_ij / temperature)`` (minus ``sum_j y_ij log y_ij`` for
        "kl"); 0 (with a graph) when no snippet is valid.
    """
    if form not in LCC_LOSS_FORMS:
        raise ValueError(f"lcc_loss_form must be one of {', '.join(LCC_LOSS_FORMS)}: {form!r}")
    audio = F.normalize(audio_embed[mask].float(), dim=-1)  # (N, D)
    visual = F.normalize(visual_embed[mask].float(), dim=-1)  # (N, D)
    if audio.shape[0] == 0:
        return (audio_embed.sum() + visual_embed.sum()) * 0.0
    targets = targets.float()
    logits = audio @ visual.T / temperature  # LoCo Eq. (2): (N, N), rows audio
    # LoCo Eq. (2), both directions; Eq. (5): their mean
    audio_to_visual = -(targets * logits.log_softmax(dim=1)).sum(dim=1)  # (N,)
    visual_to_audio = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1)  # (N,)
    loss = 0.5 * (audio_to_visual.mean() + visual_to_audio.mean())
    if form == "kl":
        plogp = targets * torch.where(targets > 0, targets, 1.0).log()  # 0 log 0 = 0
        # minus the mean entropy of the rows (a2v) and of the columns (v2a) of the targets
        loss = loss + 0.5 * (plogp.sum(dim=1).mean() + plogp.sum(dim=0).mean())
    return loss


class LocalityCorrespondence(nn.Module):
    """Projection heads, temperature and sigma of the LCC loss (LoCo Sec. 3.3).

    Args:
        channels: width C of the unimodal encoder outputs; both are projected to C // 2.
        target: one of ``LCC_TARGETS``.
        sigma: initial (``learnable_gaussian``) or fixed (``fixed_gaussian``) standard
            deviation of the Gaussian target, in snippets.
        epsilon: label-smoothing mass of the ``smoothed`` target.
        temperature: initial learnable temperature (ALBEF's 0.07), in [0.001, 0.5].
        loss_form: one of ``LCC_LOSS_FORMS``.
    """

    def __init__(
        self,
        channels: int,
        target: str = "learnable_gaussian",
        sigma: float = 1.0,
        epsilon: float = 0.1,
        temperature: float = 0.07,
        loss_form: str = "cross_entropy",
    ) -> None:
        super().__init__()
        if target not in LCC_TARGETS:
            raise ValueError(f"lcc_target must be one of {', '.join(LCC_TARGETS)}, got {target!r}")
        if loss_form not in LCC_LOSS_FORMS:
            raise ValueError(
                f"lcc_loss_form must be one of {', '.join(LCC_LOSS_FORMS)}, got {loss_form!r}"
            )
        low, high = TEMPERATURE_RANGE
        if sigma <= 0 or not low <= temperature <= high or not 0.0 <= epsilon < 1.0:
            raise ValueError(
                f"lcc_sigma must be > 0, lcc_temperature in [{low}, {high}], lcc_epsilon in [0, 1)"
            )
        self.target = target
        self.epsilon = epsilon
        self.loss_form = loss_form
        # LoCo Sec. 3.3: features halved in channel width (as in ALBEF)
        self.audio_proj = nn.Conv1d(channels, channels // 2, 1)
        self.visual_proj = nn.Conv1d(channels, channels // 2, 1)
        # both kept as logs so that they stay positive under gradient steps
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        log_sigma = torch.tensor(math.log(sigma))
        if target == "learnable_gaussian":
            self.log_sigma = nn.Parameter(log_sigma)  # LoCo Eq. (3): learnable sigma
        else:
            self.register_buffer("log_sigma", log_sigma)

    def embed(self, audio: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, T) encoder outputs -> (B, T, C // 2) projected audio and visual."""
        return self.audio_proj(audio).transpose(1, 2), self.visual_proj(visual).transpose(1, 2)

    def forward(self, audio_embed: Tensor, visual_embed: Tensor, mask: Tensor) -> Tensor:
        """LCC loss of projected (B, T, C // 2) embeddings under ``mask`` (B, T)."""
        with torch.no_grad():  # ALBEF: the temperature is clamped in place, not in the graph
            self.log_temperature.clamp_(*(math.log(bound) for bound in TEMPERATURE_RANGE))
        targets = lcc_targets(mask, self.target, self.log_sigma.exp(), self.epsilon)
        temperature = self.log_temperature.exp()
        return lcc_loss(audio_embed, visual_embed, mask, targets, temperature, self.loss_form)
