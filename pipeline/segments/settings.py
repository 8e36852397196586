"""Settings of the segment-level (AVE-style) stage: one frozen dataclass per step.

Each field carries its help text in ``metadata["help"]``; :func:`add_arguments` turns a
dataclass into command-line flags (``--frame-fps``) with the field's default, and
:func:`from_arguments` builds the dataclass back from the parsed flags, so the defaults live
in one place. The defaults are sized for the synthetic ``demo`` data set on a CPU (the whole
segment stage in about three minutes on two cores). The workflow config's ``segments`` block
overrides them by field name: :func:`check_settings` validates such a mapping when the config
is loaded, and :func:`to_flags` renders it as the step's command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

Settings = TypeVar("Settings")


def _field(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ClipSettings:
    """How 1-second segments are cut from a video: frames and log-mel spectrograms."""

    frame_fps: int = _field(4, "frames decoded per second; segment k keeps frames k*F..k*F+F-1")
    frame_width: int = _field(64, "decoded frame width in pixels")
    frame_height: int = _field(48, "decoded frame height in pixels")
    sample_rate: int = _field(16000, "audio sample rate in Hz")
    n_fft: int = _field(512, "STFT frame length in samples (Hann window, no centring)")
    hop_length: int = _field(256, "STFT hop in samples")
    n_mels: int = _field(40, "mel bands of the log-mel spectrogram")

    def __post_init__(self) -> None:
        for name in ("frame_fps", "frame_width", "frame_height", "sample_rate", "n_mels"):
            if getattr(self, name) < 1:
                raise ValueError(f"clip setting {name} must be >= 1, got {getattr(self, name)}")
        if self.hop_length < 1 or not 0 < self.n_fft <= self.sample_rate:
            raise ValueError(
                f"clip settings need hop_length > 0 and n_fft <= sample_rate (one segment), "
                f"got hop_length={self.hop_length}, n_fft={self.n_fft}"
            )


@dataclass(frozen=True)
class PretrainSettings:
    """AV-BT pre-training: encoders, projector, Barlow Twins loss, augmentation, optimiser."""

    backbone: str = _field("conv", "encoder backbone: conv (small CNN) or resnet18 (torchvision)")
    width: int = _field(16, "channels of the first conv block (doubled in each later block)")
    depth: int = _field(3, "conv-BN-ReLU blocks of the conv backbone")
    pooling: str = _field("avgmax", "global pooling of the conv backbone: avg, max or avgmax")
    embedding_dim: int = _field(64, "width of the audio and visual embeddings")
    projector_dims: tuple[int, ...] = _field((128, 128), "projector MLP layer widths")
    shared_projector: bool = _field(True, "one projector for both modalities (else one each)")
    off_diagonal_weight: float = _field(0.02, "Barlow Twins lambda on off-diagonal terms")
    crop_scale: tuple[float, float] = _field((0.5, 1.0), "random crop area fraction range")
    blur_probability: float = _field(0.5, "probability of a Gaussian blur per frame")
    blur_sigma: tuple[float, float] = _field((0.1, 1.5), "Gaussian blur sigma range (pixels)")
    blur_kernel_size: int = _field(7, "Gaussian blur kernel size (odd, pixels)")
    epochs: int = _field(6, "passes over the train split's segments")
    batch_size: int = _field(64, "segments per batch (the last partial batch is dropped)")
    learning_rate: float = _field(2e-3, "AdamW peak learning rate (cosine decay)")
    weight_decay: float = _field(1e-4, "AdamW weight decay")
    seed: int = _field(0, "seed of weights, batch order, frame choice and augmentation")

    def __post_init__(self) -> None:
        if self.backbone not in ("conv", "resnet18"):
            raise ValueError(
                f"pretrain setting backbone must be conv or resnet18, not {self.backbone!r}"
            )
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.blur_kernel_size % 2 != 1:
            raise ValueError(f"blur_kernel_size must be odd, got {self.blur_kernel_size}")
        if self.batch_size < 2:
            raise ValueError(f"Barlow Twins needs batch_size >= 2, got {self.batch_size}")


@dataclass(frozen=True)
class ClassifierSettings:
    """Segment classifiers on AV-BT features: TACMA (both modalities) or one modality."""

    model_dim: int = _field(64, "hidden width of the classifier")
    theta: float = _field(1.0, "TACMA temporal decay theta (0: plain cross-modal attention)")
    dropout: float = _field(0.2, "dropout on the projected features")
    epochs: int = _field(60, "passes over the train split's videos")
    batch_size: int = _field(16, "videos per batch (padded to the longest)")
    learning_rate: float = _field(2e-3, "AdamW learning rate (cosine decay)")
    weight_decay: float = _field(1e-3, "AdamW weight decay")
    seed: int = _field(0, "seed of weights, dropout and batch order")

    def __post_init__(self) -> None:
        if self.theta < 0:
            raise ValueError(f"classifier setting theta must be >= 0, got {self.theta}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"classifier setting dropout must be in [0, 1), got {self.dropout}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser, settings_class: type) -> None:
    """Add one flag per field of ``settings_class`` (tuples take several values)."""
    group = parser.add_argument_group(settings_class.__name__)
    for item in dataclasses.fields(settings_class):
        default = item.default
        help_text = f"{item.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            group.add_argument(_flag(item.name), type=_parse_bool, default=default, help=help_text)
        elif isinstance(default, tuple):
            kind = type(default[0])
            group.add_argument(
                _flag(item.name), type=kind, nargs="+", default=default, help=help_text
            )
        else:
            group.add_argument(
                _flag(item.name), type=type(default), default=default, help=help_text
            )


def from_arguments(settings_class: type[Settings], args: argparse.Namespace) -> Settings:
    """Build ``settings_class`` from flags added by :func:`add_arguments`."""
    values = {}
    for item in dataclasses.fields(settings_class):
        value = getattr(args, item.name)
        values[item.name] = tuple(value) if isinstance(item.default, tuple) else value
    return settings_class(**values)


def check_settings(settings_class: type[Settings], values: dict[str, Any], where: str) -> Settings:
    """Build ``settings_class`` from config ``values`` (field name -> value), checking each.

    Raises:
        ValueError: naming ``where`` and the key, for an unknown field name, a value of the
            wrong type (ints are accepted for floats; lists for tuples) or a value the
            dataclass refuses.
    """
    fields = {item.name: item for item in dataclasses.fields(settings_class)}
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(
                f"unknown key '{where}.{key}'; valid keys here: {', '.join(sorted(fields))}"
            )
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


def to_flags(values: dict[str, Any]) -> list[str]:
    """Command-line flags of :func:`add_arguments` for the fields in ``values``.

    ``{"theta": 0.5, "crop_scale": [0.5, 1.0], "shared_projector": False}`` ->
    ``["--theta", "0.5", "--crop-scale", "0.5", "1.0", "--shared-projector", "false"]``.
    """
    flags = []
    for key, value in sorted(values.items()):
        flags.append(_flag(key))
        items = value if isinstance(value, list | tuple) else [value]
        flags.extend(str(item).lower() if isinstance(item, bool) else str(item) for item in items)
    return flags


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
