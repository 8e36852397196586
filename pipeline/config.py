"""Workflow configuration: JSON-schema validation with defaults, and per-run and per-stage views.

The schema (``pipeline/schemas/config.schema.yaml``) is the single source of keys, defaults and
descriptions; the Snakefile validates against the same file with ``snakemake.utils.validate``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key path."""


def load_schema() -> dict[str, Any]:
    with SCHEMA_PATH.open() as handle:
        return yaml.safe_load(handle)


def _extend_with_defaults(validator_class: type) -> type:
    """A validator that fills in each property's ``default`` before validating it."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
                elif "$ref" in subschema:
                    resolved = validator._resolver.lookup(subschema["$ref"]).contents
                    if "default" in resolved:
                        instance.setdefault(name, copy.deepcopy(resolved["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def validate_config(config: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Return a validated copy of ``config`` with every default filled in.

    Raises:
        ConfigError: naming the offending key (unknown keys are refused) and the file ``source``.
    """
    resolved = copy.deepcopy(dict(config))
    schema = load_schema()
    validator_class = _extend_with_defaults(jsonschema.Draft202012Validator)
    validator = validator_class(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(resolved))
    if error is not None:
        key = _key_path(error)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            unknown = sorted(set(error.instance) - set(known))
            prefix = "" if not error.absolute_path else f"{key}."
            raise ConfigError(
                f"{source}: unknown key '{prefix}{unknown[0]}'; valid keys here: "
                f"{', '.join(sorted(known))}"
            )
        raise ConfigError(f"{source}: invalid value at '{key}': {error.message}")
    _check_run_overrides(resolved, schema, source)
    _check_segments(resolved["segments"], source)
    for task in ("segments", "spatial"):
        if resolved[task]["enabled"] is True and (missing := _task_missing(resolved, task)):
            raise ConfigError(
                f"{source}: '{task}.enabled' is true but {missing}; set it to auto or false"
            )
    return resolved


def _task_missing(config: Mapping[str, Any], task: str) -> str:
    """Why the optional ``task`` (segments, spatial) cannot run on this config ("" if it can)."""
    dataset = config["dataset"]
    if task == "segments" and segment_labels_source(config) is not None:
        return ""
    if dataset["source"] != "synth":
        if task == "segments":
            return (
                f"dataset.source is {dataset['source']!r} and the segment labels come from the "
                "synthetic source, an AVE import (dataset.import.format: ave) or AVE's "
                "annotations beside raw videos (dataset.segment_labels)"
            )
        return (
            f"dataset.source is {dataset['source']!r} and only the synthetic source "
            "writes its labels"
        )
    if task == "spatial" and not config["extraction"]["visual_grid"]:
        return "extraction.visual_grid is false (the localisers read the patch grids)"
    return ""


def segment_labels_source(config: Mapping[str, Any]) -> str | None:
    """Where a non-synthetic data set's segment labels come from: ``import`` (the AVE release's
    features), ``videos`` (AVE's annotations beside raw videos) or None."""
    dataset = config["dataset"]
    if dataset["source"] == "import" and dataset["import"]["format"] == "ave":
        return "import"
    if dataset["source"] == "videos" and dataset.get("segment_labels"):
        return "videos"
    return None


def task_enabled(config: Mapping[str, Any], task: str) -> bool:
    """Whether the optional stage ``task`` (``segments`` or ``spatial``) runs on ``config``."""
    enabled = config[task]["enabled"]
    return enabled is True or (enabled == "auto" and not _task_missing(config, task))


def check_segment_weights(config: Mapping[str, Any], source: str = "config") -> None:
    """The pretrained CNN weights every AV-BT pre-training of the segment stage needs exist
    (checked when the DAG is built, when the stage runs AV-BT).

    Raises:
        ConfigError: naming the file ``source``, the key, the model and how to get it.
    """
    from pipeline.segments.settings import (  # light: dataclasses only
        PretrainSettings,
        check_pretrained_weights,
        check_settings,
    )

    if not task_enabled(config, "segments") or segment_labels_source(config) == "import":
        return
    segments = config["segments"]
    try:
        for name in sorted({run["pretraining"] for run in segments["runs"].values()}):
            where = f"segments.pretrainings.{name}"
            merged = {**segments["pretrain"], **segments["pretrainings"][name]}
            check_pretrained_weights(check_settings(PretrainSettings, merged, where), where)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None


