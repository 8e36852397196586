import json
import re

import pytest
import yaml

from pipeline.config import (
    ConfigError,
    extraction_settings,
    load_config,
    main,
    run_config,
    run_seeds,
    segment_settings,
    task_enabled,
    validate_config,
)
from pipeline.io import stable_hash


def test_defaults_fill_every_section():
    config = validate_config({})
    assert config["dataset"]["name"] == "demo"
    assert config["extraction"]["window_s"] == pytest.approx(0.96)
    assert config["extraction"]["visual"] == {"name": "classic"}
    assert config["training"]["missing"] == "error"
    assert set(config["runs"]) == {"audio_only", "visual_only", "fusion"}


def test_repository_config_is_valid():
    config = load_config("workflow_config.yaml")
    assert config["dataset"]["source"] == "synth"


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"extraction": {"fpss": 8}}, "extraction.fpss"),
        ({"bogus": 1}, "'bogus'"),
        ({"dataset": {"synth": {"size": "huge"}}}, "dataset.synth.size"),
        ({"extraction": {"stride_s": 0}}, "extraction.stride_s"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"dataset": {"name": "../escape"}}, "dataset.name"),
        ({"dataset": {"name": ".."}}, "dataset.name"),
        # A forgotten `source: videos` would train on the synthetic videos.
        ({"dataset": {"videos_dir": "/data/v"}}, "'dataset.videos_dir' is read only with"),
        ({"dataset": {"source": "videos", "synth": {"size": "tiny"}}}, "'dataset.synth'"),
        ({"dataset": {"source": "import", "annotations": "a.json"}}, "'dataset.annotations'"),
        ({"extraction": {"encoder_set": ".."}}, "extraction.encoder_set"),
        ({"runs": {"..": {"model": {"name": "actionformer"}}}}, "runs"),
        ({"spatial": {"runs": {".x": {"method": "m2vsl"}}}}, "spatial.runs"),
        ({"segments": {"pretrainings": {"..": {}}}}, "segments.pretrainings"),
        (
            {"runs": {"a": {"model": {"name": "actionformer"}, "training": {"epoch": 3}}}},
            "runs.a.training.epoch",
        ),
        (
            {"runs": {"a": {"model": {"name": "actionformer"}, "training": {"epochs": -1}}}},
            "runs.a.training.epochs",
        ),
        ({"runs": {"a": {"training": {}}}}, "runs.a"),
        ({"extraction": {"visual": {"name": "classic", "frame_sise": 4}}}, "extraction.visual"),
        ({"extraction": {"audio": {"name": "wav2vec"}}}, "'extraction.audio.name' is 'wav2vec'"),
    ],
)
def test_invalid_keys_and_values_are_named(bad, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_config(bad)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_and_run_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"training": {"epochs": 5}}))
    config = load_config(
        path,
        overrides={"runs": {"r": {"model": {"name": "actionformer"}, "training": {"epochs": 2}}}},
    )
    merged = run_config(config, "r")
    assert merged["training"]["epochs"] == 2
    assert merged["training"]["batch_size"] == config["training"]["batch_size"]
    assert merged["tiou_thresholds"] == config["dataset"]["tiou_thresholds"]
    with pytest.raises(ConfigError, match="unknown run 'zzz'"):
        run_config(config, "zzz")


def test_each_seed_is_one_training_whose_settings_ignore_the_other_seeds():
    runs = {"r": {"model": {"name": "actionformer"}}, "s": {"model": {"name": "actionformer"}}}
    runs["s"]["training"] = {"seeds": [9]}
    config = validate_config({"training": {"seeds": [3, 1]}, "runs": runs})
    assert run_seeds(config, "r") == [3, 1] and run_seeds(config, "s") == [9]
    first, second = run_config(config, "r"), run_config(config, "r", 1)
    assert (first["seed"], second["seed"]) == (3, 1)
    assert "seeds" not in first["training"]
    more = validate_config({"training": {"seeds": [3, 1, 2]}, "runs": runs})
    assert run_config(more, "r", 1) == second  # a seed added: seed 1's job is unchanged
    with pytest.raises(ConfigError, match="seeds"):
        validate_config({"training": {"seeds": [1, 1]}})


