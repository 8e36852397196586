"""VideoMAE video transformer (transformers ``VideoMAEModel``) as a visual encoder.

Tong et al., "VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised
Video Pre-Training", arXiv:2203.12602. The snippet embedding is the mean of the last hidden
state over all space-time tokens (the paper's fine-tuning head pools the same way before its
``fc_norm``); the grid is the last hidden state averaged over the temporal tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.encoders.base import (
    VisualEncoder,
    check_bool,
    clips_to_pixels,
    effective_precision,
    inference_context,
)
from pipeline.encoders.hub import commit_hash, load_hf_pretrained
from pipeline.encoders.registry import VISUAL_ENCODERS
from pipeline.runtime import resolve_device

if TYPE_CHECKING:
    from transformers import VideoMAEModel


@VISUAL_ENCODERS.register("videomae")
class VideoMAEVisualEncoder(VisualEncoder):
    """VideoMAE backbone; snippet embedding = mean-pooled last hidden state.

    ``frames_per_snippet`` is the model's ``num_frames`` (16 for the released checkpoints) and
    ``frame_size`` its square ``image_size``; pixels are normalised with the image processor's
    ``image_mean`` / ``image_std``.

    Args:
        model: Hugging Face hub id or local directory (model + ``preprocessor_config.json``).
        download: allow fetching from the hub.
        cache_dir: Hugging Face cache directory; ``None`` for ``HF_HUB_CACHE``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        fp16: float16 autocast on CUDA (ignored on CPU).
    """

    def __init__(
        self,
        *,
        model: str = "MCG-NJU/videomae-base-finetuned-kinetics",
        download: bool = False,
        cache_dir: str | None = None,
        device: str = "auto",
        fp16: bool = False,
    ) -> None:
        from transformers import VideoMAEImageProcessor, VideoMAEModel

        check_bool(download, "download")
        video_model = load_hf_pretrained(
            VideoMAEModel.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="VideoMAE model",
        )
        processor = load_hf_pretrained(
            VideoMAEImageProcessor.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="VideoMAE image processor",
        )
        self._setup(
            video_model,
            image_mean=tuple(processor.image_mean),
            image_std=tuple(processor.image_std),
            identity={"model": model, "revision": commit_hash(video_model)},
            device=device,
            fp16=fp16,
        )

    @classmethod
    def from_model(
        cls,
        video_model: VideoMAEModel,
        *,
        image_mean: tuple[float, ...],
        image_std: tuple[float, ...],
        model_name: str = "custom",
        device: str = "cpu",
        fp16: bool = False,
    ) -> VideoMAEVisualEncoder:
        """Wrap an already built ``VideoMAEModel`` (e.g. a tiny random one in tests).

        The model is used in place: moved to ``device`` and set to eval mode.

        Args:
            video_model: the model; its config gives frames, image and patch sizes.
            image_mean: per-channel normalisation mean of [0, 1] pixels.
            image_std: per-channel normalisation std.
            model_name: name recorded in ``config()``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            fp16: float16 autocast on CUDA (ignored on CPU).
        """
        encoder = cls.__new__(cls)
        encoder._setup(
            video_model,
            image_mean=tuple(image_mean),
            image_std=tuple(image_std),
            identity={"model": model_name, "revision": None},
            device=device,
            fp16=fp16,
        )
        return encoder

    def _setup(
        self,
        video_model: VideoMAEModel,
        *,
        image_mean: tuple[float, ...],
        image_std: tuple[float, ...],
        identity: dict[str, Any],
        device: str,
        fp16: bool,
    ) -> None:
        """Keep the model on ``device`` and read sizes from its config."""
        self._device = resolve_device(device)
        self._fp16 = check_bool(fp16, "fp16")
        self._identity = identity
        self._model = video_model.to(self._device).eval()
        model_config = video_model.config
        self.mean = tuple(float(v) for v in image_mean)
        self.std = tuple(float(v) for v in image_std)
        self.frames_per_snippet = int(model_config.num_frames)
        self.frame_size = (int(model_config.image_size), int(model_config.image_size))
        patches_per_side = int(model_config.image_size) // int(model_config.patch_size)
        self.grid_shape = (patches_per_side, patches_per_side)
        self.temporal_tokens = self.frames_per_snippet // int(model_config.tubelet_size)
        self.dim = self.grid_dim = int(model_config.hidden_size)

    def check_clips(self, clips: np.ndarray) -> None:
        """The base checks plus exactly ``frames_per_snippet`` frames per clip."""
        super().check_clips(clips)
        if clips.shape[1] != self.frames_per_snippet:
            raise ValueError(
                f"visual encoder {self.name!r}: clips have {clips.shape[1]} frames but the model "
                f"takes exactly frames_per_snippet={self.frames_per_snippet}"
            )

    def _hidden_grid(self, clips: np.ndarray) -> torch.Tensor:
        """Last hidden state as a space-time grid ``(B, T', H', W', D)`` float32."""
        self.check_clips(clips)
        batch = clips.shape[0]
        pixels = clips_to_pixels(clips, self.mean, self.std, self._device)  # (B, F, 3, H, W)
        with inference_context(self._device, self._fp16):
            hidden = self._model(pixel_values=pixels).last_hidden_state  # (B, T'*H'*W', D)
        # Patch embedding is a Conv3d flattened in (T', H', W') order.
        return hidden.float().reshape(batch, self.temporal_tokens, *self.grid_shape, -1)

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> mean token embedding ``(B, D)`` float32."""
        return self._hidden_grid(clips).mean(dim=(1, 2, 3)).cpu().numpy()

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> token grid ``(B, H', W', D)`` float32."""
        return self._hidden_grid(clips).mean(dim=1).cpu().numpy()

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))`` from one forward pass."""
        hidden = self._hidden_grid(clips)  # (B, T', H', W', D)
        return hidden.mean(dim=(1, 2, 3)).cpu().numpy(), hidden.mean(dim=1).cpu().numpy()

    def config(self) -> dict[str, Any]:
        """Model identity, preprocessing, output sizes and precision."""
        import transformers

        return {
            "name": self.name,
            **self._identity,
            "frames_per_snippet": self.frames_per_snippet,
            "frame_size": list(self.frame_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "pooling": "mean of last hidden state",
            "dim": self.dim,
            "grid_shape": list(self.grid_shape),
            "grid_dim": self.grid_dim,
            "precision": effective_precision(self._device, self._fp16),
            "library": f"transformers {transformers.__version__}",
        }
