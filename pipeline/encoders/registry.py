"""Name -> class registries of visual and audio encoders, and the functions that build them.

The built-in encoders are registered lazily: each registry knows which module registers a name
and imports it on the first lookup of that name. An extraction job that uses only the
weight-free ``classic`` encoders therefore never imports torch, transformers or open_clip.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipeline.encoders.base import AudioEncoder, VisualEncoder

# Arguments every builder passes itself; they are not config keys.
RUNTIME_ARGUMENTS = ("device", "fp16")


class Registry:
    """Maps registry names to encoder classes and builds them from ``{"name": ..., **kwargs}``.

    A registered class takes its options as keyword-only constructor arguments (the config
    kwargs); classes that run torch models also accept ``device`` and ``fp16``, which the
    builder passes itself.

    Names listed in ``modules`` are valid before their class is registered: the first
    :meth:`get` of such a name imports its module, whose ``@register(name)`` decorator then
    registers the class. Only that module may register the name.

    Args:
        kind: what the registry holds, used in error messages (``"visual encoder"``).
        base: abstract base class every registered class must subclass.
        modules: name -> dotted module path that registers it when imported (lazy entries).
    """

    def __init__(self, kind: str, base: type, modules: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, type] = {}
        self._modules: dict[str, str] = dict(modules or {})

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator that registers the class under ``name`` and sets ``cls.name``."""

        def decorator(cls: type) -> type:
            if not issubclass(cls, self.base):
                raise TypeError(f"{cls.__name__} must subclass {self.base.__name__}")
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            reserved_by = self._modules.get(name)
            if reserved_by is not None and cls.__module__ != reserved_by:
                raise ValueError(
                    f"{self.kind} {name!r} is reserved for {reserved_by}; "
                    f"register {cls.__name__} under another name"
                )
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        """Valid names (registered or lazily importable), sorted."""
        return sorted(set(self._classes) | set(self._modules))

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> type:
        """The class registered under ``name``, importing its module on first use.

        Raises:
            ValueError: ``name`` is not a valid name; the message lists the valid ones.
            ImportError: the module of a lazy entry failed to import (a missing dependency).
        """
        if name in self._classes:
            return self._classes[name]
        module = self._modules.get(name)
        if module is None:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {self.names()}")
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"{self.kind} {name!r} needs module {module}, whose import failed: {error}; "
                "install its dependencies or pick another encoder"
            ) from error
        if name not in self._classes:
            raise RuntimeError(f"module {module} did not register {self.kind} {name!r}")
        return self._classes[name]

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
        kwargs = dict(cfg)
        name = kwargs.pop("name")
        cls = self.get(name)
        valid_keys = self.config_keys(name)
        for key in kwargs:
            if key not in valid_keys:
                raise ValueError(
                    f"{self.kind} {name!r}: unknown config key {key!r}; valid keys: {valid_keys}"
                )
        accepted = inspect.signature(cls.__init__).parameters
        kwargs.update({key: value for key, value in runtime.items() if key in accepted})
        encoder = cls(**kwargs)
        if not isinstance(encoder, self.base):
            raise TypeError(f"{self.kind} {name!r} built a {type(encoder).__name__}")
        return encoder


class VisualEncoderRegistry(Registry):
    """Registry of :class:`~pipeline.encoders.base.VisualEncoder` classes.

    Contract of a registered class:

    - constructor: keyword-only config kwargs (plus ``device``, ``fp16`` for torch models);
      loads its model once.
    - ``name``, ``dim`` (D), ``frame_size`` ``(width, height)``, ``frames_per_snippet`` (F),
      ``grid_shape`` ``(H', W')`` or ``None``, ``grid_dim`` (Dg) or ``None``.
    - ``encode(clips)``: ``(B, F, H, W, 3)`` uint8 RGB, frames at ``frame_size``, F frames
      sampled uniformly inside each snippet window -> ``(B, D)`` float32.
    - ``encode_grid(clips)``: same input -> ``(B, H', W', Dg)`` float32 spatial grid.
    - ``config()``: JSON-serialisable dict of everything that determines the output.

    Args:
        modules: name -> module that registers it, imported on first lookup (see :class:`Registry`).
    """

    def __init__(self, modules: Mapping[str, str] | None = None) -> None:
        super().__init__("visual encoder", VisualEncoder, modules)


class AudioEncoderRegistry(Registry):
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
