"""The names methods go by in the tables and in the comparison report.

A task's table and :mod:`pipeline.comparison` both print these, so they live here rather than
in either; neither imports the other.
"""

from __future__ import annotations

# Registered sound-localiser name (models.m2vsl) -> its name in the tables.
SPATIAL_DISPLAY_NAMES = {"m2vsl": "M2VSL", "similarity": "Similarity map (baseline)"}
SPATIAL_HEADLINE = (  # (family, metric, title): the field's metrics, higher is better
    ("ezvsl", "ciou", "CIoU (EZ-VSL)"),
    ("ezvsl", "auc", "AUC (EZ-VSL)"),
    ("slavc", "ap", "AP (SLAVC)"),
    ("slavc", "max_f1", "max-F1 (SLAVC)"),
    ("avsbench", "miou", "mIoU (AVSBench)"),
    ("avsbench", "fscore", "F-score (AVSBench)"),
)


def spatial_display_name(name: str, method: str) -> str:
    """``M2VSL`` for the spatial run named after its method, else ``M2VSL (name)``."""
    display = SPATIAL_DISPLAY_NAMES.get(method, method)
    return display if name == method else f"{display} ({name})"
