"""The models of the three tasks, on per-snippet or per-segment audio/visual features.

- Temporal event detection: build a detector from config with :func:`build_detector`, check
  one without building anything with :func:`check_detector_config`; every detector is a
  ``TemporalDetector`` (``models.detector_base``) registered in ``models.registry``
  (``DETECTORS``, ``BACKBONES``, ``NECKS``); the snippet-grid convention is documented in
  ``models.points``.
- Segment classification (the AVE task): the AV-BT encoders (:mod:`models.avbt`, their
  pretrained CNNs in :mod:`models.segment_backbones`) and TACMA (:mod:`models.tacma`).
- Sound-source localisation: M2VSL and the similarity-map baseline (:mod:`models.m2vsl`);
  :func:`check_localiser_config` checks a localiser's config.

The names below are imported on first use (PEP 562), so the torch-free modules
(:mod:`models.keys`, :mod:`models.registry`) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

_EXPORTS = {
    "BACKBONES": "models.registry",
    "DETECTORS": "models.registry",
    "NECKS": "models.registry",
    "Registry": "models.registry",
    "ActionFormerDetector": "models.detectors",
    "build_detector": "models.detectors",
    "DetectorOutput": "models.detector_base",
    "TemporalDetector": "models.detector_base",
    "LoCoDetector": "models.loco",
    "PostProcessingConfig": "models.postprocessing",
    "check_detector_config": "models.checks",
    "check_localiser_config": "models.checks",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (only those with ``requires_grad`` when
    ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [*sorted(_EXPORTS), "count_parameters"]