def _check_segments(segments: Mapping[str, Any], source: str) -> None:
    """Check the ``segments`` block against the segment stage's settings dataclasses."""
    from pipeline.segments.settings import (  # light: dataclasses only
        ClassifierSettings,
        ClipSettings,
        PretrainSettings,
        check_settings,
    )

    try:
        check_settings(ClipSettings, segments["clips"], "segments.clips")
        check_settings(PretrainSettings, segments["pretrain"], "segments.pretrain")
        check_settings(ClassifierSettings, segments["classifier"], "segments.classifier")
        for name, overrides in segments["pretrainings"].items():
            merged = {**segments["pretrain"], **overrides}
            check_settings(PretrainSettings, merged, f"segments.pretrainings.{name}")
        for name, run in segments["runs"].items():
            if run["pretraining"] not in segments["pretrainings"]:
                raise ValueError(
                    f"'segments.runs.{name}.pretraining' names {run['pretraining']!r}, which is "
                    f"not in segments.pretrainings ({', '.join(segments['pretrainings'])})"
                )
            merged = {**segments["classifier"], **run["classifier"]}
            check_settings(ClassifierSettings, merged, f"segments.runs.{name}.classifier")
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None


def _check_run_overrides(config: dict[str, Any], schema: dict[str, Any], source: str) -> None:
    training_keys = schema["definitions"]["training"]["properties"]
    for run_name, run in config["runs"].items():
        unknown = sorted(set(run.get("training", {})) - set(training_keys))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key runs.{run_name}.training.{unknown[0]}; "
                f"valid keys: {', '.join(sorted(training_keys))}"
            )
        merged = {**config["training"], **run.get("training", {})}
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema["definitions"]["training"]).iter_errors(merged)
        )
        if error is not None:
            raise ConfigError(
                f"{source}: invalid value at 'runs.{run_name}.training.{_key_path(error)}': "
                f"{error.message}"
            )


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply ``overrides`` (top-level keys merged one level deep)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(key), Mapping):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return validate_config(config, source=str(path))


def stable_hash(value: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable value, independent of key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def extraction_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the extraction config that determines the features (hashed into stores).

    Scheduling keys (shard size, batch size, device, error policy) are left out: they change how
    the work runs, not what it produces.
    """
    extraction = config["extraction"]
    keys = ("fps", "window_s", "stride_s", "visual", "audio", "visual_grid", "fp16")
    return {key: copy.deepcopy(extraction[key]) for key in keys}


def segment_settings(config: Mapping[str, Any], step: str, name: str = "") -> dict[str, Any]:
    """The settings overrides one segment-stage job receives (field name -> value).

    ``step`` is ``clips``, ``pretraining`` (``name`` of a ``segments.pretrainings`` entry) or
    ``run`` (``name`` of a ``segments.runs`` entry: its merged classifier settings).
    """
    segments = config["segments"]
    if step == "clips":
        return copy.deepcopy(segments["clips"])
    if step == "pretraining":
        return {**segments["pretrain"], **segments["pretrainings"][name]}
    if step == "run":
        return {**segments["classifier"], **segments["runs"][name]["classifier"]}
    raise ValueError(f"unknown segment step {step!r}; expected clips, pretraining or run")


def run_config(config: Mapping[str, Any], run_name: str) -> dict[str, Any]:
    """The merged configuration of one detection run, as the training stage receives it."""
    if run_name not in config["runs"]:
        raise ConfigError(f"unknown run '{run_name}'; configured runs: {', '.join(config['runs'])}")
    run = config["runs"][run_name]
    return {
        "name": run_name,
        "model": copy.deepcopy(run["model"]),
        "training": {**config["training"], **run.get("training", {})},
        "tiou_thresholds": list(config["dataset"]["tiou_thresholds"]),
    }
