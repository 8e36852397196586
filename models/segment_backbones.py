"""Pretrained 2-D CNN backbones of AV-BT's segment encoders, loaded from local files only.

AV-BT (audio-visual Barlow Twins, Applied Sciences 12(24) 12622, Sec. 3.2 and 4.1) embeds
each 1-second segment with two ImageNet/AudioSet-pretrained CNNs: "ResNet-50 pretrained on
ImageNet (removing the final fully connected layer)" for a video frame and "VGGish pretrained
on AudioSet (outputting 128-d)" for a 96 x 64 log-mel spectrogram. This module provides:

- :class:`VGGish`: the VGGish network (Hershey et al., "CNN Architectures for Large-Scale
  Audio Classification", ICASSP 2017, arXiv 1609.09430), ``(B, 1, 96, 64) -> (B, 128)``.
  Its parameter names equal those of the PyTorch port ``harritaylor/torchvggish``, so that
  port's converted AudioSet weights ``vggish-10086976.pth`` load strictly. Only the network:
  no audio front end (waveform -> log-mel) and no PCA/quantisation post-processing.
- :func:`resnet50_trunk`: torchvision's ResNet-50 without its classifier,
  ``(B, 3, H, W) -> (B, 2048)``; torchvision's ImageNet files load after dropping ``fc.*``.
- :data:`BACKBONES`, :func:`check_backbone_weights` (cheap, for config validation) and
  :func:`build_backbone` (network plus optional weights).

Nothing is ever downloaded: ``weights=None`` means random initialisation (tests, CPU demo,
throughput benchmarks); a path that does not exist raises
:class:`MissingBackboneWeightsError` saying where to get the file.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import torch
import torchvision
from torch import Tensor, nn

VGGISH_WEIGHTS_URL = (
    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
)
RESNET50_WEIGHTS_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"

VGGISH_INPUT_SHAPE = (1, 96, 64)  # (channels, frames of 10 ms, mel bands)
_VGGISH_STAGES = ((64,), (128,), (256, 256), (512, 512))  # conv widths; 2x2 max-pool after each
_VGGISH_FEATURE_MAP = (512, 6, 4)  # (C, frames, bands) after four 2x2 poolings of 96 x 64
_VGGISH_HIDDEN = 4096
_VGGISH_EMBEDDING = 128


class VGGish(nn.Module):
    """VGGish (arXiv 1609.09430): a VGG-like CNN over one 0.96 s log-mel patch.

    ``features``: conv3x3(64)-ReLU, pool, conv3x3(128)-ReLU, pool, 2 x conv3x3(256)-ReLU,
    pool, 2 x conv3x3(512)-ReLU, pool (2x2 max-pools, stride 2; convs padded to keep size).
    ``embeddings``: Linear(12288, 4096)-ReLU, Linear(4096, 4096)-ReLU, Linear(4096, 128)-ReLU.
    The module indices (``features.0`` ... ``features.13``, ``embeddings.0/2/4``) are those of
    ``harritaylor/torchvggish``, whose ``vggish-10086976.pth`` loads with ``strict=True``.

    The final ReLU is kept, as torchvggish keeps it (the first TensorFlow release had it;
    the current TensorFlow VGGish returns the pre-activation, torchvggish issue #24), so the
    128-d embedding is non-negative. Replace ``embeddings[5]`` with ``nn.Identity()`` for the
    pre-activation embedding.

    Input: log-mel patches as made by the VGGish front end (16 kHz mono, 25 ms windows every
    10 ms, 64 mel bands over 125-7500 Hz, ``log(mel + 0.01)``), shaped ``(B, 1, 96, 64)``.
    The constructor takes no arguments: the layout is fixed by the pretrained weights.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = VGGISH_INPUT_SHAPE[0]
        for stage in _VGGISH_STAGES:
            for width in stage:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2, stride=2))
        self.features = nn.Sequential(*layers)
        flat = _VGGISH_FEATURE_MAP[0] * _VGGISH_FEATURE_MAP[1] * _VGGISH_FEATURE_MAP[2]
        self.embeddings = nn.Sequential(
            nn.Linear(flat, _VGGISH_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(_VGGISH_HIDDEN, _VGGISH_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(_VGGISH_HIDDEN, _VGGISH_EMBEDDING),
            nn.ReLU(inplace=True),  # kept as in torchvggish (see the class docstring)
        )

    def forward(self, log_mel: Tensor) -> Tensor:
        """``(B, 1, 96, 64)`` log-mel patches -> ``(B, 128)`` embeddings."""
        if log_mel.dim() != 4 or tuple(log_mel.shape[1:]) != VGGISH_INPUT_SHAPE:
            raise ValueError(
                f"VGGish expects log-mel patches shaped (B, 1, 96, 64) (96 frames of 10 ms, "
                f"64 mel bands), got {tuple(log_mel.shape)}; frame the spectrogram into "
                "0.96 s patches first"
            )
        maps = self.features(log_mel)  # (B, 512, 6, 4)
        # The TensorFlow weights flatten channels-last: (B, frames, bands, C) -> (B, 12288).
        maps = maps.permute(0, 2, 3, 1)  # (B, 6, 4, 512)
        return self.embeddings(maps.reshape(maps.shape[0], -1))  # (B, 128)


def resnet50_trunk() -> nn.Module:
    """torchvision ResNet-50 (random initialisation) with ``fc`` replaced by ``nn.Identity()``:
    ``(B, 3, H, W)`` ImageNet-normalised RGB -> ``(B, 2048)`` global-average-pooled features."""
    network = torchvision.models.resnet50(weights=None)
    network.fc = nn.Identity()
    return network


class MissingBackboneWeightsError(FileNotFoundError):
    """A backbone's weights file is not where the config says; the message names the model,
    the path searched and where to download the file."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a segment backbone is and where its pretrained weights come from.

    Args:
        name: key in :data:`BACKBONES` (``vggish``, ``resnet50``).
        display_name: model and pretraining data, for messages (``"VGGish (AudioSet)"``).
        modality: ``audio`` or ``visual``.
        output_dim: width of the ``(B, output_dim)`` embedding.
        weights_file: expected file name of the pretrained weights.
        how_to_get: one sentence with the download URL and where to put the file.
    """

    name: str
    display_name: str
    modality: Literal["audio", "visual"]
    output_dim: int
    weights_file: str
    how_to_get: str


BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType(
    {
        "vggish": BackboneSpec(
            name="vggish",
            display_name="VGGish (AudioSet)",
            modality="audio",
            output_dim=_VGGISH_EMBEDDING,
            weights_file="vggish-10086976.pth",
            how_to_get=(
                f"Download {VGGISH_WEIGHTS_URL} (the torchvggish port of the AudioSet "
                "weights) on a machine with network access, copy it to this machine (e.g. "
                "weights/vggish-10086976.pth) and point the config's weights path at it."
            ),
        ),
        "resnet50": BackboneSpec(
            name="resnet50",
            display_name="ResNet-50 (ImageNet)",
            modality="visual",
            output_dim=2048,
            weights_file="resnet50-0676ba61.pth",
            how_to_get=(
                f"Download {RESNET50_WEIGHTS_URL} (torchvision IMAGENET1K_V1; "
                "resnet50-11ad3fa6.pth, IMAGENET1K_V2, also loads) on a machine with network "
                "access, copy it to this machine (e.g. weights/resnet50-0676ba61.pth) and "
                "point the config's weights path at it."
            ),
        ),
    }
)

_BUILDERS: Mapping[str, Callable[[], nn.Module]] = {"vggish": VGGish, "resnet50": resnet50_trunk}
_DROPPED_PREFIXES: Mapping[str, tuple[str, ...]] = {"resnet50": ("fc.",)}  # classifier
_KEYS_SHOWN = 5  # how many mismatched keys an error lists


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(
            f"unknown segment backbone {name!r}; valid backbones: {', '.join(BACKBONES)}"
        )
    return BACKBONES[name]


def check_backbone_weights(name: str, weights: str | Path | None) -> Path | None:
    """Check, without building the network, that ``name``'s weights file exists.

    Args:
        name: a key of :data:`BACKBONES`.
        weights: path of a ``.pth`` state dict, or None for random initialisation.

    Returns:
        The path (``~`` expanded), or None when ``weights`` is None.

    Raises:
        ValueError: ``name`` is not a known backbone.
        MissingBackboneWeightsError: ``weights`` is given but is not a file.
    """
    spec = _spec(name)
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MissingBackboneWeightsError(
            f"{spec.display_name} weights not found: no file at {path} "
            f"(expected {spec.weights_file}). {spec.how_to_get} Nothing is downloaded at run "
            "time; leave the weights path unset (None) for a randomly initialised backbone."
        )
    return path


def _read_state_dict(path: Path, spec: BackboneSpec) -> dict[str, Tensor]:
    """The state dict in ``path`` (bare, or under a ``state_dict`` key)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(
            f"{path}: cannot read it as a PyTorch state dict for {spec.display_name} ({err}); "
            f"replace it with a complete copy. {spec.how_to_get}"
        ) from err
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(
            f"{path}: holds a {type(loaded).__name__}, not a state dict of "
            f"{spec.display_name}. {spec.how_to_get}"
        )
    return dict(loaded)


def _check_keys(
    path: Path, spec: BackboneSpec, state_dict: Mapping[str, Tensor], network: nn.Module
) -> None:
    """Raise ValueError naming the first missing, unexpected and wrongly shaped keys."""
    expected = network.state_dict()
    # BatchNorm fills in absent step counters (older torchvision files have none).
    missing = [
        key
        for key in expected
        if key not in state_dict and not key.endswith(".num_batches_tracked")
    ]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:_KEYS_SHOWN])}"
        + (", ..." if len(keys) > _KEYS_SHOWN else "")
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", reshaped),
        )
        if keys
    ]
    raise ValueError(
        f"{path} does not match {spec.display_name}: {'; '.join(problems)}. "
        f"Use {spec.weights_file}. {spec.how_to_get}"
    )


def build_backbone(name: str, weights: str | Path | None = None) -> nn.Module:
    """Build a segment backbone, with its pretrained weights when ``weights`` is given.

    The network is returned in training mode (PyTorch's default); call ``.eval()`` for
    feature extraction (ResNet-50's BatchNorm uses its running statistics only then).

    Args:
        name: ``vggish`` (``(B, 1, 96, 64) -> (B, 128)``) or ``resnet50``
            (``(B, 3, H, W) -> (B, 2048)``).
        weights: path of a ``.pth`` state dict (bare or under ``state_dict``), or None for
            random initialisation. ResNet-50's ``fc.*`` entries are dropped, then every
            key must match (BatchNorm's ``num_batches_tracked`` counters may be absent).

    Raises:
        ValueError: unknown ``name``; the file is not a readable state dict or its keys or
            shapes do not match the network.
        MissingBackboneWeightsError: ``weights`` is given but is not a file.
    """
    spec = _spec(name)
    path = check_backbone_weights(name, weights)
    network = _BUILDERS[name]()
    if path is None:
        return network
    state_dict = _read_state_dict(path, spec)
    dropped = _DROPPED_PREFIXES.get(name, ())
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith(dropped)}
    _check_keys(path, spec, state_dict, network)
    network.load_state_dict(state_dict, strict=True)
    return network
