"""VideoMAE video transformer (transformers ``VideoMAEModel``) as a visual encoder.

Tong et al., "VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised
Video Pre-Training", arXiv:2203.12602. The snippet embedding is the mean of the last hidden
state over all space-time tokens (the paper's fine-tuning head pools the same way before its
``fc_norm``); the grid is the last hidden state averaged over the temporal tokens.

Checkpoints: any folder (or hub id) transformers loads as VideoMAE, i.e. a ``config.json`` with
``model_type: videomae`` beside the weights and a ``preprocessor_config.json``, of either
``VideoMAEModel`` or ``VideoMAEForVideoClassification`` (its ``architectures``). The latter is how
a fine-tuned VideoMAE V2 (Wang et al., arXiv 2303.16727; ViT-g: ``hidden_size`` 1408, patch 14,
the features of arXiv 2407.02318) is stored: its backbone is used and, with mean pooling, its
``fc_norm`` is applied to the pooled embedding, as VideoMAE V2's ``forward_features`` (used by its
``extract_tad_feature.py``) does. The width is the config's ``hidden_size``. A folder of another
kind (the official V2 ``.pth`` files, a hub repository of custom code) or weights that do not fit
the config are refused with :class:`MissingWeightsError` naming the model, the path and the fix,
never silently built with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.encoders.base import (
    MissingWeightsError,
    VisualEncoder,
    check_bool,
    clips_to_pixels,
    effective_precision,
    inference_context,
)
from pipeline.encoders.hub import commit_hash, load_hf_pretrained, looks_like_path
from pipeline.encoders.registry import VISUAL_ENCODERS
from pipeline.runtime import resolve_device

if TYPE_CHECKING:
    from torch import nn
    from transformers import VideoMAEForVideoClassification, VideoMAEModel

# How to get weights this encoder can read, for its errors.
VIDEOMAE_WEIGHTS_HELP = (
    "the encoder reads a transformers VideoMAE checkpoint: a folder with config.json "
    "(model_type 'videomae', architectures VideoMAEModel or VideoMAEForVideoClassification), "
    "the weights and preprocessor_config.json, as save_pretrained writes them, or a hub id "
    "such as MCG-NJU/videomae-base-finetuned-kinetics. VideoMAE V2's official weights "
    "(github.com/OpenGVLab/VideoMAEv2, docs/MODEL_ZOO.md, e.g. vit_g_hybrid_pt_1200e_k710_ft.pth) "
    "are .pth files of that repository's code: convert one into such a folder (ViT-g: "
    "VideoMAEConfig(hidden_size=1408, num_hidden_layers=40, num_attention_heads=16, "
    "intermediate_size=6144, patch_size=14) with the weights renamed to transformers' keys), or "
    "extract the features with that repository's extract_tad_feature.py and import them"
)


def load_videomae(
    model: str, *, download: bool, cache_dir: str | None
) -> VideoMAEModel | VideoMAEForVideoClassification:
    """The transformers VideoMAE checkpoint ``model``, in the class its config names.

    Raises:
        MissingWeightsError: naming ``model``, its path and how to get weights, when the files
            are absent, are not a VideoMAE checkpoint, or miss weights of its config.
    """
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel

    where = f"VideoMAE model {model!r} (config key 'model')"
    directory = Path(model).expanduser()
    if looks_like_path(model) and directory.is_dir() and not (directory / "config.json").is_file():
        raise MissingWeightsError(
            f"{where}: directory {directory} has no config.json; {VIDEOMAE_WEIGHTS_HELP}"
        )
    config, _ = load_hf_pretrained(
        VideoMAEConfig.get_config_dict,
        model,
        download=download,
        cache_dir=cache_dir,
        description="VideoMAE config",
    )
    if config.get("model_type") != "videomae":
        raise MissingWeightsError(
            f"{where}: its config.json has model_type {config.get('model_type')!r}, not "
            f"'videomae', so transformers' VideoMAEModel cannot load it; {VIDEOMAE_WEIGHTS_HELP}"
        )
    classifier = "VideoMAEForVideoClassification" in (config.get("architectures") or [])
    model_class = VideoMAEForVideoClassification if classifier else VideoMAEModel
    try:
        loaded, info = load_hf_pretrained(
            model_class.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="VideoMAE model",
            output_loading_info=True,
        )
    except MissingWeightsError:
        raise
    except RuntimeError as err:  # weights of other shapes than the config's
        raise MissingWeightsError(
            f"{where}: its weights do not fit its config.json ({str(err)[:300]}); "
            f"{VIDEOMAE_WEIGHTS_HELP}"
        ) from err
    if info["missing_keys"]:
        raise MissingWeightsError(
            f"{where}: {len(info['missing_keys'])} weights of {model_class.__name__} are "
            f"missing from the checkpoint (e.g. {', '.join(sorted(info['missing_keys'])[:3])}); "
            f"{VIDEOMAE_WEIGHTS_HELP}"
        )
    return loaded


@VISUAL_ENCODERS.register("videomae")
class VideoMAEVisualEncoder(VisualEncoder):
    """VideoMAE backbone; snippet embedding = mean-pooled last hidden state (then ``fc_norm``
    for a ``VideoMAEForVideoClassification`` checkpoint with mean pooling, e.g. VideoMAE V2).

    ``frames_per_snippet`` is the model's ``num_frames`` (16 for the released checkpoints),
    ``frame_size`` its square ``image_size`` and ``dim`` its ``hidden_size`` (1408 for VideoMAE
    V2 ViT-g); pixels are normalised with the image processor's ``image_mean`` / ``image_std``.

    Args:
        model: Hugging Face hub id or local directory (model + ``preprocessor_config.json``;
            :data:`VIDEOMAE_WEIGHTS_HELP` says which).
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
        from transformers import VideoMAEImageProcessor

        check_bool(download, "download")
        video_model = load_videomae(model, download=download, cache_dir=cache_dir)
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
        video_model: VideoMAEModel | VideoMAEForVideoClassification,
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
            video_model: the model (a classifier's backbone and ``fc_norm`` are used); its
                config gives frames, image and patch sizes.
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
        video_model: VideoMAEModel | VideoMAEForVideoClassification,
        *,
        image_mean: tuple[float, ...],
        image_std: tuple[float, ...],
        identity: dict[str, Any],
        device: str,
        fp16: bool,
    ) -> None:
        """Keep the backbone (and a classifier's ``fc_norm``) on ``device``; sizes from its
        config."""
        self._device = resolve_device(device)
        self._fp16 = check_bool(fp16, "fp16")
        backbone = getattr(video_model, "videomae", video_model)  # a classifier's backbone
        self._pool_norm: nn.Module | None = getattr(video_model, "fc_norm", None)
        self._identity = {**identity, "architecture": type(video_model).__name__}
        self._model = backbone.to(self._device).eval()
        if self._pool_norm is not None:
            self._pool_norm = self._pool_norm.to(self._device).eval()
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

    def _pool(self, hidden: torch.Tensor) -> np.ndarray:
        """``(B, T', H', W', D)`` -> mean over tokens (then ``fc_norm``) ``(B, D)`` float32."""
        pooled = hidden.mean(dim=(1, 2, 3))  # (B, D)
        if self._pool_norm is not None:
            with torch.inference_mode():
                pooled = self._pool_norm(pooled).float()
        return pooled.cpu().numpy()

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> pooled token embedding ``(B, D)`` float32."""
        return self._pool(self._hidden_grid(clips))

    def encode_grid(self, clips: np.ndarray) -> np.ndarray:
        """Clips ``(B, F, H, W, 3)`` uint8 -> token grid ``(B, H', W', D)`` float32."""
        return self._hidden_grid(clips).mean(dim=1).cpu().numpy()

    def encode_with_grid(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(encode(clips), encode_grid(clips))`` from one forward pass."""
        hidden = self._hidden_grid(clips)  # (B, T', H', W', D)
        return self._pool(hidden), hidden.mean(dim=1).cpu().numpy()

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
            "pooling": "mean of last hidden state"
            + (", then fc_norm" if self._pool_norm is not None else ""),
            "dim": self.dim,
            "grid_shape": list(self.grid_shape),
            "grid_dim": self.grid_dim,
            "precision": effective_precision(self._device, self._fp16),
            "library": f"transformers {transformers.__version__}",
        }
