"""CLIP image tower (open_clip) as a visual encoder.

A snippet's embedding is the mean of its frames' image embeddings (Radford et al., CLIP,
arXiv:2103.00020; open_clip weights: Cherti et al., arXiv:2212.07143). The spatial grid is the
ViT's final patch tokens, passed through the same ``ln_post`` and projection as the class
token, averaged over frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.encoders.base import (
    VisualEncoder,
    check_bool,
    clips_to_pixels,
    effective_precision,
    inference_context,
    positive_int,
)
from pipeline.encoders.hub import load_open_clip
from pipeline.encoders.registry import VISUAL_ENCODERS
from pipeline.runtime import resolve_device


@VISUAL_ENCODERS.register("clip")
class CLIPVisualEncoder(VisualEncoder):
    """open_clip image tower; snippet embedding = mean over frames of the image embeddings.

    Frames are scaled to [0, 1] and normalised with the model's mean/std on the device; they
    must arrive at the model's image size (``frame_size``). With ``normalize`` each frame
    embedding (and each grid token) is L2-normalised before averaging over frames, so the
    snippet embedding's norm is at most 1. ``encode_grid`` is available for plain ViT towers
    (class-token or average pooling, no attentional pooler).

    Args:
        model: open_clip architecture name (``open_clip.list_models()``).
        pretrained: open_clip pretrained tag; also picks the normalisation constants.
        weights_path: local checkpoint file; overrides the tag's weights when set.
        download: allow fetching the tag's weights from the network.
        cache_dir: weights cache directory; ``None`` for open_clip's defaults.
        frames_per_snippet: frames sampled per snippet and averaged.
        normalize: L2-normalise frame embeddings and grid tokens.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        fp16: float16 autocast on CUDA (ignored on CPU).
    """

    def __init__(
        self,
        *,
        model: str = "ViT-B-32",
        pretrained: str | None = "laion2b_s34b_b79k",
        weights_path: str | None = None,
        download: bool = False,
        cache_dir: str | None = None,
        frames_per_snippet: int = 4,
        normalize: bool = True,
        device: str = "auto",
        fp16: bool = False,
    ) -> None:
        check_bool(download, "download")
        clip_model, mean, std = load_open_clip(model, pretrained, weights_path, download, cache_dir)
        self._setup(
            clip_model,
            mean=mean,
            std=std,
            identity={"model": model, "pretrained": pretrained, "weights_path": weights_path},
            frames_per_snippet=frames_per_snippet,
            normalize=normalize,
            device=device,
            fp16=fp16,
        )

    @classmethod
    def from_model(
        cls,
        clip_model: nn.Module,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        model_name: str = "custom",
        frames_per_snippet: int = 4,
        normalize: bool = True,
        device: str = "cpu",
        fp16: bool = False,
    ) -> CLIPVisualEncoder:
        """Wrap an already built open_clip model (e.g. a tiny random one in tests).

        The image tower is used in place: moved to ``device``, set to eval mode and, for a
        ViT, switched to also return its patch tokens.

        Args:
            clip_model: open_clip ``CLIP`` (or any module with a ``visual`` tower).
            mean: per-channel normalisation mean of [0, 1] pixels.
            std: per-channel normalisation std.
            model_name: name recorded in ``config()``.
            frames_per_snippet: frames sampled per snippet and averaged.
            normalize: L2-normalise frame embeddings and grid tokens.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            fp16: float16 autocast on CUDA (ignored on CPU).
        """
        encoder = cls.__new__(cls)
        encoder._setup(
            clip_model,
            mean=tuple(mean),
            std=tuple(std),
            identity={"model": model_name, "pretrained": None, "weights_path": None},
            frames_per_snippet=frames_per_snippet,
            normalize=normalize,
            device=device,
            fp16=fp16,
        )
        return encoder

    def _setup(
        self,
        clip_model: nn.Module,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        identity: dict[str, Any],
        frames_per_snippet: int,
        normalize: bool,
        device: str,
        fp16: bool,
    ) -> None:
        """Keep the image tower on ``device`` and work out output sizes with one dummy frame."""
        from open_clip.transformer import VisionTransformer

        self._device = resolve_device(device)
        self._fp16 = check_bool(fp16, "fp16")
        self._identity = identity
        self.frames_per_snippet = positive_int(frames_per_snippet, "frames_per_snippet")
        self.normalize = check_bool(normalize, "normalize")
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        visual = clip_model.visual if hasattr(clip_model, "visual") else clip_model
        self._visual = visual.to(self._device).eval()
        image_size = visual.image_size
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.frame_size = (int(width), int(height))
        has_grid = (
            isinstance(visual, VisionTransformer)
            and visual.attn_pool is None
            and not visual.final_ln_after_pool
            and visual.pool_type in ("tok", "avg")
        )
        if has_grid:
            visual.output_tokens = True
            self.grid_shape = (int(visual.grid_size[0]), int(visual.grid_size[1]))
        else:
            self.grid_shape = None
        dummy = np.zeros((1, 1, height, width, 3), dtype=np.uint8)
        frame_embeddings, grid = self._forward(dummy)
        self.dim = int(frame_embeddings.shape[-1])
        self.grid_dim = None if grid is None else int(grid.shape[-1])

    def _forward(self, clips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame embeddings ``(B, F, D)`` and per-frame grids ``(B, F, H', W', Dg)``."""
        batch, frames = clips.shape[:2]
        pixels = clips_to_pixels(clips, self.mean, self.std, self._device)  # (B, F, 3, H, W)
        with inference_context(self._device, self._fp16):
            output = self._visual(pixels.flatten(0, 1))  # input (B*F, 3, H, W)
            tokens = None
            if self.grid_shape is not None:
                output, tokens = output  # (B*F, D), (B*F, H'*W', width)
                if self._visual.proj is not None:
                    tokens = tokens @ self._visual.proj  # (B*F, H'*W', Dg)
        frame_embeddings = output.float().reshape(batch, frames, -1)  # (B, F, D)
        if self.normalize:
            frame_embeddings = F.normalize(frame_embeddings, dim=-1)
        if tokens is None:
            return frame_embeddings, None
        grid = tokens.float().reshape(batch, frames, *self.grid_shape, -1)  # (B, F, H', W', Dg)
        if self.normalize:
            grid = F.normalize(grid, dim=-1)
        return frame_embeddings, grid

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> mean frame embedding ``(B, D)`` float32."""
        self.check_clips(clips)
        frame_embeddings, _ = self._forward(clips)
        return frame_embeddings.mean(dim=1).cpu().numpy()

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> patch-token grid ``(B, H', W', Dg)`` float32."""
        if self.grid_shape is None:
            return super().encode_grid(clips)
        self.check_clips(clips)
        _, grid = self._forward(clips)
        return grid.mean(dim=1).cpu().numpy()

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))`` from one forward pass."""
        if self.grid_shape is None:
            return super().encode_with_grid(clips)
        self.check_clips(clips)
        frame_embeddings, grid = self._forward(clips)
        return frame_embeddings.mean(dim=1).cpu().numpy(), grid.mean(dim=1).cpu().numpy()

    def config(self) -> dict[str, Any]:
        """Model identity, preprocessing, output sizes and precision."""
        import open_clip

        return {
            "name": self.name,
            **self._identity,
            "frames_per_snippet": self.frames_per_snippet,
            "normalize": self.normalize,
            "frame_size": list(self.frame_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "dim": self.dim,
            "grid_shape": None if self.grid_shape is None else list(self.grid_shape),
            "grid_dim": self.grid_dim,
            "precision": effective_precision(self._device, self._fp16),
            "library": f"open_clip_torch {open_clip.__version__}",
        }
