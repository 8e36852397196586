"""Name -> class registries for detectors, backbones and fusion necks.

A component is built from a plain config mapping ``{"name": <registered name>, **kwargs}``
(the form it takes in ``workflow_config.yaml``). The registry refuses unknown names and
unknown keyword arguments with a ``ValueError`` that names the key and lists the valid
ones, and checks that the built object has the registry's base type.

Values that a parent component derives (a neck's input width, a detector's input
dimensions) are passed to :meth:`Registry.build` as ``provided`` keyword arguments; a user
config that tries to set one of them is refused. :meth:`Registry.check` does all of these
checks without building anything (at DAG-build time) and returns the config with its
defaults filled in; :meth:`Registry.build` runs it first, so keys are refused in one place.

A class whose constructor takes grouped configs rather than the flat keys (the detectors,
``models.detector_base``) defines ``config_signature()`` (the flat keys and defaults),
``from_config(flat_kwargs)`` (build) and ``check_config(resolved, where)`` (check the
values).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from models.keys import check_keys


class Registry:
    """A named mapping from strings to classes that share a base type: the one registry class
    of the project (the detectors, backbones, necks and localisers here; the feature encoders
    of ``pipeline.encoders`` subclass it).

    Names listed in ``modules`` are valid before their class is registered: the first
    :meth:`get` of such a name imports its module, whose ``@register(name)`` decorator then
    registers the class, and only that module may register the name. So a registry can be
    imported, listed and its configs checked without importing every model (nor torch).

    Args:
        name: what the registry holds, used in error messages ("detector", "neck").
        base: every registered class must subclass it, every built object is an instance;
            a class, or ``"module:QualName"`` resolved when first needed.
        contract: what a registered class must accept and return (shown in ``repr``).
        modules: registered name -> dotted module that registers it when imported.
    """

    def __init__(
        self,
        name: str,
        base: type | str,
        contract: str = "",
        modules: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._base = base
        self.contract = contract
        self._classes: dict[str, type] = {}
        self._modules: dict[str, str] = dict(modules or {})

    @property
    def base(self) -> type:
        """The base class (imported on first use when given as ``"module:QualName"``)."""
        if isinstance(self._base, str):
            module, _, qualname = self._base.partition(":")
            self._base = getattr(importlib.import_module(module), qualname)
        return self._base

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator registering the class under ``name``."""

        def decorator(cls: type) -> type:
            if name in self._classes:
                raise ValueError(
                    f"{self.name} registry: the name {name!r} is already taken by "
                    f"{self._classes[name].__qualname__}; choose another name"
                )
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(
                    f"{self.name} registry: {cls!r} must subclass {self.base.__qualname__}"
                )
            reserved_by = self._modules.get(name)
            if reserved_by is not None and cls.__module__ != reserved_by:
                raise ValueError(
                    f"{self.name} {name!r} is reserved for {reserved_by}; "
                    f"register {cls.__name__} under another name"
                )
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        """Valid names (registered, or registered by a module on first lookup), sorted."""
        return sorted(set(self._classes) | set(self._modules))

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
            raise ValueError(self.unknown_name_message(name))
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"{self.name} {name!r} needs module {module}, whose import failed: {error}; "
                "install its dependencies or pick another one"
            ) from error
        if name not in self._classes:
            raise RuntimeError(f"module {module} did not register {self.name} {name!r}")
        return self._classes[name]

    def unknown_name_message(self, name: str) -> str:
        """The error message of an unknown ``name``, listing the valid ones."""
        return f"unknown {self.name} name {name!r}; valid names: {', '.join(self.names())}"

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, names={self.names()})\n{self.contract}"

    def parameters(self, name: str) -> Mapping[str, inspect.Parameter]:
        """The keyword arguments the component ``name`` is built from: those of
        ``cls.config_signature()`` where the class defines one (a class built from a flat
        config by ``cls.from_config``), else those of its constructor."""
        cls = self.get(name)
        signature = getattr(cls, "config_signature", None)
        return (signature() if signature is not None else inspect.signature(cls)).parameters

    def check(
        self, cfg: Mapping[str, Any], provided: Iterable[str] = (), where: str | None = None
    ) -> dict[str, Any]:
        """Check ``cfg`` = ``{"name": ..., **kwargs}`` against the component's parameters
        without building it, and return it resolved: every settable key with its value or its
        default. A class that defines ``check_config(resolved, where) -> resolved`` checks the
        values too (and resolves nested configs), still without building.

        Args:
            cfg: the user's config: the registered name plus constructor keyword arguments.
            provided: names of the arguments the caller derives itself (input widths,
                strides); ``cfg`` may not set them, and they are left out of the result.
            where: the config's path as the user wrote it (``"runs.loco.model"``), named in
                error messages; default the registered name.

        Raises:
            ValueError: no or unknown ``name``, a key the component does not accept (``unknown
                key 'where.key'; valid keys here: ...``), a key that the caller provides, a
                required argument missing, or a bad value.
        """
        if not isinstance(cfg, Mapping) or "name" not in cfg:
            raise ValueError(
                f"{self.name} config {where or cfg!r} must be a mapping with a 'name' key "
                f"(one of: {', '.join(self.names())})"
            )
        name = cfg["name"]
        where = where or str(name)
        params = self.parameters(name)
        provided = set(provided)
        kwargs = {key: value for key, value in cfg.items() if key != "name"}
        clash = sorted(set(kwargs) & provided)
        if clash:
            raise ValueError(
                f"{where}: key(s) {', '.join(clash)} are derived by the caller from the data or "
                f"the parent model; remove them from the {self.name} config"
            )
        keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        settable = [key for key, p in params.items() if p.kind in keyword and key not in provided]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            check_keys(kwargs, settable, where)
        missing = [
            key
            for key, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
            and key not in kwargs
            and key not in provided
        ]
        if missing:
            raise ValueError(f"{where}: required key(s) {', '.join(missing)} missing")
        resolved = {"name": name, **{key: params[key].default for key in settable}, **kwargs}
        check_config = getattr(self.get(name), "check_config", None)
        return resolved if check_config is None else check_config(resolved, where)

    def build(self, cfg: Mapping[str, Any], **provided: Any) -> Any:
        """Build the component described by ``cfg`` = ``{"name": ..., **kwargs}``, after
        :meth:`check`: ``cls.from_config({**kwargs, **provided})`` where the class defines
        ``from_config``, else ``cls(**kwargs, **provided)``.

        Args:
            cfg: the user's config: the registered name plus constructor keyword arguments.
            **provided: constructor arguments the caller derives itself (input widths,
                strides); ``cfg`` may not set them.

        Raises:
            ValueError: see :meth:`check`.
            TypeError: the constructor returned something that is not a ``base``.
        """
        self.check(cfg, provided)
        cls = self.get(cfg["name"])
        kwargs = {key: value for key, value in cfg.items() if key != "name"}
        kwargs.update(provided)
        from_config = getattr(cls, "from_config", None)
        built = from_config(kwargs) if from_config is not None else cls(**kwargs)
        if not isinstance(built, self.base):
            raise TypeError(
                f"{self.name} {cfg['name']!r} built a {type(built).__qualname__}, "
                f"not a {self.base.__qualname__}"
            )
        return built


