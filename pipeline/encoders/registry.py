"""Name -> class registries of visual and audio encoders, and the functions that build them.

The built-in encoders are registered lazily: each registry knows which module registers a name
and imports it on the first lookup of that name. An extraction job that uses only the
weight-free ``classic`` encoders therefore never imports torch, transformers or open_clip.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from models.keys import check_keys
from models.registry import Registry
from pipeline.encoders.base import AudioEncoder, VisualEncoder

# Arguments every builder passes itself; they are not config keys.
RUNTIME_ARGUMENTS = ("device", "fp16")


class EncoderRegistry(Registry):
    """The project's :class:`~models.registry.Registry` for feature encoders, which are built
    from ``{"name": ..., **kwargs}`` plus the runtime arguments ``device`` and ``fp16``.

    A registered class takes its options as keyword-only constructor arguments (the config
    kwargs); classes that run torch models also accept ``device`` and ``fp16``, which the
    builder passes itself. Registering sets ``cls.name``.

    Args:
        kind: what the registry holds, used in error messages (``"visual encoder"``).
        base: abstract base class every registered class must subclass.
        modules: name -> dotted module path that registers it when imported (lazy entries).
    """

    def __init__(self, kind: str, base: type, modules: Mapping[str, str] | None = None) -> None:
        super().__init__(kind, base, modules=modules)

    @property
    def kind(self) -> str:
        return self.name

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator that registers the class under ``name`` and sets ``cls.name``."""
        register = super().register(name)

        def decorator(cls: type) -> type:
            cls = register(cls)
            cls.name = name
            return cls

        return decorator

    def unknown_name_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}; valid names: {self.names()}"

    def config_keys(self, name: str) -> list[str]:
        """The config kwargs the class registered under ``name`` accepts."""
        parameters = inspect.signature(self.get(name).__init__).parameters
        return [
            key
            for key, param in parameters.items()
            if key != "self"
            and key not in RUNTIME_ARGUMENTS
            and param.kind is inspect.Parameter.KEYWORD_ONLY
        ]

    def check_options(self, cfg: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
        """The options of ``cfg`` (its keys but ``name``), refusing those the class does not
        take; ``where`` (default ``"<kind> <name>"``) names the config in the error."""
        options = {key: value for key, value in cfg.items() if key != "name"}
        check_keys(options, self.config_keys(cfg["name"]), where or f"{self.kind} {cfg['name']}")
        return options

    def build(self, cfg: dict[str, Any], **runtime: Any) -> Any:
        """Build an encoder from ``{"name": ..., **kwargs}``.

        Args:
            cfg: encoder config; ``name`` picks the class, the other keys are its kwargs.
            **runtime: ``device`` / ``fp16``, passed to classes whose constructor takes them.

        Raises:
            ValueError: missing or unknown ``name``, or a kwarg the class does not accept.
        """
        if not isinstance(cfg, dict) or "name" not in cfg:
            raise ValueError(
                f"{self.kind} config must be a mapping with a 'name' key (one of {self.names()}), "
                f"got {cfg!r}"
            )
        name = cfg["name"]
        cls = self.get(name)
        kwargs = self.check_options(cfg)
        accepted = inspect.signature(cls.__init__).parameters
        kwargs.update({key: value for key, value in runtime.items() if key in accepted})
        encoder = cls(**kwargs)
        if not isinstance(encoder, self.base):
            raise TypeError(f"{self.kind} {name!r} built a {type(encoder).__name__}")
        return encoder


class VisualEncoderRegistry(EncoderRegistry):
    """Registry of :class:`~pipeline.encoders.base.VisualEncoder` classes.

    Contract of a registered class:

    - constructor: keyword-only config kwargs (plus ``device``, ``fp16`` for torch models);
      loads its model once.
    - ``name``, ``dim`` (D), ``frame_size`` ``(width, height)``, ``frames_per_snippet`` (F),
      ``grid_shape`` ``(H', W')`` or ``None``, ``grid_dim`` (Dg) or ``None``, ``grid_levels``
      (a packed feature pyramid's layout) or ``None``.
    - ``encode(clips)``: ``(B, F, H, W, 3)`` uint8 RGB, frames at ``frame_size``, F frames
      sampled uniformly inside each snippet window -> ``(B, D)`` float32.
    - ``encode_grid(clips)``: same input -> ``(B, H', W', Dg)`` float32 spatial grid.
    - ``config()``: JSON-serialisable dict of everything that determines the output.

    Args:
        modules: name -> module that registers it, imported on first lookup (see :class:`Registry`).
    """

    def __init__(self, modules: Mapping[str, str] | None = None) -> None:
        super().__init__("visual encoder", VisualEncoder, modules)


class AudioEncoderRegistry(EncoderRegistry):
    """Registry of :class:`~pipeline.encoders.base.AudioEncoder` classes.

    Contract of a registered class:

    - constructor: keyword-only config kwargs (plus ``device``, ``fp16`` for torch models);
      loads its model once.
    - ``name``, ``dim`` (D), ``sample_rate`` (Hz of the mono waveform it expects).
    - ``encode(windows)``: ``(B, N)`` float32 mono windows in [-1, 1] at ``sample_rate``
      -> ``(B, D)`` float32.
    - ``config()``: JSON-serialisable dict of everything that determines the output.

    Args:
        modules: name -> module that registers it, imported on first lookup (see :class:`Registry`).
    """

    def __init__(self, modules: Mapping[str, str] | None = None) -> None:
        super().__init__("audio encoder", AudioEncoder, modules)


# Built-in encoders, imported on first lookup of their name.
VISUAL_ENCODERS = VisualEncoderRegistry(
    modules={
        "classic": "pipeline.encoders.classic_visual",
        "clip": "pipeline.encoders.clip",
        "resnet": "pipeline.encoders.resnet",
        "videomae": "pipeline.encoders.videomae",
    }
)
AUDIO_ENCODERS = AudioEncoderRegistry(
    modules={
        "ast": "pipeline.encoders.ast_audio",
        "clap": "pipeline.encoders.clap",
        "classic": "pipeline.encoders.classic_audio",
    }
)


def build_visual_encoder(
    cfg: dict[str, Any], *, device: str = "auto", fp16: bool = False
) -> VisualEncoder:
    """Build a visual encoder from ``{"name": ..., **kwargs}`` (see :data:`VISUAL_ENCODERS`).

    Args:
        cfg: encoder config.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (torch encoders only).
        fp16: float16 autocast on CUDA (torch encoders only; ignored on CPU).
    """
    return VISUAL_ENCODERS.build(cfg, device=device, fp16=fp16)


def build_audio_encoder(
    cfg: dict[str, Any], *, device: str = "auto", fp16: bool = False
) -> AudioEncoder:
    """Build an audio encoder from ``{"name": ..., **kwargs}`` (see :data:`AUDIO_ENCODERS`).

    Args:
        cfg: encoder config.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (torch encoders only).
        fp16: float16 autocast on CUDA (torch encoders only; ignored on CPU).
    """
    return AUDIO_ENCODERS.build(cfg, device=device, fp16=fp16)
