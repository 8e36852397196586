"""Workflow configuration: JSON-schema validation with defaults, and per-run and per-stage views.

The schema (``pipeline/schemas/config.schema.yaml``) is the single source of keys, defaults and
descriptions; the Snakefile validates against the same file with ``snakemake.utils.validate``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from models.keys import check_keys

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


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
    _check_source_keys(config.get("dataset") or {}, source)
    _check_run_overrides(resolved, schema, source)
    _check_segments(resolved["segments"], source)
    _check_encoders(resolved["extraction"], source)
    _check_models(resolved, source)
    for task in ("segments", "spatial"):
        if resolved[task]["enabled"] is True and (missing := _task_missing(resolved, task)):
            raise ConfigError(
                f"{source}: '{task}.enabled' is true but {missing}; set it to auto or false"
            )
    _check_spatial_benchmark_keys(resolved, source)
    return resolved


# The dataset keys that only one source reads: set under another source, they would be ignored
# (a forgotten `source: videos` would silently train on the synthetic videos).
SOURCE_KEYS = {
    "synth": ("synth",),
    "videos": ("videos_dir", "video_extensions", "annotations", "segment_labels"),
    "import": ("import",),
}
# The dataset keys of extracted videos (synth and videos), which an import does not read: the
# importers check their features' lengths against the annotations themselves.
EXTRACTED_VIDEO_KEYS = ("duration_tolerance_s",)


def _check_source_keys(dataset: Mapping[str, Any], source: str) -> None:
    """Refuse the user's dataset keys that another source than ``dataset.source`` reads."""
    chosen = dataset.get("source", "synth")
    for owner, keys in SOURCE_KEYS.items():
        for key in keys:
            if owner != chosen and dataset.get(key) not in (None, {}, []):
                raise ConfigError(
                    f"{source}: 'dataset.{key}' is read only with 'dataset.source: {owner}', "
                    f"but dataset.source is {chosen!r}; set the source or remove the key"
                )
    for key in EXTRACTED_VIDEO_KEYS:
        if chosen == "import" and key in dataset:
            raise ConfigError(
                f"{source}: 'dataset.{key}' is not read with 'dataset.source: import' (the "
                "importer checks the features' lengths against the annotations itself); remove it"
            )


def _task_missing(config: Mapping[str, Any], task: str) -> str:
    """Why the optional ``task`` (segments, spatial) cannot run on this config ("" if it can)."""
    dataset = config["dataset"]
    if task == "segments" and segment_labels_source(config) is not None:
        return ""
    if task == "spatial" and spatial_benchmark(config) is not None:
        return ""  # the set builder embeds the images itself: no stores, no visual_grid
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


# Import formats that are sound-source localisation benchmarks (images, sounds and boxes or
# masks, read by pipeline.spatial.benchmarks): such a data set runs the spatial stage only.
SPATIAL_BENCHMARK_FORMATS = (
    "flickr_soundnet",
    "vggss",
    "vggsound_single",
    "vgginstruments",
    "avsbench_s4",
)
# The dataset.import keys only the spatial benchmarks read, and the keys they do not read.
SPATIAL_BENCHMARK_KEYS = ("root", "train_root", "test_list", "train_list")
FEATURE_IMPORT_KEYS = (
    "extra_annotations",
    "features_dir",
    "video_features_dir",
    "videos_dir",
    "video_pattern",
)


def spatial_benchmark(config: Mapping[str, Any]) -> str | None:
    """The import format when the data set is a sound-source localisation benchmark, else None."""
    dataset = config["dataset"]
    if dataset["source"] == "import" and dataset["import"]["format"] in SPATIAL_BENCHMARK_FORMATS:
        return str(dataset["import"]["format"])
    return None


def _check_spatial_benchmark_keys(config: Mapping[str, Any], source: str) -> None:
    """A spatial benchmark's keys: its root set, no feature-release key, the spatial stage on
    (paths are checked when the DAG is built: :func:`check_spatial_benchmark`)."""
    release = config["dataset"]["import"]
    benchmark = spatial_benchmark(config)
    wrong = (
        [key for key in FEATURE_IMPORT_KEYS if release.get(key)]
        if benchmark
        else [key for key in SPATIAL_BENCHMARK_KEYS if release.get(key)]
    )
    if wrong:
        kind = "a spatial benchmark" if benchmark else "a feature release"
        raise ConfigError(
            f"{source}: 'dataset.import.{wrong[0]}' is not read for {kind} (format "
            f"{release['format']}); remove it"
        )
    if benchmark is None:
        return
    if not release.get("root"):
        raise ConfigError(f"{source}: 'dataset.import.root' must be set for format {benchmark}")
    if config["spatial"]["enabled"] is False:
        raise ConfigError(
            f"{source}: dataset.import.format {benchmark} is a sound-source localisation "
            "benchmark, which runs only the spatial stage, but 'spatial.enabled' is false"
        )


