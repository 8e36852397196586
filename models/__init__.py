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
"""

from torch import nn

from models import backbones, necks  # noqa: F401  (register backbones and necks)
from models.checks import check_detector_config, check_localiser_config
from models.detector_base import DetectorOutput, TemporalDetector
from models.detectors import ActionFormerDetector, build_detector
from models.loco import LoCoDetector
from models.necks_mravff import MRAVFFNeck  # noqa: F401  (registers the mravff neck)
from models.postprocessing import PostProcessingConfig
from models.registry import BACKBONES, DETECTORS, NECKS, Registry


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (only those with ``requires_grad`` when
    ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "BACKBONES",
    "DETECTORS",
    "NECKS",
    "ActionFormerDetector",
    "DetectorOutput",
    "LoCoDetector",
    "PostProcessingConfig",
    "Registry",
    "TemporalDetector",
    "build_detector",
    "check_detector_config",
    "check_localiser_config",
    "count_parameters",
]
