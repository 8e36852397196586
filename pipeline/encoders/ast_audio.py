"""Audio Spectrogram Transformer (transformers ``ASTModel``) as an audio encoder.

Gong et al., "AST: Audio Spectrogram Transformer", arXiv:2104.01778. The embedding is the
model's pooled output: the mean of the final class and distillation tokens after layer norm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.encoders.base import (
    AudioEncoder,
    check_bool,
    effective_precision,
    inference_context,
    pad_to_length,
)
from pipeline.encoders.hub import commit_hash, load_hf_pretrained
from pipeline.encoders.registry import AUDIO_ENCODERS
from pipeline.runtime import resolve_device

if TYPE_CHECKING:
    from transformers import ASTFeatureExtractor, ASTModel

# Kaldi filter-bank framing used by ASTFeatureExtractor: 25 ms windows, 10 ms shift.
FBANK_WINDOW_S = 0.025
FBANK_SHIFT_S = 0.010


@AUDIO_ENCODERS.register("ast")
class ASTAudioEncoder(AudioEncoder):
    """AST pooled embedding of each window.

    Each window goes through the checkpoint's ``ASTFeatureExtractor`` (Kaldi log-mel filter
    banks, zero-padded to ``max_length`` frames: 1024 frames = 10.24 s for the released
    models). Longer windows are refused rather than silently cut; windows shorter than one
    25 ms filter-bank frame are zero-padded to it.

    Args:
        model: Hugging Face hub id or local directory.
        download: allow fetching from the hub.
        cache_dir: Hugging Face cache directory; ``None`` for ``HF_HUB_CACHE``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        fp16: float16 autocast on CUDA (ignored on CPU).
    """

    def __init__(
        self,
        *,
        model: str = "MIT/ast-finetuned-audioset-10-10-0.4593",
        download: bool = False,
        cache_dir: str | None = None,
        device: str = "auto",
        fp16: bool = False,
    ) -> None:
        from transformers import ASTFeatureExtractor, ASTModel

        check_bool(download, "download")
        ast_model = load_hf_pretrained(
            ASTModel.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="AST model",
        )
        feature_extractor = load_hf_pretrained(
            ASTFeatureExtractor.from_pretrained,
            model,
            download=download,
            cache_dir=cache_dir,
            description="AST feature extractor",
        )
        self._setup(
            ast_model,
            feature_extractor,
            identity={"model": model, "revision": commit_hash(ast_model)},
            device=device,
            fp16=fp16,
        )

    @classmethod
    def from_model(
        cls,
        ast_model: ASTModel,
        feature_extractor: ASTFeatureExtractor,
        *,
        model_name: str = "custom",
        device: str = "cpu",
        fp16: bool = False,
    ) -> ASTAudioEncoder:
        """Wrap an already built model and feature extractor (e.g. tiny ones in tests).

        The model is used in place: moved to ``device`` and set to eval mode.

        Args:
            ast_model: ``ASTModel``.
            feature_extractor: ``ASTFeatureExtractor`` matching the model's mel bins and
                ``max_length``.
            model_name: name recorded in ``config()``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            fp16: float16 autocast on CUDA (ignored on CPU).
        """
        encoder = cls.__new__(cls)
        encoder._setup(
            ast_model,
            feature_extractor,
            identity={"model": model_name, "revision": None},
            device=device,
            fp16=fp16,
        )
        return encoder

    def _setup(
        self,
        ast_model: ASTModel,
        feature_extractor: ASTFeatureExtractor,
        *,
        identity: dict[str, Any],
        device: str,
        fp16: bool,
    ) -> None:
        """Keep the model on ``device``; check the extractor fits the model."""
        self._device = resolve_device(device)
        self._fp16 = check_bool(fp16, "fp16")
        self._identity = identity
        self._model = ast_model.to(self._device).eval()
        self._feature_extractor = feature_extractor
        model_config = ast_model.config
        if (
            feature_extractor.num_mel_bins != model_config.num_mel_bins
            or feature_extractor.max_length != model_config.max_length
        ):
            raise ValueError(
                f"ast: feature extractor ({feature_extractor.num_mel_bins} mel bins, "
                f"{feature_extractor.max_length} frames) does not fit the model "
                f"({model_config.num_mel_bins} mel bins, {model_config.max_length} frames)"
            )
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window_samples = round(FBANK_WINDOW_S * self.sample_rate)
        shift_samples = round(FBANK_SHIFT_S * self.sample_rate)
        # Longest window whose filter-bank frames, 1 + (N - window) // shift, fit max_length.
        self.max_samples = int(model_config.max_length) * shift_samples + self.window_samples - 1
        self.dim = int(model_config.hidden_size)

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Windows ``(B, N)`` float32 at ``sample_rate`` -> embeddings ``(B, D)`` float32."""
        windows = pad_to_length(self.check_windows(windows), self.window_samples)
        if windows.shape[1] > self.max_samples:
            raise ValueError(
                f"audio encoder 'ast': windows of {windows.shape[1]} samples are longer than "
                f"the model's input of {self.max_samples} samples "
                f"({self.max_samples / self.sample_rate:g} s); use a shorter snippet window"
            )
        features = self._feature_extractor(
            list(windows), sampling_rate=self.sample_rate, return_tensors="np"
        )
        input_values = torch.from_numpy(np.asarray(features["input_values"], dtype=np.float32)).to(
            self._device
        )  # (B, max_length frames, mel bins)
        with inference_context(self._device, self._fp16):
            pooled = self._model(input_values=input_values).pooler_output  # (B, D)
        return pooled.float().cpu().numpy()

    def config(self) -> dict[str, Any]:
        """Model identity, input format, output size and precision."""
        import transformers

        extractor = self._feature_extractor
        return {
            "name": self.name,
            **self._identity,
            "sample_rate": self.sample_rate,
            "num_mel_bins": int(extractor.num_mel_bins),
            "max_length_frames": int(extractor.max_length),
            "normalization_mean": float(extractor.mean),
            "normalization_std": float(extractor.std),
            "dim": self.dim,
            "precision": effective_precision(self._device, self._fp16),
            "library": f"transformers {transformers.__version__}",
        }