def check_spatial_benchmark(config: Mapping[str, Any], source: str = "config") -> None:
    """A spatial benchmark's release files and encoder weights exist (checked when the DAG is
    built; cheap: no image, sound or weights are read).

    Raises:
        ConfigError: naming the file ``source``, the key and the missing path or model.
    """
    if spatial_benchmark(config) is None:
        return
    from pipeline.encoders.base import MissingWeightsError
    from pipeline.spatial.benchmarks import Release, check_release
    from pipeline.spatial.sets import check_encoder_weights

    extraction = config["extraction"]
    try:
        check_release(Release.from_settings(config["dataset"]["import"]))
        check_encoder_weights(extraction["visual"], extraction["audio"])
    except (ValueError, FileNotFoundError, MissingWeightsError) as err:
        raise ConfigError(f"{source}: {err}") from None


def spatial_set_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a spatial benchmark's set job (:class:`pipeline.spatial.sets.SetSettings`):
    the release and the extraction keys that shape the embeddings or the job."""
    extraction = config["extraction"]
    keys = ("visual", "audio", "window_s", "stride_s", "fp16", "on_error", "batch_size", "device")
    return {
        "release": copy.deepcopy(dict(config["dataset"]["import"])),
        "extraction": {key: copy.deepcopy(extraction[key]) for key in keys},
    }


def spatial_set_splits(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The splits a spatial benchmark's set holds (one ``{split}.npz`` each)."""
    from pipeline.spatial.benchmarks import Release

    return Release.from_settings(config["dataset"]["import"]).splits


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
    for run_name, run in config["runs"].items():
        where = f"runs.{run_name}.training"
        try:  # the shared block is schema-checked: an unknown key here is the run's
            resolve_training({**config["training"], **run.get("training", {})}, where, schema)
        except ValueError as err:
            raise ConfigError(f"{source}: {err}") from None


