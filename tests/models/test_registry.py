"""Registry: building from config, refusing bad names and keys, type checks."""

import inspect
import subprocess
import sys

import pytest
from torch import nn

import models
from models.registry import DETECTORS, NECKS, Registry


def _toy_registry() -> Registry:
    registry = Registry("toy", base=nn.Module)

    @registry.register("linear")
    class ToyLinear(nn.Module):
        def __init__(self, *, in_features: int, out_features: int = 3) -> None:
            super().__init__()
            self.layer = nn.Linear(in_features, out_features)

    return registry


def test_build_passes_kwargs_and_provided_values() -> None:
    registry = _toy_registry()
    built = registry.build({"name": "linear", "out_features": 5}, in_features=2)
    assert built.layer.in_features == 2 and built.layer.out_features == 5
    assert "linear" in registry and registry.names() == ["linear"]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown toy name 'conv'.*linear"):
        _toy_registry().build({"name": "conv"})
    with pytest.raises(ValueError, match="'name' key"):
        _toy_registry().build({"out_features": 3})


def test_unknown_key_is_named_and_valid_keys_listed() -> None:
    with pytest.raises(
        ValueError, match=r"unknown key 'linear\.out_dim'; valid keys here: out_features$"
    ):
        _toy_registry().build({"name": "linear", "out_dim": 3}, in_features=2)
    with pytest.raises(ValueError, match=r"unknown key 'runs\.a\.model\.out_dim'"):
        _toy_registry().check({"name": "linear", "out_dim": 3}, ["in_features"], "runs.a.model")


def test_check_resolves_defaults_without_building() -> None:
    registry = Registry("toy", base=nn.Module)

    @registry.register("fragile")
    class Fragile(nn.Module):
        def __init__(self, *, in_features: int, width: int = 3, bias: bool = True) -> None:
            raise AssertionError("check must not build")

    resolved = registry.check({"name": "fragile", "bias": False}, provided=["in_features"])
    assert resolved == {"name": "fragile", "width": 3, "bias": False}
    with pytest.raises(ValueError, match=r"required key\(s\) in_features missing"):
        registry.check({"name": "fragile"})
    with pytest.raises(AssertionError, match="must not build"):
        registry.build({"name": "fragile"}, in_features=2)


def test_check_config_and_from_config_hooks() -> None:
    """A class with ``config_signature``/``check_config``/``from_config`` (the detectors'
    protocol) has its flat keys and values checked by the registry, in check and build."""
    registry = Registry("toy", base=nn.Module)

    @registry.register("grouped")
    class Grouped(nn.Module):
        def __init__(self, *, sizes: tuple[int, int]) -> None:
            super().__init__()
            self.layer = nn.Linear(*sizes)

        @classmethod
        def config_signature(cls) -> inspect.Signature:
            keyword = inspect.Parameter.KEYWORD_ONLY
            return inspect.Signature(
                [
                    inspect.Parameter("fan_in", keyword),
                    inspect.Parameter("fan_out", keyword, default=2),
                ]
            )

        @classmethod
        def check_config(cls, resolved: dict, where: str) -> dict:
            if resolved["fan_out"] < 1:
                raise ValueError(f"{where}: fan_out must be >= 1")
            return {**resolved, "checked": True}

        @classmethod
        def from_config(cls, cfg: dict) -> "Grouped":
            return cls(sizes=(cfg["fan_in"], cfg.get("fan_out", 2)))

    assert registry.check({"name": "grouped", "fan_in": 3}) == {
        "name": "grouped",
        "fan_in": 3,
        "fan_out": 2,
        "checked": True,
    }
    assert registry.build({"name": "grouped"}, fan_in=4).layer.in_features == 4
    with pytest.raises(
        ValueError, match=r"unknown key 'grouped\.sizes'; valid keys here: fan_out$"
    ):
        registry.build({"name": "grouped", "sizes": (1, 2)}, fan_in=4)
    with pytest.raises(ValueError, match="grouped: fan_out must be >= 1"):
        registry.build({"name": "grouped", "fan_out": 0}, fan_in=4)


def test_missing_and_clashing_keys() -> None:
    with pytest.raises(ValueError, match=r"required key.*in_features"):
        _toy_registry().build({"name": "linear"})
    with pytest.raises(ValueError, match="in_features are derived by the caller"):
        _toy_registry().build({"name": "linear", "in_features": 4}, in_features=2)


def test_register_checks_type_and_duplicates() -> None:
    registry = _toy_registry()
    with pytest.raises(TypeError, match="must subclass Module"):
        registry.register("plain")(object)
    with pytest.raises(ValueError, match="already taken"):
        registry.register("linear")(nn.Identity)


def test_build_checks_built_type() -> None:
    registry = Registry("toy", base=nn.Module)

    @registry.register("impostor")
    class Impostor(nn.Module):
        def __new__(cls) -> object:  # a factory that returns the wrong kind of object
            return object()

    with pytest.raises(TypeError, match="built a object, not a Module"):
        registry.build({"name": "impostor"})


def test_project_registries_hold_the_components() -> None:
    assert "actionformer" in DETECTORS
    with pytest.raises(TypeError, match="must subclass TemporalDetector"):
        DETECTORS.register("linear")(nn.Linear)  # a detector is a TemporalDetector subclass
    assert {"identity", "fpn"} <= set(NECKS.names())
    assert "neck" in repr(NECKS) and "(B, C, T_l)" in NECKS.contract
    with pytest.raises(ValueError, match=r"unknown key 'actionformer\.embed_size'"):
        models.build_detector(
            {
                "name": "actionformer",
                "input_dims": {"audio": 4, "visual": 4},
                "num_classes": 2,
                "embed_size": 8,
            }
        )


def test_lazy_entries_are_listed_reserved_and_import_without_torch() -> None:
    lazy = Registry("thing", base="collections.abc:Sized", modules={"later": "some.module"})
    assert lazy.names() == ["later"] and "later" in lazy
    with pytest.raises(ValueError, match=r"'later' is reserved for some\.module"):
        lazy.register("later")(list)
    with pytest.raises(ValueError, match="unknown thing name 'other'; valid names: later"):
        lazy.get("other")
    with pytest.raises(ImportError, match=r"thing 'later' needs module some\.module"):
        lazy.get("later")
    lazy.register("mine")(list)  # the string base is resolved on first use
    assert lazy.get("mine") is list and lazy.names() == ["later", "mine"]
    # The configuration boundary checks keys while the DAG is built: no torch for that.
    code = "import sys, models.registry, pipeline.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
