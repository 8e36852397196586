"""Settings of the segment-level (AVE-style) stage: one frozen dataclass per step.

Each field carries its help text in ``metadata["help"]``. The defaults live here, once: they
are the paper's (AV-BT + TACMA, Applied Sciences 12(24) 12622, Sec. 4.1); the CPU demo
overrides them in ``workflow_config.yaml``. The workflow config's ``segments`` block overrides
them by field name: :func:`check_settings` validates such a mapping when the config is loaded
(:mod:`pipeline.config`), and again when a step receives it as its ``--settings`` JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from models.keys import check_keys

Settings = TypeVar("Settings")


def _field(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ClipSettings:
    """How 1-second segments are cut from a video (AV-BT Sec. 4.1): frames, and a VGGish
    log-mel spectrogram (16 kHz, 25 ms windows every 10 ms, 64 mel bands 125-7500 Hz,
    ``log(mel + 0.01)``, 96 frames = 96 x 64 per segment)."""

    frame_fps: int = _field(16, "frames decoded per second; segment k keeps frames k*F..k*F+F-1")
    frame_width: int = _field(256, "decoded frame width in pixels")
    frame_height: int = _field(256, "decoded frame height in pixels")
    sample_rate: int = _field(16000, "audio sample rate in Hz")
    window_length: int = _field(400, "STFT window in samples (25 ms, periodic Hann)")
    hop_length: int = _field(160, "STFT hop in samples (10 ms)")
    n_fft: int = _field(512, "FFT length in samples (>= window_length)")
    n_mels: int = _field(64, "mel bands")
    fmin: float = _field(125.0, "lowest mel frequency in Hz")
    fmax: float = _field(7500.0, "highest mel frequency in Hz")
    mel_frames: int = _field(96, "spectrogram frames kept per segment (96 x 10 ms)")
    log_offset: float = _field(0.01, "added to the mel magnitudes before the log")

    def __post_init__(self) -> None:
        for name in ("frame_fps", "frame_width", "frame_height", "sample_rate", "n_mels"):
            if getattr(self, name) < 1:
                raise ValueError(f"clip setting {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.window_length <= self.n_fft or self.hop_length < 1:
            raise ValueError(
                f"clip settings need 0 < window_length <= n_fft and hop_length > 0, got "
                f"window_length={self.window_length}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}"
            )
        available = 1 + (self.sample_rate - self.window_length) // self.hop_length
        if not 1 <= self.mel_frames <= available:
            raise ValueError(
                f"clip setting mel_frames must be in 1..{available} (the STFT frames wholly "
                f"inside one second), got {self.mel_frames}"
            )
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"clip settings need 0 <= fmin < fmax <= sample_rate / 2, got {self.fmin}, "
                f"{self.fmax}"
            )


BACKBONE_NAMES = ("conv", "vggish", "resnet50")
AUGMENTATIONS = ("crop", "flip", "solarize", "grayscale", "color_jitter", "blur")


@dataclass(frozen=True)
class PretrainSettings:
    """AV-BT pre-training (Sec. 3.2, 4.1): encoders, projector, loss, augmentation, optimiser.

    Defaults are the paper's. Its text leaves open the augmentation probabilities and
    strengths ("the same settings as Barlow Twins", whose two views differ: blur 1.0 / 0.1 and
    solarize 0 / 0.2 are averaged here to one view's 0.5 and 0.1), and the final learning rate
    (a factor of 10 below the peak, as Sec. 4.1 says, where Barlow Twins ends 1000x lower).
    """

    audio_backbone: str = _field("vggish", "audio CNN: vggish (the paper) or conv (small)")
    visual_backbone: str = _field("resnet50", "visual CNN: resnet50 (the paper) or conv (small)")
    audio_weights: str = _field(
        "weights/vggish-10086976.pth", "VGGish AudioSet weights (.pth); none = random init"
    )
    visual_weights: str = _field(
        "weights/resnet50-0676ba61.pth", "ResNet-50 ImageNet weights (.pth); none = random init"
    )
    conv_width: int = _field(16, "channels of the first block of the conv backbone")
    conv_depth: int = _field(3, "conv-BN-ReLU blocks of the conv backbone")
    conv_dim: int = _field(128, "output width of the conv backbone")
    feature_dim: int = _field(512, "d_l: width of f_a and f_v (the Bi-LSTM's two directions)")
    temporal: str = _field("bilstm", "temporal model after the CNN: bilstm (the paper) or none")
    projector_dims: tuple[int, ...] = _field((2048, 4096, 4096), "projector layer widths")
    shared_projector: bool = _field(True, "one projector for both modalities (Table 4)")
    off_diagonal_weight: float = _field(5e-3, "lambda of Eq. (2)")
    crop_size: int = _field(224, "side of the random resized crop fed to the visual CNN")
    crop: bool = _field(True, "random resized crop (Table 5)")
    crop_scale: tuple[float, float] = _field(
        (0.08, 1.0), "crop area fraction range (Barlow Twins'; Table 5's * row keeps more)"
    )
    flip: bool = _field(False, "random horizontal flip, p 0.5 (Table 5)")
    solarize: bool = _field(False, "random solarisation, p 0.1 (Table 5)")
    grayscale: bool = _field(False, "random grey-scale, p 0.2 (Table 5)")
    color_jitter: bool = _field(
        False, "colour jitter 0.4/0.4/0.2/0.1 with p 0.8 (Table 5; it hurts most)"
    )
    blur: bool = _field(True, "random Gaussian blur, p 0.5 (Table 5)")
    blur_sigma: tuple[float, float] = _field((0.1, 2.0), "Gaussian blur sigma range (pixels)")
    blur_kernel_size: int = _field(23, "Gaussian blur kernel size (odd, ~10 % of crop_size)")
    optimizer: str = _field("lars", "lars (the paper) or adamw")
    epochs: int = _field(100, "passes over the train split's videos")
    batch_size: int = _field(128, "videos per batch (the last partial batch is dropped)")
    warmup_epochs: int = _field(10, "epochs of linear learning-rate warm-up")
    final_lr_fraction: float = _field(0.1, "cosine decay ends at this fraction of the peak")
    lr_weights: float = _field(
        0.2 * 2e-4, "LARS rate of weights: Barlow Twins' 0.2 times 2e-4 (x batch / 256)"
    )
    lr_biases: float = _field(
        0.0048 * 2e-4, "LARS rate of biases and norms: Barlow Twins' 0.0048 times 2e-4"
    )
    learning_rate: float = _field(1e-3, "AdamW peak learning rate (optimizer adamw)")
    weight_decay: float = _field(1.5e-6, "weight decay (Barlow Twins' LARS value)")
    seed: int = _field(0, "seed of weights, batch order, frame choice and augmentation")

    def __post_init__(self) -> None:
        for name, valid in (
            ("audio_backbone", ("conv", "vggish")),
            ("visual_backbone", ("conv", "resnet50")),
            ("temporal", ("bilstm", "none")),
            ("optimizer", ("lars", "adamw")),
        ):
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"pretrain setting {name} must be one of {', '.join(valid)}, not "
                    f"{getattr(self, name)!r}"
                )
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.blur_kernel_size % 2 != 1:
            raise ValueError(f"blur_kernel_size must be odd, got {self.blur_kernel_size}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("pretrain settings epochs and batch_size must be >= 1")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})"
            )
        if self.temporal == "bilstm" and self.feature_dim % 2:
            raise ValueError(f"a Bi-LSTM needs an even feature_dim, got {self.feature_dim}")

    def weights_file(self, modality: str) -> str | None:
        """The weights path of one modality's CNN, None for random init or ``conv``."""
        backbone = getattr(self, f"{modality}_backbone")
        weights = getattr(self, f"{modality}_weights")
        return None if backbone == "conv" or weights.lower() == "none" else weights


@dataclass(frozen=True)
class ClassifierSettings:
    """Segment classifiers (Sec. 3.3-3.4, 4.1): the Table 2 MLPs and TACMA.

    Sec. 4.1 gives theta, Adam, the learning rate and its decay, and the batch; the widths
    d_h, d_e, the MLP's hidden width and the number of epochs are not given.
    """

    theta: float = _field(0.03, "TACMA Eq. (4) theta (0: no temporal weighting)")
    eq6_reading: str = _field("cross", "TACMA Eq. (6): cross (default) or literal (as printed)")
    attention_dim: int = _field(256, "TACMA d_h, width of the shared queries/keys")
    output_dim: int = _field(256, "TACMA d_e, width of the fused features")
    hidden_dim: int = _field(256, "hidden width of the three-layer MLP")
    input_projection_dim: int = _field(
        0, "map both modalities to this width first (0: none; needed when widths differ)"
    )
    dropout: float = _field(0.0, "dropout in the MLP")
    standardise: bool = _field(
        False, "standardise features with the train split's mean and std (not in the paper)"
    )
    epochs: int = _field(200, "passes over the train split's videos")
    batch_size: int = _field(128, "videos per batch")
    learning_rate: float = _field(1e-4, "Adam initial learning rate")
    lr_decay: float = _field(0.98, "the learning rate is multiplied by this ...")
    lr_decay_every: int = _field(10, "... every this many epochs")
    weight_decay: float = _field(0.0, "Adam weight decay")
    seed: int = _field(0, "seed of weights, dropout and batch order")

    def __post_init__(self) -> None:
        if self.theta < 0:
            raise ValueError(f"classifier setting theta must be >= 0, got {self.theta}")
        if self.eq6_reading not in ("cross", "literal"):
            raise ValueError(
                f"classifier setting eq6_reading must be cross or literal, not {self.eq6_reading!r}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"classifier setting dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.lr_decay <= 1 or self.lr_decay_every < 1:
            raise ValueError("classifier settings need 0 < lr_decay <= 1 and lr_decay_every >= 1")


# How to get the pretrained CNNs of Sec. 4.1 (models.segment_backbones loads them).
PRETRAINED_WEIGHTS = {
    "vggish": (
        "VGGish (AudioSet)",
        "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    ),
    "resnet50": (
        "ResNet-50 (ImageNet)",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    ),
}


def check_pretrained_weights(settings: PretrainSettings, where: str) -> None:
    """Each pretrained CNN of ``settings`` has its weights file; raise naming the model, the
    key, the path and how to get the file otherwise (no network is used, ever)."""
    for modality in ("audio", "visual"):
        path = settings.weights_file(modality)
        if path is None or Path(path).expanduser().is_file():
            continue
        backbone = getattr(settings, f"{modality}_backbone")
        model, url = PRETRAINED_WEIGHTS[backbone]
        raise ValueError(
            f"'{where}.{modality}_weights': the {model} weights {path} do not exist. Download "
            f"{url} on a machine with network access and copy it there (or set "
            f"{modality}_weights to its path; 'none' trains from random initialisation, "
            f"{modality}_backbone: conv uses the small CNN)"
        )


def settings_help(settings_class: type) -> str:
    """The ``--settings`` help of a step: every field with its default."""
    fields = ", ".join(f"{item.name}={item.default}" for item in dataclasses.fields(settings_class))
    text = f"{settings_class.__name__} as a JSON object (or a JSON file), e.g. from the config's "
    return (text + f"segments block; fields left out keep the paper's values: {fields}").replace(
        "%", "%%"
    )


def check_settings(settings_class: type[Settings], values: dict[str, Any], where: str) -> Settings:
    """Build ``settings_class`` from config ``values`` (field name -> value), checking each.

    Raises:
        ValueError: naming ``where`` and the key, for an unknown field name, a value of the
            wrong type (ints are accepted for floats; lists for tuples) or a value the
            dataclass refuses.
    """
    fields = {item.name: item for item in dataclasses.fields(settings_class)}
    converted = {}
    check_keys(values, fields, where)
    for key, value in values.items():
        default = fields[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not all(
                _matches(item, default[0]) for item in value
            ):
                kind = type(default[0]).__name__
                raise ValueError(f"'{where}.{key}' must be a list of {kind}, got {value!r}")
            value = tuple(value)
        elif not _matches(value, default):
            raise ValueError(
                f"'{where}.{key}' must be of type {type(default).__name__}, got {value!r}"
            )
        elif isinstance(default, float):
            value = float(value)  # as the field's type: 1 -> 1.0
        converted[key] = value
    try:
        return settings_class(**converted)
    except ValueError as err:
        raise ValueError(f"'{where}': {err}") from None


def _matches(value: Any, default: Any) -> bool:
    """Whether a config value has the type of a field's default (int counts as float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def from_dict(settings_class: type[Settings], values: dict[str, Any]) -> Settings:
    """Build ``settings_class`` from a stored ``asdict`` (lists back to tuples)."""
    names = {item.name: item for item in dataclasses.fields(settings_class)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(
            f"{settings_class.__name__}: unknown setting {unknown[0]!r}; the file was written "
            "by another version of pipeline.segments, run the step again"
        )
    converted = {
        key: tuple(value) if isinstance(names[key].default, tuple) else value
        for key, value in values.items()
    }
    return settings_class(**converted)
