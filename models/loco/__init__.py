"""LoCo (arXiv 2409.07967): locality-aware cross-modal correspondence learning for dense
audio-visual event localisation, registered as the ``loco`` detector.

Modules: ``encoders`` (unimodal encoders, Sec. 3.2), ``lcc`` (Locality-aware Correspondence
Correction loss, Sec. 3.3), ``cdp`` (cross-modal sliding-window attention and Cross-modal
Dynamic Perception, Sec. 3.4), ``pyramid`` (cross-modal feature pyramid, Sec. 3.2),
``heads`` (class-aware regression), ``config`` (the config groups), ``detector``.
"""

from models.loco.detector import LoCoDetector, LoCoOutput

__all__ = ["LoCoDetector", "LoCoOutput"]
