"""CLAP audio tower (transformers) as an audio encoder.

Wu et al., "Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and
Keyword-to-Caption Augmentation", arXiv:2211.06687. Only the audio tower and its projection
are loaded; the embedding equals ``ClapModel.get_audio_features`` (projected pooled output,
L2-normalised).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.encoders.base import (
    AudioEncoder,
    check_bool,
    effective_precision,
    inference_context,
)
from pipeline.encoders.hub import commit_hash, load_hf_pretrained
from pipeline.encoders.registry import AUDIO_ENCODERS
from pipeline.runtime import resolve_device

if TYPE_CHECKING:
    from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor


@AUDIO_ENCODERS.register("clap")
class CLAPAudioEncoder(AudioEncoder):
    """CLAP audio embedding of each window.

    Each window goes through the checkpoint's ``ClapFeatureExtractor`` (repeat-padded up to its
    ``max_length_s``, 10 s for the released models). Windows are never longer than that here
    (longer ones are refused: the extractor would crop them at random), so every window is
    marked ``is_longer = False``; this also removes the extractor's habit of flagging one
    random window of each batch for feature fusion, which made outputs depend on the batch.

    Args:
        model: Hugging Face hub id or local directory (a ``ClapModel`` checkpoint).
        download: allow fetching from the hub.
        cache_dir: Hugging Face cache directory; ``None`` for ``HF_HUB_CACHE``.
        normalize: L2-normalise the embedding, as ``get_audio_features`` does.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        fp16: float16 autocast on CUDA (ignored on CPU).
    """

    def __init__(
        self,
        *,
        model: str = "laion/clap-htsat-unfused",
        download: bool = False,
        cache_dir: str | None = None,
        normalize: bool = True,
        device: str = "auto",
        fp16: bool = False,
    ) -> None:
        from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

        check_bool(download, "download")
        audio_model = load_hf_pretrained(
            ClapAudioModelWithProjection.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="CLAP model",
        )
        feature_extractor = load_hf_pretrained(
            ClapFeatureExtractor.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="CLAP feature extractor",
        )
        self._setup(
            audio_model,
            feature_extractor,
            identity={"model": model, "revision": commit_hash(audio_model)},
            normalize=normalize,
            device=device,
            fp16=fp16,
        )

    @classmethod
    def from_model(
        cls,
        audio_model: ClapAudioModelWithProjection,
        feature_extractor: ClapFeatureExtractor,
        *,
        model_name: str = "custom",
        normalize: bool = True,
        device: str = "cpu",
        fp16: bool = False,
    ) -> CLAPAudioEncoder:
        """Wrap an already built audio tower and feature extractor (e.g. tiny ones in tests).

        The model is used in place: moved to ``device`` and set to eval mode.

        Args:
            audio_model: ``ClapAudioModelWithProjection``.
            feature_extractor: ``ClapFeatureExtractor`` matching the model's mel bins.
            model_name: name recorded in ``config()``.
            normalize: L2-normalise the embedding.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            fp16: float16 autocast on CUDA (ignored on CPU).
        """
        encoder = cls.__new__(cls)
        encoder._setup(
            audio_model,
            feature_extractor,
            identity={"model": model_name, "revision": None},
            normalize=normalize,
            device=device,
            fp16=fp16,
        )
        return encoder

    def _setup(
        self,
        audio_model: ClapAudioModelWithProjection,
        feature_extractor: ClapFeatureExtractor,
        *,
        identity: dict[str, Any],
        normalize: bool,
        device: str,
        fp16: bool,
    ) -> None:
        """Keep the model on ``device``; read sizes from its config and feature extractor."""
        self._device = resolve_device(device)
        self._fp16 = check_bool(fp16, "fp16")
        self._identity = identity
        self.normalize = check_bool(normalize, "normalize")
        self._model = audio_model.to(self._device).eval()
        self._feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.max_samples = int(feature_extractor.nb_max_samples)
        self.enable_fusion = bool(audio_model.config.enable_fusion)
        self.dim = int(audio_model.config.projection_dim)

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Windows ``(B, N)`` float32 at ``sample_rate`` -> embeddings ``(B, D)`` float32."""
        windows = self.check_windows(windows)
        if windows.shape[1] > self.max_samples:
            raise ValueError(
                f"audio encoder 'clap': windows of {windows.shape[1]} samples are longer than "
                f"the model's {self.max_samples / self.sample_rate:g} s input; use a shorter "
                "snippet window"
            )
        features = self._feature_extractor(
            list(windows),
            sampling_rate=self.sample_rate,
            truncation="fusion" if self.enable_fusion else "rand_trunc",
            return_tensors="np",
        )
        input_features = torch.from_numpy(
            np.asarray(features["input_features"], dtype=np.float32)
        ).to(self._device)  # (B, 4 if fusion else 1, frames, mel bins)
        is_longer = torch.zeros((len(windows), 1), dtype=torch.bool, device=self._device)
        with inference_context(self._device, self._fp16):
            output = self._model(input_features=input_features, is_longer=is_longer)
        embeddings = output.audio_embeds.float()  # (B, D)
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=-1)
        return embeddings.cpu().numpy()

    def config(self) -> dict[str, Any]:
        """Model identity, input format, output size and precision."""
        import transformers

        extractor = self._feature_extractor
        return {
            "name": self.name,
            **self._identity,
            "sample_rate": self.sample_rate,
            "max_length_s": self.max_samples / self.sample_rate,
            "padding": extractor.padding,
            "enable_fusion": self.enable_fusion,
            "normalize": self.normalize,
            "dim": self.dim,
            "precision": effective_precision(self._device, self._fp16),
            "library": f"transformers {transformers.__version__}",
        }
