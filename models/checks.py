"""Config checks cheap enough for DAG-build time: no module is built, no weight allocated.

Each takes a run's config as the user wrote it, refuses what the builder would refuse (an
unknown name or key, a key derived from the data, a bad value) with a ``ValueError`` that
names the key and lists the valid ones, and returns the config resolved: every key with its
value or its default, nested configs (``neck``, ``postprocessing``) included. Reports read a
recorded config through them instead of re-typing the models' defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.detector_config import DERIVED_KEYS
from models.m2vsl import SOUND_LOCALISERS
from models.registry import DETECTORS

LOCALISER_DERIVED_KEYS = (  # read from the grid store and the labels
    "grid_dim",
    "audio_dim",
    "grid_shape",
    "grid_levels",
    "num_classes",
)


def check_detector_config(model_cfg: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
    """Check a run's flat detector config (``runs.<name>.model``) and resolve its defaults.

    Args:
        model_cfg: ``{"name": "actionformer" | "loco", **keys}`` without ``input_dims`` and
            ``num_classes``, which come from the features and the annotations.
        where: the config's path for error messages (``"runs.loco.model"``); default the
            detector's name.

    Returns:
        ``{"name", every key of the detector with its value or default}``; ``neck`` (where
        the detector has one) and ``postprocessing`` resolved the same way.

    Raises:
        ValueError: an unknown name or key (top-level, in ``neck`` or in ``postprocessing``),
            a derived key, or a value out of range; the message names the key.
    """
    return DETECTORS.check(model_cfg, DERIVED_KEYS, where)


def check_localiser_config(cfg: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
    """Check a sound localiser's config ``{"name": "m2vsl" | "similarity", **kwargs}`` (as
    ``pipeline.spatial.train`` builds it from a run's ``method`` and ``model``) and resolve
    its defaults; ``grid_dim``, ``audio_dim``, ``grid_shape``, ``grid_levels`` and
    ``num_classes`` come from the data. ``where``
    is the config's path for error messages (default the localiser's name).

    Raises:
        ValueError: an unknown name or key, or a derived key; the message names the key.
    """
    return SOUND_LOCALISERS.check(cfg, LOCALISER_DERIVED_KEYS, where)