def test_extraction_hash_ignores_scheduling_keys():
    base = validate_config({})
    rescheduled = validate_config({"extraction": {"shard_size": 3, "batch_size": 7}})
    changed = validate_config({"extraction": {"stride_s": 0.5}})
    assert stable_hash(extraction_settings(base)) == stable_hash(extraction_settings(rescheduled))
    assert stable_hash(extraction_settings(base)) != stable_hash(extraction_settings(changed))
    assert json.loads(json.dumps(extraction_settings(base))) == extraction_settings(base)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"segments": {"pretrain": {"epoch": 3}}}, "unknown key 'segments.pretrain.epoch'"),
        (
            {"segments": {"pretrainings": {"sep": {"shared_projectr": False}}}},
            "unknown key 'segments.pretrainings.sep.shared_projectr'",
        ),
        ({"segments": {"classifier": {"theta": "big"}}}, "'segments.classifier.theta' must be"),
        ({"segments": {"classifier": {"theta": -1.0}}}, "theta must be >= 0"),
        ({"segments": {"clips": {"frame_fps": 2.5}}}, "'segments.clips.frame_fps' must be"),
        (
            {"segments": {"pretrain": {"projector_dims": [64, "x"]}}},
            "'segments.pretrain.projector_dims' must be a list of int",
        ),
        (
            {"segments": {"runs": {"t": {"model": "tacma", "pretraining": "nope"}}}},
            "'segments.runs.t.pretraining' names 'nope'",
        ),
        (
            {"segments": {"runs": {"t": {"model": "tacma", "classifier": {"thetta": 1}}}}},
            "unknown key 'segments.runs.t.classifier.thetta'",
        ),
        ({"segments": {"runs": {"t": {"model": "mlp"}}}}, "segments.runs.t.model"),
        ({"spatial": {"runs": {"s": {"method": "m2vsl", "modle": {}}}}}, "spatial.runs.s.modle"),
        ({"spatial": {"training": {"batch_size": 1}}}, "spatial.training.batch_size"),
        ({"spatial": {"enabled": True}}, "extraction.visual_grid is false"),
        (
            {"dataset": {"source": "import"}, "segments": {"enabled": True}},
            "'segments.enabled' is true but dataset.source is 'import'",
        ),
    ],
)
def test_segment_and_spatial_settings_are_checked(bad, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        validate_config(bad, source="cfg.yaml")


def test_segment_settings_merge_shared_and_run_overrides():
    config = validate_config(
        {
            "segments": {
                "pretrain": {"epochs": 4, "warmup_epochs": 1},
                "classifier": {"theta": 0.5, "epochs": 10},
                "pretrainings": {"avbt": {}, "separate": {"shared_projector": False}},
                "runs": {
                    "tacma": {"model": "tacma"},
                    "tacma_theta0": {
                        "model": "tacma",
                        "pretraining": "separate",
                        "classifier": {"theta": 0.0},
                    },
                },
            }
        }
    )
    assert segment_settings(config, "pretraining", "avbt") == {"epochs": 4, "warmup_epochs": 1}
    assert segment_settings(config, "pretraining", "separate") == {
        "epochs": 4,
        "warmup_epochs": 1,
        "shared_projector": False,
    }
    assert segment_settings(config, "run", "tacma") == {"theta": 0.5, "epochs": 10}
    assert segment_settings(config, "run", "tacma_theta0") == {"theta": 0.0, "epochs": 10}
    assert config["segments"]["runs"]["tacma"]["pretraining"] == "avbt"


def test_optional_tasks_run_only_where_their_labels_exist():
    synth_with_grid = validate_config({"extraction": {"visual_grid": True}})
    assert task_enabled(synth_with_grid, "segments") and task_enabled(synth_with_grid, "spatial")
    synth = validate_config({})
    assert task_enabled(synth, "segments") and not task_enabled(synth, "spatial")
    imported = validate_config({"dataset": {"source": "import"}})
    assert not task_enabled(imported, "segments") and not task_enabled(imported, "spatial")
    ave = validate_config({"dataset": {"source": "import", "import": {"format": "ave"}}})
    assert task_enabled(ave, "segments") and not task_enabled(ave, "spatial")
    raw = validate_config({"dataset": {"source": "videos", "segment_labels": "AVE_Dataset"}})
    assert task_enabled(raw, "segments")
    assert not task_enabled(validate_config({"dataset": {"source": "videos"}}), "segments")
    off = validate_config({"extraction": {"visual_grid": True}, "spatial": {"enabled": False}})
    assert not task_enabled(off, "spatial")


def test_malformed_yaml_names_the_file_line_and_column(tmp_path, capsys):
    """#13 item 10: Snakemake's 'Config file is not valid JSON or YAML' names neither."""
    path = tmp_path / "bad.yaml"
    path.write_text("dataset:\n  name: x\n  source: [videos\nextraction:\n  fps: 8\n")
    with pytest.raises(ConfigError, match=r"line 4 column 11: not valid YAML") as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "line 3 column 11" in str(caught.value)
    assert main([str(path)]) == 1
    assert f"error: {path}, line 4 column 11" in capsys.readouterr().err
    assert main(["workflow_config.yaml"]) == 0
    assert "workflow_config.yaml: valid" in capsys.readouterr().out


def test_duration_tolerance_is_a_raw_video_key():
    assert validate_config({})["dataset"]["duration_tolerance_s"] == 1.0
    raw = {"source": "videos", "duration_tolerance_s": 2.5}
    assert validate_config({"dataset": raw})["dataset"]["duration_tolerance_s"] == 2.5
    imported = {"source": "import", "duration_tolerance_s": 2.5}  # importers check lengths
    with pytest.raises(ConfigError, match=r"'dataset\.duration_tolerance_s' is not read"):
        validate_config({"dataset": imported})


def test_a_passed_model_check_is_remembered_and_a_failed_one_is_not(tmp_path, monkeypatch):
    """The models' option check (it imports torch) runs once per options, code and torch."""
    import models.checks

    monkeypatch.setenv("AVLOC_CACHE_DIR", str(tmp_path))
    calls = []
    real_check = models.checks.check_detector_config
    monkeypatch.setattr(
        models.checks,
        "check_detector_config",
        lambda cfg, where: calls.append(where) or real_check(cfg, where),
    )
    runs = {"a": {"model": {"name": "actionformer", "embed_dim": 32}}}
    validate_config({"runs": runs})
    assert calls == ["runs.a.model"]
    validate_config({"runs": runs})  # remembered: not checked again
    assert calls == ["runs.a.model"]
    assert len(list((tmp_path / "model-checks").iterdir())) == 1
    validate_config({"runs": {"a": {"model": {"name": "actionformer", "embed_dim": 64}}}})
    assert calls == ["runs.a.model"] * 2  # other options: checked
    bad = {"a": {"model": {"name": "actionformer", "embed_dimm": 32}}}
    for _ in range(2):  # a failed check leaves no mark: it fails every time
        with pytest.raises(ConfigError, match="embed_dimm"):
            validate_config({"runs": bad})
    assert len(list((tmp_path / "model-checks").iterdir())) == 2