def resolve_training(
    training: Mapping[str, Any],
    where: str = "training",
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of a detection run's training block with the schema's defaults filled in, checked
    against the schema's ``definitions.training`` (the same check at DAG build and in the job).

    Args:
        training: the training block (the run's overrides merged onto the shared one).
        where: its path in the configuration, named in errors.
        schema: the workflow schema, when the caller has it loaded already.

    Raises:
        ValueError: naming ``where`` and the key of an unknown or invalid value.
    """
    schema = (schema or load_schema())["definitions"]["training"]
    check_keys(training, schema["properties"], where)
    resolved = copy.deepcopy(dict(training))
    for key, spec in schema["properties"].items():
        resolved.setdefault(key, copy.deepcopy(spec["default"]))
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(resolved)
    )
    if error is not None:
        key = ".".join([where, *map(str, error.absolute_path)])
        raise ValueError(f"invalid value at '{key}': {error.message}")
    return resolved


def _check_encoders(extraction: Mapping[str, Any], source: str) -> None:
    """The extraction's encoder names and option keys, before any video is decoded (imports
    the encoder's module, not its weights)."""
    from pipeline.encoders.registry import AUDIO_ENCODERS, VISUAL_ENCODERS

    for modality, registry in (("visual", VISUAL_ENCODERS), ("audio", AUDIO_ENCODERS)):
        cfg, where = extraction[modality], f"extraction.{modality}"
        try:
            if cfg["name"] not in registry:
                raise ValueError(
                    f"'{where}.name' is {cfg['name']!r}; valid names: {', '.join(registry.names())}"
                )
            registry.check_options(cfg, where)
        except (ValueError, ImportError) as err:
            raise ConfigError(f"{source}: {err}") from None


def _check_models(config: Mapping[str, Any], source: str) -> None:
    """Every detection run's model and every spatial localiser's options (names, keys, the
    values the constructors check), without building a model: a typo fails the DAG's build,
    not a job after the extraction.

    The check imports torch (the models' modules), about 3 s of every DAG build; a check that
    passed is remembered (:func:`_passed_models_marker`) and not run again for the same models'
    options, the same ``models/`` code and the same torch.
    """
    marker = _passed_models_marker(config)
    if marker is not None and marker.is_file():
        return
    from models.checks import check_detector_config, check_localiser_config

    try:
        for name, run in config["runs"].items():
            if "model" in run:  # a missing model is the schema's error
                check_detector_config(run["model"], f"runs.{name}.model")
        for name, run in config["spatial"]["runs"].items():
            where = f"spatial.runs.{name}.model"
            check_localiser_config({"name": run["method"], **run["model"]}, where)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # an unwritable cache only costs the next build the check again


def _passed_models_marker(config: Mapping[str, Any]) -> Path | None:
    """The file whose presence records that :func:`_check_models` passed on these options with
    this code: named by the hash of the models' options, every ``models/*.py`` file and the
    torch and torchvision versions, in ``$AVLOC_CACHE_DIR`` (default
    ``$XDG_CACHE_HOME/avloc``, else ``~/.cache/avloc``); None when no cache folder can be named."""
    options = {
        "runs": {name: run.get("model") for name, run in config["runs"].items()},
        "spatial": {
            name: [run["method"], run["model"]] for name, run in config["spatial"]["runs"].items()
        },
    }
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for package in ("torch", "torchvision"):
        try:
            digest.update(f"{package} {importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package} absent".encode())
    for path in sorted(MODELS_DIR.rglob("*.py")):
        digest.update(path.relative_to(MODELS_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    folder = os.environ.get("AVLOC_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or (
            str(Path.home() / ".cache") if "HOME" in os.environ else ""
        )
        if not base:
            return None
        folder = os.path.join(base, "avloc")
    return Path(folder) / "model-checks" / digest.hexdigest()[:32]


def _read_yaml(path: Path) -> Any:
    """A YAML file's contents; a syntax error names the file, its line and column."""
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        context = ""
        if err.context and err.context_mark is not None and err.context_mark is not mark:
            start = err.context_mark
            context = f" ({err.context} at line {start.line + 1} column {start.column + 1})"
        raise ConfigError(
            f"{path}{where}: not valid YAML: {err.problem}{context}; fix the syntax (mixing tabs "
            "and spaces in the indentation is a common cause)"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply ``overrides`` (top-level keys merged one level deep)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    config = _read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(key), Mapping):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return validate_config(config, source=str(path))


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


def spatial_settings(config: Mapping[str, Any], run_name: str) -> dict[str, Any]:
    """The resolved settings of one spatial run: its localiser and the shared training block."""
    spatial = config["spatial"]
    if run_name not in spatial["runs"]:
        raise ConfigError(
            f"unknown spatial run '{run_name}'; configured runs: {', '.join(spatial['runs'])}"
        )
    run = spatial["runs"][run_name]
    return {"method": run["method"], "model": copy.deepcopy(run["model"]), **spatial["training"]}


def settings_argument(text: str, flag: str = "--settings") -> dict[str, Any]:
    """A job's resolved settings as given on its command line: a JSON object or a JSON file.

    Every config-driven job (extraction, detection training, the segment and spatial steps)
    receives its settings this way, resolved by this module (:func:`run_config`,
    :func:`segment_settings`, :func:`spatial_settings`, :func:`extraction_settings`).

    Raises:
        ValueError: naming ``flag``, when the text is neither a JSON object nor a readable JSON
            file holding one.
    """
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"{flag}: {text!r} is neither a JSON object nor an existing file")
        text = path.read_text(encoding="utf-8")
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON ({err}): {text[:200]!r}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{flag} must be a JSON object, got {type(settings).__name__}")
    return settings


def run_seeds(config: Mapping[str, Any], run_name: str) -> list[int]:
    """The training seeds of one detection run (``training.seeds``, the run's own or shared)."""
    if run_name not in config["runs"]:
        raise ConfigError(f"unknown run '{run_name}'; configured runs: {', '.join(config['runs'])}")
    training = {**config["training"], **config["runs"][run_name].get("training", {})}
    return list(training.get("seeds", [0]))


def packed_features(config: Mapping[str, Any], run_name: str) -> bool:
    """Whether a detection run's training reads the packed copy of the stores
    (``training.packed_features``, the run's own value first)."""
    run_training = config["runs"][run_name].get("training", {})
    return bool(run_training.get("packed_features", config["training"]["packed_features"]))


def run_config(config: Mapping[str, Any], run_name: str, seed: int | None = None) -> dict[str, Any]:
    """The merged configuration of one detection run's training with one seed (the run's first
    by default), as the training stage receives it: ``seed`` at the top, the training block
    without the list of seeds, so that adding a seed leaves the other seeds' jobs untouched."""
    seeds = run_seeds(config, run_name)
    run = config["runs"][run_name]
    training = {**config["training"], **run.get("training", {})}
    training.pop("seeds", None)
    training.pop("packed_features", None)  # how the features are read, not what is trained
    return {
        "name": run_name,
        "seed": seeds[0] if seed is None else seed,
        "model": copy.deepcopy(run["model"]),
        "training": training,
        "tiou_thresholds": list(config["dataset"]["tiou_thresholds"]),
    }


def _merged(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` merged onto ``base`` key by key at every depth, as Snakemake merges several
    ``--configfile`` files."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.config FILE...``: check the configuration files the workflow would
    get (``--configfile FILE...``, merged in order) without Snakemake, whose own message on a
    malformed file names neither the file nor the line: YAML syntax with the file, line and
    column, then the schema and the components' options (:func:`validate_config`, the
    Snakefile's first check; the data checks of the DAG's build are not run)."""
    parser = argparse.ArgumentParser(
        description="Check workflow configuration files (merged in order, as --configfile "
        "merges them), naming the file, line and column of a YAML syntax error."
    )
    parser.add_argument("configs", nargs="+", help="configuration files (YAML)")
    args = parser.parse_args(argv)
    config: dict[str, Any] = {}
    try:
        for path in map(Path, args.configs):
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            content = _read_yaml(path)
            if not isinstance(content, dict):
                raise ConfigError(f"{path}: the top level must be a mapping of keys")
            config = _merged(config, content)
        validate_config(config, source=", ".join(args.configs))
    except ValueError as err:  # ConfigError, or a component's own check
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{', '.join(args.configs)}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
