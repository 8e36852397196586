"""Segment backbones: VGGish layout and key names, ResNet-50 trunk, weight loading and errors."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from models.segment_backbones import (
    BACKBONES,
    MissingBackboneWeightsError,
    VGGish,
    build_backbone,
    check_backbone_weights,
    resnet50_trunk,
)

VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"

# (key, shape) of harritaylor/torchvggish's VGG (torchvggish/vggish.py), i.e. of
# vggish-10086976.pth: features = make_layers() over [64, M, 128, M, 256, 256, M, 512, 512, M]
# (conv + ReLU per number, MaxPool2d per M), embeddings = Linear-ReLU x 3.
TORCHVGGISH_KEYS = [
    ("features.0.weight", (64, 1, 3, 3)),
    ("features.0.bias", (64,)),
    ("features.3.weight", (128, 64, 3, 3)),
    ("features.3.bias", (128,)),
    ("features.6.weight", (256, 128, 3, 3)),
    ("features.6.bias", (256,)),
    ("features.8.weight", (256, 256, 3, 3)),
    ("features.8.bias", (256,)),
    ("features.11.weight", (512, 256, 3, 3)),
    ("features.11.bias", (512,)),
    ("features.13.weight", (512, 512, 3, 3)),
    ("features.13.bias", (512,)),
    ("embeddings.0.weight", (4096, 12288)),
    ("embeddings.0.bias", (4096,)),
    ("embeddings.2.weight", (4096, 4096)),
    ("embeddings.2.bias", (4096,)),
    ("embeddings.4.weight", (128, 4096)),
    ("embeddings.4.bias", (128,)),
]


@pytest.fixture(scope="module")
def vggish() -> VGGish:
    """One randomly initialised VGGish (72M parameters) shared by this module's tests."""
    torch.manual_seed(0)
    return VGGish()


def test_vggish_keys_and_shapes_equal_torchvggish(vggish: VGGish) -> None:
    keys = [(key, tuple(value.shape)) for key, value in vggish.state_dict().items()]
    assert keys == TORCHVGGISH_KEYS
    assert sum(p.numel() for p in vggish.parameters()) == 72_141_184
    assert isinstance(vggish.embeddings[5], nn.ReLU)  # final ReLU kept, as in torchvggish


def test_vggish_shape_gradient_and_channels_last_flatten(vggish: VGGish) -> None:
    vggish.zero_grad()
    log_mel = torch.randn(2, 1, 96, 64)
    embeddings = vggish(log_mel)
    assert embeddings.shape == (2, BACKBONES["vggish"].output_dim) == (2, 128)
    assert torch.all(embeddings >= 0)  # final ReLU
    embeddings.sum().backward()
    first_conv = vggish.features[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    with torch.no_grad():
        maps = vggish.features(log_mel)  # (B, 512, 6, 4)
        # torchvggish: transpose(1, 3) then transpose(1, 2) before flattening
        tf_order = maps.transpose(1, 3).transpose(1, 2).reshape(2, -1)  # (B, 12288)
        pre_relu = vggish.embeddings[:5]
        expected = pre_relu(tf_order).relu()
        channels_first = pre_relu(maps.reshape(2, -1)).relu()
        torch.testing.assert_close(vggish(log_mel), expected)
        assert not torch.allclose(expected, channels_first)


def test_vggish_refuses_wrong_patch_shape(vggish: VGGish) -> None:
    with pytest.raises(ValueError, match=r"VGGish expects .*\(B, 1, 96, 64\).*\(1, 1, 64, 96\)"):
        vggish(torch.randn(1, 1, 64, 96))


def test_resnet50_trunk_shape_and_gradient() -> None:
    torch.manual_seed(0)
    trunk = resnet50_trunk()
    assert isinstance(trunk.fc, nn.Identity)
    features = trunk(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, BACKBONES["resnet50"].output_dim) == (2, 2048)
    features.square().mean().backward()
    assert trunk.conv1.weight.grad is not None and trunk.conv1.weight.grad.abs().sum() > 0


def test_vggish_weights_round_trip(vggish: VGGish, tmp_path: Path) -> None:
    path = tmp_path / "vggish-10086976.pth"
    torch.save(vggish.state_dict(), path)
    loaded = build_backbone("vggish", str(path))
    assert isinstance(loaded, VGGish)
    for (key, saved), (loaded_key, value) in zip(
        vggish.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert key == loaded_key and torch.equal(saved, value), key


def test_resnet50_weights_round_trip_drops_fc(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnet50(weights=None)  # as in torchvision's files: with fc
    source.bn1.running_mean.uniform_()  # buffers must load too
    state_dict = source.state_dict()
    assert "fc.weight" in state_dict and "fc.bias" in state_dict
    bare, wrapped = tmp_path / "resnet50-0676ba61.pth", tmp_path / "wrapped.pth"
    torch.save(state_dict, bare)
    torch.save({"state_dict": state_dict, "epoch": 90}, wrapped)
    without_counters = {
        k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")
    }
    old_style = tmp_path / "resnet50-19c8e357.pth"  # older torchvision files lack them
    torch.save(without_counters, old_style)
    for path in (bare, wrapped, old_style):
        trunk = build_backbone("resnet50", path)
        loaded = trunk.state_dict()
        assert set(loaded) == {key for key in state_dict if not key.startswith("fc.")}
        for key, value in loaded.items():
            assert torch.equal(value, state_dict[key]), key
        assert isinstance(trunk.fc, nn.Identity)


def test_random_initialisation_needs_no_file() -> None:
    assert check_backbone_weights("vggish", None) is None
    assert check_backbone_weights("resnet50", None) is None


def test_missing_file_names_model_path_and_url(tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "vggish-10086976.pth"
    with pytest.raises(MissingBackboneWeightsError) as caught:
        check_backbone_weights("vggish", str(missing))
    message = str(caught.value)
    assert "VGGish (AudioSet)" in message and str(missing) in message and VGGISH_URL in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(MissingBackboneWeightsError, match=r"ResNet-50 \(ImageNet\)") as caught:
        build_backbone("resnet50", tmp_path / "resnet50.pth")
    assert RESNET50_URL in str(caught.value)
    missing.parent.mkdir()
    missing.write_bytes(b"")
    assert check_backbone_weights("vggish", str(missing)) == missing


def test_wrong_keys_and_shapes_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "not_resnet.pth"
    torch.save({"layer0.weight": torch.zeros(3), "fc.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="does not match ResNet-50") as caught:
        build_backbone("resnet50", path)
    message = str(caught.value)
    assert str(path) in message and "conv1.weight" in message and "layer0.weight" in message
    assert "fc.weight" not in message  # dropped before matching

    reshaped = resnet50_trunk().state_dict()
    reshaped["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(reshaped, path)
    with pytest.raises(ValueError, match=r"shape mismatches \(1\): conv1\.weight"):
        build_backbone("resnet50", path)

    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read it as a PyTorch state dict") as caught:
        build_backbone("resnet50", path)
    assert str(path) in str(caught.value)


def test_unknown_name_lists_valid_backbones() -> None:
    assert set(BACKBONES) == {"vggish", "resnet50"}
    assert BACKBONES["vggish"].modality == "audio" and BACKBONES["resnet50"].modality == "visual"
    for call in (lambda: check_backbone_weights("resnet18", None), lambda: build_backbone("vgg")):
        with pytest.raises(ValueError, match="valid backbones: vggish, resnet50"):
            call()
