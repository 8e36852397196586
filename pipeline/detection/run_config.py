"""A training run's config: validation against the workflow schema, defaults, derived keys.

The run config is one JSON object, ``{"name", "seed", "model", "training", "tiou_thresholds"}``
(:func:`pipeline.config.run_config`): one training of a run, with one of its seeds. Training keys
and their defaults come from the workflow schema's ``definitions.training``; the detector's
``input_dims`` and ``num_classes`` are derived from the feature index and the annotations, never
typed by a user.
"""

from __future__ import annotations

import copy
from typing import Any

from pipeline.config import resolve_training

DERIVED_MODEL_KEYS = ("input_dims", "num_classes")


def resolve_run_config(run_cfg: dict[str, Any]) -> dict[str, Any]:
    """A validated copy of a run config with every training default filled in.

    Raises:
        ValueError: a missing top-level key, an unknown or invalid training key, or a model key
            that is derived from the data (``input_dims``, ``num_classes``).
    """
    missing = [
        key for key in ("name", "model", "training", "tiou_thresholds") if key not in run_cfg
    ]
    if missing:
        raise ValueError(f"run config lacks keys {missing}; see pipeline.config.run_config")
    resolved = copy.deepcopy(run_cfg)
    try:
        resolved["training"] = resolve_training(resolved["training"])
    except ValueError as err:
        raise ValueError(f"run {resolved['name']!r}: {err}") from None
    # One training: its seed (the first of the run's seeds when not given) replaces the list.
    seeds = resolved["training"].pop("seeds")
    resolved["training"]["seed"] = resolved.pop("seed", seeds[0])
    clash = [key for key in DERIVED_MODEL_KEYS if key in resolved["model"]]
    if clash:
        raise ValueError(
            f"run {resolved['name']!r}: model.{clash[0]} is read from the features and the "
            "annotations; remove it from the config"
        )
    return resolved


def detector_config(
    model_cfg: dict[str, Any],
    input_dims: dict[str, int],
    num_classes: int,
    *,
    window_s: float,
    stride_s: float,
) -> dict[str, Any]:
    """The full detector config: the user's model keys plus the values derived from data.

    Besides the input widths and the class count, the post-processing's boundary margin comes
    from the feature grid: predictions may reach the video's ends, which lie half a window from
    the first and last snippet centres.
    """
    config = {
        **copy.deepcopy(model_cfg),
        "input_dims": dict(input_dims),
        "num_classes": num_classes,
    }
    postprocessing = dict(config.get("postprocessing") or {})
    postprocessing.setdefault("boundary_margin", max(0.0, window_s / (2 * stride_s) - 0.5))
    config["postprocessing"] = postprocessing
    return config
