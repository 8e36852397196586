"""check_detector_config / check_localiser_config: typos and bad values named, defaults
resolved, nothing built."""

from pathlib import Path

import pytest
import yaml
from torch import nn

from models import check_detector_config, check_localiser_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "actionformer", "embed_dm": 64}, r"unknown key 'actionformer\.embed_dm'"),
        (
            {"name": "loco", "cdp_windw": 4},
            r"unknown key 'loco\.cdp_windw'; valid keys .*cdp_window",
        ),
        (
            {"name": "actionformer", "neck": {"name": "mravff", "gat": False}},
            r"unknown key 'actionformer\.neck\.gat'; valid keys here: .*gate",
        ),
        (
            {"name": "loco", "postprocessing": {"nms_sigma": 0.4}},
            r"unknown key 'loco\.postprocessing\.nms_sigma'; valid keys here: .*sigma",
        ),
        ({"name": "loco", "input_dims": {"audio": 4}}, "input_dims are derived by the caller"),
        ({"name": "actionformer", "num_classes": 3}, "num_classes are derived by the caller"),
        ({"name": "actionformer", "reg_loss": "l1"}, "reg_loss must be one of diou, giou"),
        ({"name": "loco", "lcc_target": "uniform"}, "lcc_target must be one of"),
        ({"name": "loco", "cross_attention": "dense"}, "cross_attention must be one of"),
        ({"name": "loco", "modalities": ["audio"]}, "loco needs two modalities"),
        ({"name": "actionformer", "label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        (
            {"name": "actionformer", "num_pyramid_blocks": 1, "regression_ranges": [[0, 4]]},
            "regression_ranges has 1 entries but the pyramid has 2 levels",
        ),
        ({"name": "actionformer", "neck": {"name": "bifpn"}}, "unknown neck name 'bifpn'"),
        ({"name": "detr"}, "unknown detector name 'detr'; valid names: actionformer, loco"),
        ({"name": "actionformer", "num_head_convs": "3"}, "wrong type among .*num_head_convs='3'"),
    ],
)
def test_bad_detector_configs_are_refused_naming_the_key(cfg: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_detector_config(cfg)


def test_where_names_the_config_path() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'runs\.mravff\.model\.neck\.gat'"):
        check_detector_config(
            {"name": "actionformer", "neck": {"name": "mravff", "gat": 1}}, "runs.mravff.model"
        )
    with pytest.raises(ValueError, match=r"^runs\.loco\.model: lcc_weight must be >= 0"):
        check_detector_config({"name": "loco", "lcc_weight": -1}, "runs.loco.model")


def test_the_check_builds_no_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a module was built")

    monkeypatch.setattr(nn.Module, "__init__", refuse)  # no module, no weight
    resolved = check_detector_config({"name": "actionformer", "neck": {"name": "mravff"}})
    assert resolved["neck"]["gate"] is True
    assert check_detector_config({"name": "loco"})["cdp_window"] == 8


def test_resolved_config_fills_every_default() -> None:
    user = {"name": "loco", "modalities": ["audio", "visual"], "cdp_window": 4}
    loco = check_detector_config(user)
    assert user == {"name": "loco", "modalities": ["audio", "visual"], "cdp_window": 4}
    assert loco["cdp_window"] == 4 and loco["modalities"] == ["audio", "visual"]
    assert loco["reg_loss"] == "giou" and loco["lcc_weight"] == 0.1
    assert loco["cross_attention"] == "cdp" and loco["embed_dim"] == 512
    assert loco["postprocessing"]["nms"] == "soft" and loco["postprocessing"]["sigma"] == 0.5
    assert "input_dims" not in loco and "num_classes" not in loco
    fusion = check_detector_config({"name": "actionformer", "postprocessing": {"sigma": 0.3}})
    assert fusion["modalities"] == ("audio", "visual") and fusion["reg_loss"] == "diou"
    assert fusion["neck"] == {"name": "identity", "layer_norm": True}
    assert fusion["postprocessing"]["sigma"] == 0.3
    assert fusion["postprocessing"]["max_detections"] == 500
    gated = check_detector_config({"name": "actionformer", "neck": {"name": "mravff"}})
    assert gated["neck"]["gate"] is True and gated["neck"]["fuse_levels"] == "all"
    assert "channels" not in gated["neck"]  # derived by the detector
    # the default regression ranges follow the level count
    assert (
        check_detector_config({"name": "loco", "num_pyramid_blocks": 1})["regression_ranges"]
        is None
    )


def test_every_shipped_detector_config_passes() -> None:
    paths = [ROOT / "workflow_config.yaml", *sorted((ROOT / "configs").rglob("*.yaml"))]
    checked = 0
    for path in paths:
        for name, run in (yaml.safe_load(path.read_text()).get("runs") or {}).items():
            resolved = check_detector_config(run["model"], f"{path.name}: runs.{name}.model")
            assert resolved["name"] == run["model"]["name"]
            checked += 1
    assert checked >= 5  # the demo's five runs at least


def test_localiser_configs_are_checked_and_resolved() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'm2vsl\.pool_factor'; .*pool_factors"):
        check_localiser_config({"name": "m2vsl", "pool_factor": [1]})
    with pytest.raises(ValueError, match="grid_dim are derived by the caller"):
        check_localiser_config({"name": "similarity", "grid_dim": 5})
    with pytest.raises(ValueError, match="unknown sound localiser name 'ssl'"):
        check_localiser_config({"name": "ssl"})
    resolved = check_localiser_config({"name": "m2vsl", "pool_factors": [1, 2]})
    assert resolved["pool_factors"] == [1, 2] and resolved["dim"] == 32
    assert resolved["temperature"] == 0.2 and "grid_shape" not in resolved
