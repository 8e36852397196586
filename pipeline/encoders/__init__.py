"""Encoder registry: weight-free classic encoders and pretrained CLIP / ResNet / VideoMAE / CLAP /
AST.

Build an encoder once per extraction job from its config and call it on many batches::

    visual = build_visual_encoder({"name": "classic", "frames_per_snippet": 4})
    features = visual.encode(clips)  # (B, F, H, W, 3) uint8 -> (B, D) float32

See :class:`VisualEncoderRegistry` and :class:`AudioEncoderRegistry` for the contract.
Pretrained encoders never touch the network unless their config sets ``download: true``;
missing weights raise :class:`MissingWeightsError` at once.

Importing this package is cheap: the encoder modules (and torch, transformers, open_clip) are
imported only when an encoder is first looked up by name or an encoder class is first accessed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.encoders.base import AudioEncoder, MissingWeightsError, VisualEncoder
from pipeline.encoders.registry import (
    AUDIO_ENCODERS,
    VISUAL_ENCODERS,
    AudioEncoderRegistry,
    Registry,
    VisualEncoderRegistry,
    build_audio_encoder,
    build_visual_encoder,
)

if TYPE_CHECKING:
    from pipeline.encoders.ast_audio import ASTAudioEncoder
    from pipeline.encoders.clap import CLAPAudioEncoder
    from pipeline.encoders.classic_audio import ClassicAudioEncoder
    from pipeline.encoders.classic_visual import ClassicVisualEncoder
    from pipeline.encoders.clip import CLIPVisualEncoder
    from pipeline.encoders.resnet import ResNetVisualEncoder
    from pipeline.encoders.videomae import VideoMAEVisualEncoder

# Encoder classes, imported from their module on first attribute access (PEP 562), so that
# importing this package costs neither torch nor librosa.
LAZY_CLASSES = {
    "ASTAudioEncoder": "pipeline.encoders.ast_audio",
    "CLAPAudioEncoder": "pipeline.encoders.clap",
    "ClassicAudioEncoder": "pipeline.encoders.classic_audio",
    "ClassicVisualEncoder": "pipeline.encoders.classic_visual",
    "CLIPVisualEncoder": "pipeline.encoders.clip",
    "ResNetVisualEncoder": "pipeline.encoders.resnet",
    "VideoMAEVisualEncoder": "pipeline.encoders.videomae",
}


def __getattr__(name: str) -> Any:
    """Import an encoder class named in :data:`LAZY_CLASSES` from its module on first access."""
    module = LAZY_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY_CLASSES))


__all__ = [
    "AUDIO_ENCODERS",
    "VISUAL_ENCODERS",
    "ASTAudioEncoder",
    "AudioEncoder",
    "AudioEncoderRegistry",
    "CLAPAudioEncoder",
    "CLIPVisualEncoder",
    "ClassicAudioEncoder",
    "ClassicVisualEncoder",
    "MissingWeightsError",
    "Registry",
    "ResNetVisualEncoder",
    "VideoMAEVisualEncoder",
    "VisualEncoder",
    "VisualEncoderRegistry",
    "build_audio_encoder",
    "build_visual_encoder",
]
