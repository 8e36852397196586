"""Grouped detector configs: one frozen dataclass per role, and the map from the user's flat
model config onto them (detectron2's ``from_config``, nanoGPT's ``GPTConfig``).

A run's ``model`` config stays flat, as users write it in ``workflow_config.yaml``
(``{name: loco, embed_dim: 64, cdp_window: 4, ...}``). A detector declares in
``config_groups`` which dataclass owns which keys: every field of a group is one flat key,
and a flat key belongs to one group only. Two keys are not grouped: ``input_dims`` and
``num_classes`` come from the data (:data:`DERIVED_KEYS`), and ``postprocessing`` is a
nested mapping (:class:`~models.postprocessing.PostProcessingConfig`). Building a group checks
its values, so a config is validated without allocating a weight.

Shared groups live here: the heads (:class:`HeadConfig`), the training targets
(:class:`TargetConfig`) and the losses (:class:`LossConfig`); each detector adds its own.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.keys import check_keys
from models.losses import diou_loss_1d, giou_loss_1d
from models.points import default_regression_ranges
from models.postprocessing import PostProcessingConfig

DERIVED_KEYS = ("input_dims", "num_classes")  # read from the features and annotations
REG_LOSSES = {"diou": diou_loss_1d, "giou": giou_loss_1d}  # reg_loss name -> 1-D IoU loss


@dataclass(frozen=True)
class HeadConfig:
    """The classification and regression heads (ActionFormer Sec. 3.3, shared by all levels).

    Args:
        head_dim: hidden width of the heads.
        num_head_convs: convolutions per head, including the predictor (>= 1).
        head_kernel_size: kernel of the head convolutions (odd).
        cls_prior_prob: initial class probability (classifier bias init), in (0, 1).
    """

    head_dim: int = 512
    num_head_convs: int = 3
    head_kernel_size: int = 3
    cls_prior_prob: float = 0.01

    def __post_init__(self) -> None:
        if self.num_head_convs < 1:
            raise ValueError(f"num_head_convs must be >= 1, got {self.num_head_convs}")
        if self.head_kernel_size % 2 != 1:
            raise ValueError(f"head_kernel_size must be odd, got {self.head_kernel_size}")
        if not 0.0 < self.cls_prior_prob < 1.0:
            raise ValueError(f"cls_prior_prob must be in (0, 1), got {self.cls_prior_prob}")


@dataclass(frozen=True)
class TargetConfig:
    """Which points are trained on which events (ActionFormer Sec. 3.4, centre sampling).

    Args:
        regression_ranges: per-level ``(lo, hi)`` in grid units; None for
            ``models.points.default_regression_ranges``.
        center_sample_radius: centre-sampling radius in strides; None disables it.
    """

    regression_ranges: Sequence[Sequence[float]] | None = None
    center_sample_radius: float | None = 1.5

    def ranges_for(self, num_levels: int) -> list[tuple[float, float]]:
        """Per-level ``(lo, hi)`` of a ``num_levels``-level pyramid; ``ValueError`` if the
        configured list has another length."""
        ranges = self.regression_ranges or default_regression_ranges(num_levels)
        if len(ranges) != num_levels:
            raise ValueError(
                f"regression_ranges has {len(ranges)} entries but the pyramid has {num_levels} "
                "levels (1 + num_pyramid_blocks)"
            )
        return [(float(lo), float(hi)) for lo, hi in ranges]


@dataclass(frozen=True)
class LossConfig:
    """Focal classification loss plus an IoU regression loss, both divided by an EMA of the
    positives per batch (ActionFormer Sec. 3.4).

    Args:
        loss_weight_reg: weight of the regression loss in the total (>= 0).
        reg_loss: a name in :data:`REG_LOSSES`: "diou" or "giou".
        focal_alpha: focal-loss positive weight.
        focal_gamma: focal-loss exponent.
        init_loss_normalizer: initial value of the EMA of positives per batch.
        loss_normalizer_momentum: EMA momentum of that normaliser.
    """

    loss_weight_reg: float = 1.0
    reg_loss: str = "diou"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    init_loss_normalizer: float = 100.0
    loss_normalizer_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.reg_loss not in REG_LOSSES:
            raise ValueError(
                f"reg_loss must be one of {', '.join(sorted(REG_LOSSES))}, got {self.reg_loss!r}"
            )
        if self.loss_weight_reg < 0:
            raise ValueError(f"loss_weight_reg must be >= 0, got {self.loss_weight_reg}")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return inspect.Parameter.empty


def key_owners(groups: Mapping[str, type]) -> dict[str, str]:
    """Flat key -> name of the group owning it; ``TypeError`` if two groups share a key."""
    owners: dict[str, str] = {}
    for group_name, group in groups.items():
        for field in dataclasses.fields(group):
            if field.name in owners or field.name in (*DERIVED_KEYS, "postprocessing"):
                raise TypeError(f"config key {field.name!r} of group {group_name!r} is taken")
            owners[field.name] = group_name
    return owners


def flat_signature(groups: Mapping[str, type]) -> inspect.Signature:
    """The flat keys of ``groups`` as keyword-only parameters with their defaults: the derived
    keys (required), every group field, then ``postprocessing`` (default None)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(key, keyword) for key in DERIVED_KEYS]
    key_owners(groups)  # refuses a key claimed twice
    for group in groups.values():
        params += [
            inspect.Parameter(field.name, keyword, default=_default(field))
            for field in dataclasses.fields(group)
        ]
    params.append(inspect.Parameter("postprocessing", keyword, default=None))
    return inspect.Signature(params)


def split_flat_config(
    cfg: Mapping[str, Any], groups: Mapping[str, type], where: str = "model"
) -> dict[str, Any]:
    """Build every group (and ``postprocessing``) from the flat config at ``where`` (named in
    errors); ``name`` and the derived keys are skipped.

    Raises:
        ValueError: an unknown key (``unknown key 'where.key'; ...``) or a bad value.
    """
    owners = key_owners(groups)
    skipped = ("name", "postprocessing", *DERIVED_KEYS)
    check_keys([key for key in cfg if key not in skipped], [*owners, "postprocessing"], where)
    values: dict[str, dict[str, Any]] = {name: {} for name in groups}
    for key, value in cfg.items():
        if key not in skipped:
            values[owners[key]][key] = value
    built: dict[str, Any] = {}
    for name, kwargs in values.items():
        try:
            built[name] = groups[name](**kwargs)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        except TypeError as err:  # e.g. a string where a number belongs
            given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
            raise ValueError(f"{where}: a value of the wrong type among {given}: {err}") from err
    built["postprocessing"] = PostProcessingConfig.from_dict(
        cfg.get("postprocessing"), f"{where}.postprocessing"
    )
    return built
