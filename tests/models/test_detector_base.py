"""TemporalDetector: a minimal subclass gets the flat-config map, the losses, the loss
normaliser and predict from the base, checked against hand-computed values."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from models import ActionFormerDetector, LoCoDetector, TemporalDetector
from models.detector_base import DetectorOutput
from models.detector_config import LossConfig, TargetConfig
from models.points import make_points
from models.postprocessing import PostProcessingConfig


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Args: modality: the one input the toy reads."""

    modality: str = "audio"


class ToyDetector(TemporalDetector):
    """One level of stride 1: 1x1 convolutions to C logits and 2 offsets per snippet."""

    config_groups = {"toy": ToyConfig, "targets": TargetConfig, "loss": LossConfig}  # noqa: RUF012

    def __init__(
        self,
        *,
        input_dims: dict[str, int],
        num_classes: int,
        toy: ToyConfig,
        targets: TargetConfig,
        loss: LossConfig,
        postprocessing: PostProcessingConfig,
    ) -> None:
        super().__init__(
            num_classes=num_classes, targets=targets, loss=loss, postprocessing=postprocessing
        )
        self.modalities = self.input_modalities = (toy.modality,)
        self.strides, self.max_stride = (1,), 1
        self.regression_ranges = self.target_config.ranges_for(1)
        self.cls_conv = nn.Conv1d(input_dims[toy.modality], num_classes, 1)
        self.reg_conv = nn.Conv1d(input_dims[toy.modality], 2, 1)

    @classmethod
    def num_levels(cls, groups: dict) -> int:
        return 1

    def forward(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> DetectorOutput:
        self.check_inputs(inputs, mask)
        x = inputs[self.modalities[0]].transpose(1, 2)  # (B, D, T)
        points = make_points([mask.shape[1]], self.strides, self.regression_ranges)
        return DetectorOutput(
            cls_logits=[self.cls_conv(x).transpose(1, 2)],  # (B, T, C)
            offsets=[F.relu(self.reg_conv(x)).transpose(1, 2)],  # (B, T, 2)
            masks=[mask],
            points=points,
        )


FLAT = {
    "input_dims": {"audio": 3},
    "num_classes": 2,
    "regression_ranges": [[0.0, math.inf]],
    "center_sample_radius": None,
    "loss_weight_reg": 2.0,
    "init_loss_normalizer": 10.0,
    "loss_normalizer_momentum": 0.5,
    "postprocessing": {"max_detections": 3},
}


def test_a_subclass_is_built_from_the_flat_config() -> None:
    toy = ToyDetector.from_config(FLAT)
    assert toy.target_config.center_sample_radius is None
    assert toy.loss_config == LossConfig(
        loss_weight_reg=2.0, init_loss_normalizer=10.0, loss_normalizer_momentum=0.5
    )
    assert toy.postprocessing.max_detections == 3 and toy.loss_normalizer.item() == 10.0
    keys = list(ToyDetector.config_signature().parameters)
    assert keys[:3] == ["input_dims", "num_classes", "modality"]
    assert keys[-1] == "postprocessing" and "reg_loss" in keys
    with pytest.raises(
        ValueError, match=r"unknown key 'model.modalty'; valid keys here: .*modality"
    ):
        ToyDetector.from_config({**FLAT, "modalty": "visual"})
    with pytest.raises(ValueError, match="model: reg_loss must be one of diou, giou"):
        ToyDetector.from_config({**FLAT, "reg_loss": "l1"})


def test_loss_normaliser_ema_and_normalised_losses_by_hand() -> None:
    torch.manual_seed(0)
    toy = ToyDetector.from_config(FLAT)
    inputs = {"audio": torch.randn(2, 16, 3)}
    mask = torch.arange(16)[None, :] < torch.tensor([[16], [8]])
    segments = [torch.tensor([[2.5, 9.5]]), torch.tensor([[0.5, 2.5]])]
    labels = [torch.tensor([1]), torch.tensor([0])]
    toy.train()
    output = toy(inputs, mask)
    losses = toy.loss(output, segments, labels)
    # positives strictly inside the events: t = 3..9 (7) and t = 1, 2 (2) -> 9 in all;
    # EMA with momentum 0.5: 0.5 * 10 + 0.5 * 9 = 9.5
    assert toy.loss_normalizer.item() == pytest.approx(9.5)
    targets = torch.zeros(2, 16, 2)
    targets[0, 3:10, 1] = 1.0
    targets[1, 1:3, 0] = 1.0
    logits = output.cls_logits[0]
    by_hand = sigmoid_focal_loss(logits[mask], targets[mask], 0.25, 2.0, reduction="sum") / 9.5
    assert losses["cls"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert losses["loss"].item() == pytest.approx((losses["cls"] + 2.0 * losses["reg"]).item())
    # no event: the EMA moves towards 1, the regression loss is 0 but keeps the graph
    empty = toy.loss(toy(inputs, mask), [torch.zeros(0, 2)] * 2, [torch.zeros(0).long()] * 2)
    assert toy.loss_normalizer.item() == pytest.approx(0.5 * 9.5 + 0.5 * 1)
    assert empty["reg"].item() == 0.0 and empty["reg"].requires_grad
    toy.eval()
    toy.loss(toy(inputs, mask), segments, labels)
    assert toy.loss_normalizer.item() == pytest.approx(5.25)  # frozen in eval mode


def test_predict_is_the_base_class_one_and_decodes_a_candidate() -> None:
    for detector in (ToyDetector, ActionFormerDetector, LoCoDetector):
        assert detector.predict is TemporalDetector.predict
        assert detector.update_loss_normalizer is TemporalDetector.update_loss_normalizer
    toy = ToyDetector.from_config(FLAT)
    logits = torch.full((1, 8, 2), -20.0)
    logits[0, 4, 1] = 3.0  # one candidate: point 4, class 1, offsets (1, 2)
    offsets = torch.zeros(1, 8, 2)
    offsets[0, 4] = torch.tensor([1.0, 2.0])
    output = DetectorOutput(
        cls_logits=[logits],
        offsets=[offsets],
        masks=[torch.ones(1, 8, dtype=torch.bool)],
        points=make_points([8], [1], [(0.0, math.inf)]),
    )
    (result,) = toy.predict(output)
    assert result["segments"].tolist() == [[3.0, 6.0]] and result["labels"].tolist() == [1]
    assert result["scores"].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_a_subclass_must_declare_the_base_groups_once() -> None:
    with pytest.raises(TypeError, match=r"lacks the group\(s\) \['loss'\]"):

        class NoLoss(ToyDetector):
            config_groups = {"toy": ToyConfig, "targets": TargetConfig}  # noqa: RUF012

    with pytest.raises(TypeError, match="config key 'modality' of group 'again' is taken"):

        class Twice(ToyDetector):
            config_groups = {**ToyDetector.config_groups, "again": ToyConfig}  # noqa: RUF012


def test_inputs_are_checked_by_the_base() -> None:
    toy = ToyDetector.from_config(FLAT)
    with pytest.raises(ValueError, match="input 'audio' missing"):
        toy({"visual": torch.rand(1, 4, 3)}, torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ToyDetector.from_config({**FLAT, "num_classes": 0})
