"""ResNet visual encoder (torchvision): a snippet embedding and the feature pyramid of its stages.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385), with
torchvision's ImageNet weights. ``encode`` gives the global average of the last stage (512-d for
ResNet-18/34, 2048-d for ResNet-50/101), the image embedding of EZ-VSL's and M2VSL's ResNet
encoders. ``encode_grid`` gives the multi-scale visual features that M2VSL's MMC and MMT read
(arXiv 2409.00486, Sec. 3: "a bag of multi-scale visual features"; the summary does not name
the stages, so ``layers`` picks them, default the last three): the maps of the chosen stages
(strides 8, 16, 32 for ``layer2``-``layer4``: a 224x224 frame gives 28x28, 14x14 and 7x7
cells), packed into one grid at the coarsest stage's resolution. A finer stage is packed
space-to-depth (``torch.nn.functional.pixel_unshuffle``, lossless), the stages concatenated,
finest first; ``grid_levels`` records the layout, ``(channels, factor)`` per stage, and the
localisers unpack it (:func:`models.m2vsl_parts.unpack_levels`). The store then needs, per
snippet, ``sum_l c_l h_l w_l`` floats: 175,616 (686 KiB) for ResNet-18's three last stages at
224x224, against 100,352 for CLIP ViT-B/16's 14x14x512 grid.

Weights are read from a local file only: ``weights_path``, or torchvision's checkpoint of the
``weights`` tag in the torch hub cache (``torch.hub.get_dir()/checkpoints``) or ``cache_dir``; a
missing file raises :class:`~pipeline.encoders.base.MissingWeightsError` at once, unless
``download: true`` lets torchvision fetch it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.encoders.base import (
    MissingWeightsError,
    VisualEncoder,
    check_bool,
    clips_to_pixels,
    effective_precision,
    inference_context,
    positive_int,
    positive_int_pair,
)
from pipeline.encoders.registry import VISUAL_ENCODERS
from pipeline.runtime import resolve_device

if TYPE_CHECKING:
    from torch import nn

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
STAGE_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}  # pixels per cell
# torchvision's ImageNet normalisation, the one its ResNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet_checkpoint(
    arch: str,
    weights: str | None,
    weights_path: str | None,
    cache_dir: str | None,
    download: bool = False,
) -> Path | None:
    """The local file of a ResNet's weights (cheap: nothing is loaded).

    Args:
        arch: one of :data:`ARCHITECTURES`.
        weights: torchvision weights tag of ``arch`` (``IMAGENET1K_V1``); ignored with
            ``weights_path``.
        weights_path: a local state-dict file.
        cache_dir: the folder torchvision downloads into; ``None``:
            ``torch.hub.get_dir()/checkpoints``.
        download: return ``None`` for a tag whose file is not cached (torchvision may fetch it)
            instead of raising.

    Raises:
        ValueError: an unknown architecture or tag.
        MissingWeightsError: ``weights_path`` does not exist, or the tag's file is not cached
            and ``download`` is false; the message says how to get it.
    """
    from torchvision.models import get_model_weights

    if arch not in ARCHITECTURES:
        raise ValueError(f"resnet: config key 'arch' must be one of {ARCHITECTURES}, got {arch!r}")
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"ResNet model {arch}: weights_path {weights_path!r} does not exist; set "
                "`weights_path:` to a torchvision state-dict file"
            )
        return path
    tags = get_model_weights(arch)
    if weights not in tags.__members__:
        raise ValueError(
            f"resnet: config key 'weights' must be a torchvision weights tag of {arch} "
            f"({list(tags.__members__)}) or set 'weights_path', got {weights!r}"
        )
    directory = Path(cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints"))
    url = tags[weights].url
    path = directory / os.path.basename(url)
    if path.is_file():
        return path
    if download:
        return None
    raise MissingWeightsError(
        f"ResNet model {arch} (weights {weights!r}) is not in the local cache ({directory}) and "
        f"`download` is false; fetch {url} on a machine with network (or run "
        f"`torchvision.models.{arch}(weights={weights!r})` there) and copy the file into that "
        "folder, set `weights_path:` to it, or set `download: true`"
    )


def load_resnet(
    arch: str, weights: str | None, weights_path: str | None, download: bool, cache_dir: str | None
) -> nn.Module:
    """torchvision's ``arch`` with its weights, from a local file (or fetched, with
    ``download``).

    Raises:
        MissingWeightsError: the weights are not on this machine and ``download`` is false.
    """
    from torchvision.models import get_model, get_model_weights

    path = resnet_checkpoint(arch, weights, weights_path, cache_dir, download)
    model = get_model(arch, weights=None)
    if path is None:
        state = get_model_weights(arch)[weights].get_state_dict(progress=False, model_dir=cache_dir)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


@VISUAL_ENCODERS.register("resnet")
class ResNetVisualEncoder(VisualEncoder):
    """torchvision ResNet; embedding = mean over frames of the pooled last stage, grid = the
    chosen stages' maps packed into one grid (module docstring).

    Args:
        arch: torchvision architecture, one of :data:`ARCHITECTURES`.
        weights: torchvision weights tag (``IMAGENET1K_V1``, ``IMAGENET1K_V2`` for ResNet-50+).
        weights_path: local state-dict file; overrides the tag's file when set.
        download: allow torchvision to fetch the tag's weights.
        cache_dir: torchvision's download folder; ``None``: ``torch.hub.get_dir()/checkpoints``.
        layers: the stages of the grid's pyramid, in network order, from
            ``layer1``-``layer4``.
        frame_size: ``(width, height)`` of the frames; multiples of the coarsest chosen
            stage's stride, so that the stages' grids nest exactly.
        frames_per_snippet: frames sampled per snippet and averaged.
        normalize: L2-normalise each frame's embedding and each stage's cells.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        fp16: float16 autocast on CUDA (ignored on CPU).
    """

    def __init__(
        self,
        *,
        arch: str = "resnet18",
        weights: str | None = "IMAGENET1K_V1",
        weights_path: str | None = None,
        download: bool = False,
        cache_dir: str | None = None,
        layers: Sequence[str] = ("layer2", "layer3", "layer4"),
        frame_size: Sequence[int] = (224, 224),
        frames_per_snippet: int = 1,
        normalize: bool = True,
        device: str = "auto",
        fp16: bool = False,
    ) -> None:
        check_bool(download, "download")
        model = load_resnet(arch, weights, weights_path, download, cache_dir)
        self._setup(
            model,
            identity={"arch": arch, "weights": weights, "weights_path": weights_path},
            layers=layers,
            frame_size=frame_size,
            frames_per_snippet=frames_per_snippet,
            normalize=normalize,
            device=device,
            fp16=fp16,
        )

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        *,
        arch: str = "custom",
        layers: Sequence[str] = ("layer2", "layer3", "layer4"),
        frame_size: Sequence[int] = (224, 224),
        frames_per_snippet: int = 1,
        normalize: bool = True,
        device: str = "cpu",
        fp16: bool = False,
    ) -> ResNetVisualEncoder:
        """Wrap an already built torchvision ResNet (e.g. randomly initialised, in tests)."""
        encoder = cls.__new__(cls)
        encoder._setup(
            model,
            identity={"arch": arch, "weights": None, "weights_path": None},
            layers=layers,
            frame_size=frame_size,
            frames_per_snippet=frames_per_snippet,
            normalize=normalize,
            device=device,
            fp16=fp16,
        )
        return encoder

    def _setup(
        self,
        model: nn.Module,
        *,
        identity: dict[str, Any],
        layers: Sequence[str],
        frame_size: Sequence[int],
        frames_per_snippet: int,
        normalize: bool,
        device: str,
        fp16: bool,
    ) -> None:
        """Check the options, keep the network on ``device`` and work out the output sizes."""
        layers = list(layers) if isinstance(layers, list | tuple) else layers
        order = list(STAGE_STRIDES)
        if (
            not isinstance(layers, list)
            or not layers
            or any(layer not in STAGE_STRIDES for layer in layers)
            or [order.index(layer) for layer in layers] != sorted({order.index(x) for x in layers})
        ):
            raise ValueError(
                f"resnet: config key 'layers' must list distinct stages of {order} in network "
                f"order, got {layers!r}"
            )
        self.layers = tuple(layers)
        self.frame_size = positive_int_pair(list(frame_size), "frame_size")
        coarsest = STAGE_STRIDES[self.layers[-1]]
        if any(side % coarsest for side in self.frame_size):
            raise ValueError(
                f"resnet: config key 'frame_size' {list(self.frame_size)} must be multiples of "
                f"{coarsest} (the stride of {self.layers[-1]}), so that the stages' grids nest"
            )
        self.frames_per_snippet = positive_int(frames_per_snippet, "frames_per_snippet")
        self.normalize = check_bool(normalize, "normalize")
        self._fp16 = check_bool(fp16, "fp16")
        self._device = resolve_device(device)
        self._identity = identity
        self._model = model.to(self._device).eval()
        width, height = self.frame_size
        self.grid_shape = (height // coarsest, width // coarsest)
        self.grid_levels = tuple(
            (self._channels(layer), coarsest // STAGE_STRIDES[layer]) for layer in self.layers
        )
        self.grid_dim = sum(c * f * f for c, f in self.grid_levels)
        self.dim = self._channels("layer4")

    def _channels(self, layer: str) -> int:
        """Output channels of a stage: its last block's last batch norm."""
        stage = getattr(self._model, layer)
        return int(
            [m for m in stage.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1].weight.shape[0]
        )

    def _forward(self, clips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Snippet embeddings (B, D) and packed grids (B, H', W', Dg), means over the frames."""
        batch, frames = clips.shape[:2]
        pixels = clips_to_pixels(clips, IMAGENET_MEAN, IMAGENET_STD, self._device)
        net = self._model
        maps = []
        with inference_context(self._device, self._fp16):
            x = pixels.flatten(0, 1)  # (B*F, 3, H, W)
            x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
            for layer in STAGE_STRIDES:
                x = getattr(net, layer)(x)
                if layer in self.layers:
                    maps.append(x.float())  # (B*F, c_l, h_l, w_l)
            embedding = x.float().mean(dim=(2, 3))  # (B*F, D): the global average pool
        if self.normalize:
            embedding = F.normalize(embedding, dim=1)
            maps = [F.normalize(m, dim=1) for m in maps]
        embedding = embedding.reshape(batch, frames, -1).mean(dim=1)  # (B, D)
        packed = []
        for m, (_, factor) in zip(maps, self.grid_levels, strict=True):
            m = m.reshape(batch, frames, *m.shape[1:]).mean(dim=1)  # (B, c_l, h_l, w_l)
            packed.append(F.pixel_unshuffle(m, factor) if factor > 1 else m)
        grid = torch.cat(packed, dim=1).permute(0, 2, 3, 1)  # (B, H', W', Dg)
        return embedding, grid

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> mean pooled embedding ``(B, D)`` float32."""
        return self.encode_with_grid(clips)[0]

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> packed pyramid ``(B, H', W', Dg)`` float32."""
        return self.encode_with_grid(clips)[1]

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))`` from one forward pass."""
        self.check_clips(clips)
        embedding, grid = self._forward(clips)
        return embedding.cpu().numpy(), np.ascontiguousarray(grid.cpu().numpy())

    def config(self) -> dict[str, Any]:
        """Model identity, preprocessing, output sizes, pyramid layout and precision."""
        import torchvision

        return {
            "name": self.name,
            **self._identity,
            "layers": list(self.layers),
            "frame_size": list(self.frame_size),
            "frames_per_snippet": self.frames_per_snippet,
            "normalize": self.normalize,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "dim": self.dim,
            "grid_shape": list(self.grid_shape),
            "grid_dim": self.grid_dim,
            "grid_levels": [list(level) for level in self.grid_levels],
            "precision": effective_precision(self._device, self._fp16),
            "library": f"torchvision {torchvision.__version__}",
        }
