"""The ResNet encoder's packed feature pyramid against torchvision's own stage outputs, its weight
resolution, and the pyramid through the spatial stage (set -> train -> checkpoint -> evaluate)
into the localisers' scales."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import get_model
from torchvision.models.feature_extraction import create_feature_extractor

from models.m2vsl import build_localiser
from models.m2vsl_parts import check_grid_levels, unpack_levels
from pipeline.config import spatial_set_settings
from pipeline.encoders import MissingWeightsError, build_visual_encoder
from pipeline.encoders.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNetVisualEncoder,
    resnet_checkpoint,
)
from pipeline.spatial import checkpoint, evaluate, sets, train
from tests.pipeline.spatial.test_benchmarks import (
    TINY_M2VSL,
    TINY_SIMILARITY,
    benchmark_config,
    fake_vgginstruments,
)

LAYERS = ("layer2", "layer3", "layer4")


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("resnet18", weights=None).eval()


@pytest.fixture(scope="module")
def resnet18_file(resnet18, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(resnet18.state_dict(), path)
    return path


def test_the_grid_packs_torchvisions_stage_maps(resnet18) -> None:
    """Non-square frames (96 high, 64 wide), two frames per snippet: every level unpacked from
    the grid is torchvision's own stage output, L2-normalised per cell and averaged over the
    frames; the embedding is the pooled last stage. A swap of height and width, or a packing
    that does not invert, changes the values."""
    encoder = ResNetVisualEncoder.from_model(resnet18, frame_size=(64, 96), frames_per_snippet=2)
    assert encoder.grid_shape == (3, 2)  # 96 / 32 rows, 64 / 32 columns
    assert encoder.grid_levels == ((128, 4), (256, 2), (512, 1))
    assert encoder.grid_dim == 128 * 16 + 256 * 4 + 512 and encoder.dim == 512
    clips = np.random.default_rng(0).integers(0, 256, (2, 2, 96, 64, 3), dtype=np.uint8)
    embedding, grid = encoder.encode_with_grid(clips)
    assert grid.shape == (2, 3, 2, encoder.grid_dim) and embedding.shape == (2, 512)

    pixels = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float() / 255  # (B, F, 3, H, W)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    pixels = ((pixels - mean) / torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)).flatten(0, 1)
    nodes = {layer: layer for layer in LAYERS} | {"flatten": "pooled"}
    with torch.no_grad():
        expected = create_feature_extractor(resnet18, return_nodes=nodes)(pixels)
    levels = unpack_levels(torch.from_numpy(grid).permute(0, 3, 1, 2), encoder.grid_levels)
    for layer, level in zip(LAYERS, levels, strict=True):
        stage = F.normalize(expected[layer], dim=1)  # (B*F, c, h, w)
        stage = stage.unflatten(0, (2, 2)).mean(dim=1)
        assert level.shape == stage.shape
        assert torch.allclose(level, stage, atol=1e-5)
    pooled = F.normalize(expected["pooled"], dim=1).unflatten(0, (2, 2)).mean(dim=1)
    assert np.allclose(embedding, pooled.numpy(), atol=1e-5)
    assert np.allclose(encoder.encode(clips), embedding) and np.allclose(
        encoder.encode_grid(clips), grid
    )


def test_options_are_checked(resnet18) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        ResNetVisualEncoder.from_model(resnet18, frame_size=(64, 80))
    assert ResNetVisualEncoder.from_model(resnet18, frame_size=(48, 80), layers=["layer2"])
    with pytest.raises(ValueError, match="network order"):
        ResNetVisualEncoder.from_model(resnet18, layers=["layer4", "layer3"])
    with pytest.raises(ValueError, match="network order"):
        ResNetVisualEncoder.from_model(resnet18, layers=["layer5"])


def test_missing_weights_name_the_model_and_the_fix(tmp_path: Path, resnet18_file) -> None:
    with pytest.raises(MissingWeightsError, match=r"resnet18 \(weights 'IMAGENET1K_V1'\)") as err:
        resnet_checkpoint("resnet18", "IMAGENET1K_V1", None, str(tmp_path))
    assert "resnet18-f37072fd.pth" in str(err.value) and "download: true" in str(err.value)
    assert (
        resnet_checkpoint("resnet18", "IMAGENET1K_V1", None, str(tmp_path), download=True) is None
    )
    with pytest.raises(MissingWeightsError, match=r"weights_path 'nowhere\.pth' does not exist"):
        resnet_checkpoint("resnet18", "IMAGENET1K_V1", "nowhere.pth", None)
    with pytest.raises(ValueError, match="'arch' must be one of"):
        resnet_checkpoint("resnet19", "IMAGENET1K_V1", None, None)
    with pytest.raises(ValueError, match=r"'weights' must be a torchvision weights tag"):
        resnet_checkpoint("resnet18", "IMAGENET1K_V2", None, None)
    with pytest.raises(MissingWeightsError, match="resnet18"):  # before the set reads a file
        sets.check_encoder_weights(
            {"name": "resnet", "cache_dir": str(tmp_path)}, {"name": "classic"}
        )
    cached = tmp_path / "resnet18-f37072fd.pth"
    cached.symlink_to(resnet18_file)
    sets.check_encoder_weights({"name": "resnet", "cache_dir": str(tmp_path)}, {"name": "classic"})
    encoder = build_visual_encoder(
        {"name": "resnet", "cache_dir": str(tmp_path), "frame_size": [64, 64]}, device="cpu"
    )
    recorded = encoder.config()
    assert recorded["grid_levels"] == [[128, 4], [256, 2], [512, 1]]
    assert recorded["arch"] == "resnet18" and recorded["grid_shape"] == [2, 2]


def test_the_localisers_read_the_levels_as_scales() -> None:
    """M2VSL's scales are the packed levels (finest first), at their own resolutions; the
    baseline reads the finest level; the heatmaps' cells are the finest level's."""
    levels = ((3, 4), (5, 2), (7, 1))
    grid_dim = 3 * 16 + 5 * 4 + 7
    assert check_grid_levels(levels, grid_dim) == levels
    with pytest.raises(ValueError, match="add up to"):
        check_grid_levels(levels, grid_dim + 1)
    with pytest.raises(ValueError, match="finest"):
        check_grid_levels(((5, 2), (3, 4)), grid_dim - 7)
    finest = torch.rand(2, 3, 8, 12)
    packed = torch.cat(
        [F.pixel_unshuffle(finest, 4), torch.rand(2, 20, 2, 3), torch.rand(2, 7, 2, 3)], dim=1
    )
    assert torch.equal(unpack_levels(packed, levels)[0], finest)
    derived = {"grid_dim": grid_dim, "audio_dim": 6, "grid_shape": (2, 3), "num_classes": 2}
    m2vsl = build_localiser({"name": "m2vsl", **TINY_M2VSL}, **derived, grid_levels=levels)
    assert m2vsl.visual.shapes == [(8, 12), (4, 6), (2, 3)] and m2vsl.cell_shape == (8, 12)
    grid, audio = packed.permute(0, 2, 3, 1), torch.rand(2, 6)
    assert m2vsl.cell_scores(grid, audio).shape == (2, 8, 12)
    losses = m2vsl.losses(grid, audio, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    losses["loss"].backward()
    assert all(p.grad is not None for p in m2vsl.visual.parameters())
    baseline = build_localiser(
        {"name": "similarity", **TINY_SIMILARITY}, **derived, grid_levels=levels
    )
    assert baseline.visual.shapes == [(8, 12)] and baseline.cell_shape == (8, 12)
    assert baseline.cell_scores(grid, audio).shape == (2, 8, 12)
    ezvsl = build_localiser({"name": "similarity", "level": -1}, **derived, grid_levels=levels)
    assert ezvsl.cell_scores(grid, audio).shape == (2, 2, 3)  # the coarsest level's map
    with pytest.raises(ValueError, match=r"'levels' must index the grid's 3 levels \(-3 to 2\)"):
        build_localiser({"name": "similarity", "level": 3}, **derived, grid_levels=levels)
    two = build_localiser({"name": "m2vsl", "levels": [-1, 1]}, **derived, grid_levels=levels)
    assert two.visual.shapes == [(4, 6), (2, 3)] and two.cell_shape == (4, 6)
    assert two.cell_scores(grid, audio).shape == (2, 4, 6)
    with pytest.raises(ValueError, match="'pool_factors' applies to a one-level grid"):
        build_localiser({"name": "m2vsl", "pool_factors": [1, 2]}, **derived, grid_levels=levels)
    with pytest.raises(ValueError, match=r"one non-negative weight per scale \(3\)"):
        build_localiser(
            {"name": "m2vsl", "mmc_bag": "per_scale", "scale_weights": [1, 1]},
            **derived,
            grid_levels=levels,
        )


def test_the_pyramid_through_the_spatial_stage(tmp_path: Path, resnet18_file) -> None:
    """A VGGSound-Instruments fake embedded with a (random) ResNet-18 pyramid: the set records
    the levels, M2VSL trains on them and its checkpoint rebuilds the same scales, and the
    evaluation scores heatmaps drawn from the finest level's cells."""
    visual = {"name": "resnet", "weights_path": str(resnet18_file), "frame_size": [64, 64]}
    config = benchmark_config(fake_vgginstruments(tmp_path / "release"), visual=visual)
    set_dir = tmp_path / "set"
    sets.build_set(sets.SetSettings.from_settings(spatial_set_settings(config)), set_dir)
    snippets, _ = sets.load_set(set_dir / "test.npz")
    assert snippets.grid_levels == ((128, 4), (256, 2), (512, 1))
    assert snippets.grids.shape == (4, 2, 2, 3584)
    run = tmp_path / "m2vsl"
    settings = {"method": "m2vsl", "model": TINY_M2VSL, "epochs": 1, "batch_size": 2}
    args = ["--set", str(set_dir), "--settings", json.dumps(settings), "--out", str(run)]
    assert train.main(args) == 0
    model, payload = checkpoint.load_localiser(run / "model.pt")
    assert payload["derived"]["grid_levels"] == [[128, 4], [256, 2], [512, 1]]
    assert model.visual.shapes == [(8, 8), (4, 4), (2, 2)] and model.cell_shape == (8, 8)
    args = ["--model", str(run / "model.pt"), "--set", str(set_dir), "--split", "test"]
    assert evaluate.main([*args, "--out", str(run / "metrics.json")]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_frames"] == 4 and 0 <= metrics["overall"]["avsbench"]["miou"] <= 1
