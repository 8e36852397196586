"""AV-BT: audio-visual Barlow Twins, the self-supervised encoders of the AVE task.

Source: Applied Sciences 12(24) 12622 (2022), Sec. 3.2 and 4.1, Eq. (1)-(2), Algorithm 1.

- Encoders (Sec. 3.2): a 2-D CNN embeds each 1-second segment (one frame, or the segment's
  log-mel spectrogram), then a Bi-LSTM models the video's segments in time. The paper's CNNs
  are ResNet-50 (ImageNet) and VGGish (AudioSet), :mod:`models.segment_backbones`; ``conv`` is a
  small CNN for tests and the CPU demo. Output ``f_a``, ``f_v`` ``(B, T, d_l)``.
- Projectors (Sec. 3.2.1): a three-layer MLP (2048/4096/4096 in Sec. 4.1) shared by both
  modalities (Table 4's "w/o sharing projector" is ``shared_projector=False``).
- Loss (Eq. (1)-(2)): per video, the projections are normalised along *time* and their
  cross-correlation matrix ``C`` ``(d, d)`` is taken over the video's segments; ``C`` is
  averaged over the videos of the batch; ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2``.
  Unlike Barlow Twins (Zbontar et al., arXiv 2103.03230), which correlates over the batch,
  only segments of the same moment of the same video are matched (Sec. 3.2.2).

Shapes: log-mel ``(B, T, 1, 96, 64)`` (frames x mel bands), RGB frames ``(B, T, 3, H, W)``
in [0, 1], masks ``(B, T)`` bool (True = a real segment), features ``(B, T, d_l)``,
projections ``(B, T, d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TEMPORAL_MODELS = ("bilstm", "none")
POOLINGS = ("avg", "max", "avgmax")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvEncoder(nn.Module):
    """Small CNN for tests and the CPU demo (not the paper's): input BatchNorm, ``depth``
    conv3x3-BN-ReLU blocks (2x2 max-pool between blocks, width doubling each block), global
    pooling and a linear embedding.

    Args:
        in_channels: input channels (1 for log-mel, 3 for RGB).
        embedding_dim: output width.
        width: channels of the first block.
        depth: number of conv-BN-ReLU blocks (>= 1).
        pooling: global pooling of the last map: ``avg``, ``max`` or ``avgmax`` (both).
    """

    def __init__(
        self,
        in_channels: int,
        embedding_dim: int,
        width: int = 16,
        depth: int = 3,
        pooling: str = "avgmax",
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"ConvEncoder needs depth >= 1 and width >= 1, got {depth}, {width}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid poolings: {', '.join(POOLINGS)}")
        self.pooling = pooling
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)]  # standardises raw inputs
        channels = in_channels
        for block in range(depth):
            out_channels = width * 2**block
            if block > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [
                nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        pooled = 2 * channels if pooling == "avgmax" else channels
        self.embedding = nn.Linear(pooled, embedding_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, embedding_dim)``."""
        maps = self.features(inputs).flatten(2)  # (N, C, H' * W')
        pooled = []
        if self.pooling in ("avg", "avgmax"):
            pooled.append(maps.mean(dim=2))  # (N, C)
        if self.pooling in ("max", "avgmax"):
            pooled.append(maps.amax(dim=2))  # (N, C)
        return self.embedding(torch.cat(pooled, dim=1))  # (N, embedding_dim)


class ImageNetNormalise(nn.Module):
    """Frames in [0, 1] minus the ImageNet mean over its std, per channel (what the
    torchvision ResNet-50 weights expect)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, frames: Tensor) -> Tensor:
        return (frames - self.mean) / self.std


@dataclass(frozen=True)
class BackboneConfig:
    """One modality's 2-D CNN.

    Attributes:
        name: ``conv`` (small, random init), ``vggish`` (audio) or ``resnet50`` (visual).
        weights: a ``.pth`` file of the pretrained network, or None for random initialisation.
        conv_width: first-block channels of ``conv``.
        conv_depth: blocks of ``conv``.
        conv_dim: output width of ``conv``.
    """

    name: str
    weights: str | None = None
    conv_width: int = 16
    conv_depth: int = 3
    conv_dim: int = 128


def build_backbone(config: BackboneConfig, in_channels: int) -> tuple[nn.Module, int]:
    """The CNN of ``config`` for ``in_channels`` inputs and its output width."""
    if config.name == "conv":
        encoder = ConvEncoder(
            in_channels, config.conv_dim, width=config.conv_width, depth=config.conv_depth
        )
        return encoder, config.conv_dim
    from models.segment_backbones import BACKBONES
    from models.segment_backbones import build_backbone as build_pretrained

    if config.name not in BACKBONES:
        valid = ", ".join(["conv", *BACKBONES])
        raise ValueError(f"unknown AV-BT backbone {config.name!r}; valid backbones: {valid}")
    spec = BACKBONES[config.name]
    expected = 1 if spec.modality == "audio" else 3
    if in_channels != expected:
        raise ValueError(
            f"backbone {config.name} is a {spec.modality} network ({expected} input channel(s)), "
            f"asked for {in_channels}"
        )
    network = build_pretrained(config.name, config.weights)
    if spec.modality == "visual":
        network = nn.Sequential(ImageNetNormalise(), network)
    return network, spec.output_dim


class SegmentEncoder(nn.Module):
    """A CNN per segment, then a Bi-LSTM over the video's segments (Sec. 3.2).

    Args:
        backbone: ``(N, C, H, W) -> (N, backbone_dim)``.
        backbone_dim: the backbone's output width.
        feature_dim: ``d_l``, the output width (the Bi-LSTM's two directions of
            ``d_l / 2`` each).
        temporal: ``bilstm`` (the paper) or ``none`` (a linear map per segment, no context).
    """

    def __init__(
        self, backbone: nn.Module, backbone_dim: int, feature_dim: int, temporal: str = "bilstm"
    ) -> None:
        super().__init__()
        if temporal not in TEMPORAL_MODELS:
            raise ValueError(
                f"unknown temporal model {temporal!r}; valid: {', '.join(TEMPORAL_MODELS)}"
            )
        if temporal == "bilstm" and feature_dim % 2:
            raise ValueError(f"a Bi-LSTM needs an even feature_dim, got {feature_dim}")
        self.backbone = backbone
        self.temporal = temporal
        if temporal == "bilstm":
            self.sequence = nn.LSTM(
                backbone_dim, feature_dim // 2, batch_first=True, bidirectional=True
            )
        else:
            self.sequence = nn.Linear(backbone_dim, feature_dim)

    def embed_segments(self, inputs: Tensor) -> Tensor:
        """The CNN alone: ``(B, T, C, H, W)`` -> ``(B, T, backbone_dim)``."""
        batch, length = inputs.shape[:2]
        embedded = self.backbone(inputs.flatten(0, 1))  # (B * T, backbone_dim)
        return embedded.view(batch, length, -1)

    def contextualise(self, segments: Tensor, mask: Tensor | None = None) -> Tensor:
        """The Bi-LSTM alone: ``(B, T, backbone_dim)`` -> ``(B, T, d_l)``, zeros at padding."""
        if self.temporal == "none":
            features = self.sequence(segments)
        elif mask is None or bool(mask.all()):
            features = self.sequence(segments)[0]  # (B, T, d_l)
        else:
            lengths = mask.sum(dim=1).cpu()
            packed = pack_padded_sequence(segments, lengths, batch_first=True, enforce_sorted=False)
            features = pad_packed_sequence(
                self.sequence(packed)[0], batch_first=True, total_length=segments.shape[1]
            )[0]  # (B, T, d_l)
        if mask is not None:
            features = features * mask[..., None]
        return features

    def forward(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, T, C, H, W)`` segments -> ``(B, T, d_l)`` features."""
        return self.contextualise(self.embed_segments(inputs), mask)


class Projector(nn.Module):
    """Barlow Twins' projector: (Linear-BN-ReLU) for every layer but the last, then Linear.

    Args:
        in_dim: feature width ``d_l``.
        dims: output width of each layer (Sec. 4.1: 2048, 4096, 4096).
    """

    def __init__(self, in_dim: int, dims: Sequence[int]) -> None:
        super().__init__()
        if not dims:
            raise ValueError("Projector needs at least one layer width in dims")
        layers: list[nn.Module] = []
        widths = [in_dim, *dims]
        for index in range(len(dims)):
            last = index == len(dims) - 1
            layers.append(nn.Linear(widths[index], widths[index + 1], bias=False))
            if not last:
                layers += [nn.BatchNorm1d(widths[index + 1]), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """``(N, in_dim)`` -> ``(N, dims[-1])``."""
        return self.layers(features)


@dataclass
class AVBTOutput:
    """Features and projections of a batch of videos (zeros at padded segments)."""

    audio_features: Tensor  # f_a (B, T, d_l)
    visual_features: Tensor  # f_v (B, T, d_l)
    audio_projection: Tensor  # Z_a (B, T, d)
    visual_projection: Tensor  # Z_v (B, T, d)


class AVBarlowTwins(nn.Module):
    """The two-stream audio-visual encoder and its projector(s).

    Args:
        audio_backbone: the audio CNN (1-channel log-mel input).
        visual_backbone: the visual CNN (RGB input).
        feature_dim: ``d_l`` (the paper's Bi-LSTMs output 512).
        temporal: ``bilstm`` or ``none``.
        projector_dims: projector layer widths.
        shared_projector: one projector for both modalities (Sec. 3.2.1; Table 4 ablates it).
    """

    def __init__(
        self,
        *,
        audio_backbone: BackboneConfig,
        visual_backbone: BackboneConfig,
        feature_dim: int = 512,
        temporal: str = "bilstm",
        projector_dims: Sequence[int] = (2048, 4096, 4096),
        shared_projector: bool = True,
    ) -> None:
        super().__init__()
        audio_cnn, audio_dim = build_backbone(audio_backbone, 1)
        visual_cnn, visual_dim = build_backbone(visual_backbone, 3)
        self.audio_encoder = SegmentEncoder(audio_cnn, audio_dim, feature_dim, temporal)
        self.visual_encoder = SegmentEncoder(visual_cnn, visual_dim, feature_dim, temporal)
        self.audio_projector = Projector(feature_dim, projector_dims)
        self.visual_projector = (
            self.audio_projector if shared_projector else Projector(feature_dim, projector_dims)
        )
        self.shared_projector = shared_projector
        self.feature_dim = feature_dim

    def project(self, features: Tensor, projector: nn.Module, mask: Tensor | None) -> Tensor:
        """Project the real segments of ``(B, T, d_l)`` (BatchNorm sees no padding)."""
        if mask is None:
            return projector(features.flatten(0, 1)).view(*features.shape[:2], -1)
        projected = projector(features[mask])  # (N_real, d)
        out = features.new_zeros(*features.shape[:2], projected.shape[-1])
        out[mask] = projected
        return out  # (B, T, d)

    def forward(self, log_mel: Tensor, frames: Tensor, mask: Tensor | None = None) -> AVBTOutput:
        """Encode and project a batch of videos: log-mel ``(B, T, 1, 96, 64)``, frames
        ``(B, T, 3, H, W)`` (one per segment), ``mask`` ``(B, T)``."""
        audio = self.audio_encoder(log_mel, mask)  # (B, T, d_l)
        visual = self.visual_encoder(frames, mask)  # (B, T, d_l)
        return AVBTOutput(
            audio,
            visual,
            self.project(audio, self.audio_projector, mask),
            self.project(visual, self.visual_projector, mask),
        )


def cross_correlation(
    audio_projection: Tensor, visual_projection: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Eq. (1) per video, averaged over the batch: ``(B, T, d)`` twice -> ``C`` ``(d, d)``.

    Each video's projections are centred and scaled along time over its real segments
    (Algorithm 1); ``C_ij = sum_t Za_ti Zv_tj / sqrt(sum_t Za_ti^2 sum_t Zv_tj^2)``. After the
    normalisation both sums in the denominator equal ``T - 1`` (unbiased std, as PyTorch's
    ``std`` in Algorithm 1), so ``C`` is the per-video Pearson correlation; Algorithm 1 omits
    this ``1 / (T - 1)`` and would make the invariance target ``T - 1``, not 1: the equation is
    followed. A dimension constant over a video's segments (std 0) contributes 0 to ``C``.

    Raises:
        ValueError: a video has fewer than 2 real segments, or the shapes differ.
    """
    if audio_projection.shape != visual_projection.shape or audio_projection.ndim != 3:
        raise ValueError(
            f"AV-BT needs two (B, T, d) projections of one shape, got "
            f"{tuple(audio_projection.shape)} and {tuple(visual_projection.shape)}"
        )
    if mask is None:
        mask = torch.ones(
            audio_projection.shape[:2], dtype=torch.bool, device=audio_projection.device
        )
    lengths = mask.sum(dim=1)  # (B,)
    if bool((lengths < 2).any()):
        raise ValueError(
            "AV-BT correlates along time and needs at least 2 segments per video, got "
            f"{lengths.min().item()}"
        )
    weights = mask[..., None].to(audio_projection.dtype)  # (B, T, 1)

    def normalise(projection: Tensor) -> Tensor:
        mean = (projection * weights).sum(dim=1, keepdim=True) / lengths[:, None, None]
        centred = (projection - mean) * weights  # (B, T, d), zeros at padding
        variance = centred.pow(2).sum(dim=1, keepdim=True) / (lengths[:, None, None] - 1)
        return centred / variance.sqrt().clamp_min(1e-6)  # Algorithm 1's z.std(1)

    audio, visual = normalise(audio_projection), normalise(visual_projection)
    numerator = audio.transpose(1, 2) @ visual  # (B, d, d), sum over t
    norms = audio.pow(2).sum(dim=1)[:, :, None] * visual.pow(2).sum(dim=1)[:, None, :]
    correlation = numerator / norms.sqrt().clamp_min(1e-6)  # (B, d, d), Eq. (1)
    return correlation.mean(dim=0)  # (d, d), averaged over the videos


def avbt_loss(
    audio_projection: Tensor,
    visual_projection: Tensor,
    off_diagonal_weight: float,
    mask: Tensor | None = None,
) -> Tensor:
    """Eq. (2): ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2`` with ``C`` of
    :func:`cross_correlation`.

    Args:
        audio_projection: ``Z_a`` ``(B, T, d)``.
        visual_projection: ``Z_v`` ``(B, T, d)``, the same videos and segments.
        off_diagonal_weight: lambda (5e-3 in Sec. 4.1).
        mask: ``(B, T)`` bool, True for real segments; None when none is padded.
    """
    correlation = cross_correlation(audio_projection, visual_projection, mask)
    diagonal = torch.diagonal(correlation)
    invariance = (1.0 - diagonal).pow(2).sum()
    redundancy = correlation.pow(2).sum() - diagonal.pow(2).sum()
    return invariance + off_diagonal_weight * redundancy


__all__ = [
    "AVBTOutput",
    "AVBarlowTwins",
    "BackboneConfig",
    "ConvEncoder",
    "Projector",
    "SegmentEncoder",
    "avbt_loss",
    "build_backbone",
    "cross_correlation",
]