BACKBONES = Registry(
    "backbone",
    base="torch.nn:Module",
    modules={"conv_transformer": "models.backbones"},
    contract="""Backbone contract.

    Constructor: keyword arguments; ``in_channels: int`` (width of the fused input
    embedding) is provided by the detector, everything else comes from the config.
    Attributes: ``out_channels: int`` (width of every pyramid level), ``strides:
    tuple[int, ...]`` (stride of each level w.r.t. the input grid, first level 1),
    ``max_stride: int`` (the input length must be a multiple of it).
    ``forward(x: Tensor (B, C_in, T), mask: Tensor (B, T) bool)`` returns
    ``(feats: list[Tensor (B, out_channels, T // stride_l)], masks: list[Tensor
    (B, T // stride_l) bool])``; features are zero at padded positions (mask False).
    """,
)

NECKS = Registry(
    "neck",
    base="torch.nn:Module",
    modules={"identity": "models.necks", "fpn": "models.necks", "mravff": "models.necks_mravff"},
    contract="""Neck (feature-pyramid / fusion module) contract.

    Constructor: keyword arguments; the detector provides ``channels: int`` (backbone
    width), ``strides: tuple[int, ...]`` (per-level strides) and ``input_dims: dict[str,
    int]`` (per-modality input widths); the rest comes from the config.
    Attributes: ``out_channels: int`` (width of every output level) and
    ``required_modalities: tuple[str, ...]`` (raw inputs the neck reads, beyond those
    fused early; () for none). ``forward(feats: list[Tensor (B, C, T_l)], masks:
    list[Tensor (B, T_l) bool], inputs: dict[str, Tensor (B, D_m, T)], input_mask:
    Tensor (B, T) bool)`` returns ``(feats: list[Tensor (B, out_channels, T_l)], masks:
    list[Tensor (B, T_l) bool])`` with the same number of levels and lengths. A new
    fusion method (e.g. MRAV-FF's per-level gated cross-attention, arXiv 2310.03456) is
    a new registered neck.
    """,
)

DETECTORS = Registry(
    "detector",
    base="models.detector_base:TemporalDetector",
    modules={"actionformer": "models.detectors", "loco": "models.loco.detector"},
    contract="""Detector (meta-architecture) contract.

    A ``TemporalDetector`` subclass (``models.detector_base``), built from the flat config
    by its ``from_config``: ``input_dims: dict[str, int]`` and ``num_classes: int`` come
    from the data, the rest from the config, each key a field of one of the class's
    ``config_groups`` (frozen dataclasses the keyword-only constructor takes).
    Attributes: ``modalities: tuple[str, ...]``, ``input_modalities: tuple[str, ...]``
    (all inputs read), ``max_stride: int`` (the caller pads T to a multiple of it).
    ``forward(inputs: dict[str, Tensor (B, T, D_m)], mask: Tensor (B, T) bool) ->
    DetectorOutput``; ``loss(output, gt_segments: list[Tensor (N_b, 2)], gt_labels:
    list[Tensor (N_b,)]) -> {"cls", "reg", "loss"}``; ``predict(output) ->
    list[{"segments": (K, 2), "scores": (K,), "labels": (K,)}]``, segments in
    snippet-grid units (see ``models.points``).
    """,
)
