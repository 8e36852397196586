"""Ground-truth files of a synthetic data set: annotations, boxes, 1-s segment labels."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from pipeline.io import atomic_path, write_json_atomic
from pipeline.synth.plan import (
    VideoPlan,
    labelled_segments,
    object_box,
    sounding_intervals,
    visible_frames,
)

SEGMENT_MIN_OVERLAP_S = 0.5  # a 1-s segment takes a class that covers at least this much
SEGMENTS_HEADER = ("video_id", "segment", "start_s", "end_s", "label", "label_id")
BACKGROUND_LABEL = "background"

# JSON schema of annotations.json, the UnAV-100 annotation format.
ANNOTATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "database"],
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string"},
        "database": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["duration", "subset", "annotations"],
                "additionalProperties": False,
                "properties": {
                    "duration": {"type": "number", "exclusiveMinimum": 0},
                    "subset": {"enum": ["train", "validation", "test"]},
                    "annotations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["segment", "label", "label_id"],
                            "additionalProperties": False,
                            "properties": {
                                "segment": {
                                    "type": "array",
                                    "items": {"type": "number", "minimum": 0},
                                    "minItems": 2,
                                    "maxItems": 2,
                                },
                                "label": {"type": "string"},
                                "label_id": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                },
            },
        },
    },
}


def annotations(plans: list[VideoPlan]) -> dict[str, Any]:
    """The UnAV-100 style annotation dictionary of a data set."""
    first = plans[0]
    database = {}
    for plan in plans:
        database[plan.video_id] = {
            "duration": round(plan.duration_s, 3),
            "subset": plan.subset,
            "annotations": [
                {
                    "segment": [start, end],
                    "label": plan.classes[label_id].label,
                    "label_id": label_id,
                }
                for label_id, start, end in labelled_segments(plan)
            ],
        }
    return {"version": f"synth-{first.size_name}-seed{first.seed}", "database": database}


def boxes(plans: list[VideoPlan]) -> dict[str, Any]:
    """Per video, per class object shown: its box on every frame it is visible."""
    first = plans[0]
    videos = {}
    for plan in plans:
        objects = []
        for appearance in plan.appearances:
            if appearance.visible_s is None:
                continue
            sounding = sounding_intervals(plan, appearance)
            objects.append(
                {
                    "label": plan.classes[appearance.label_id].label,
                    "label_id": appearance.label_id,
                    "sounding": bool(sounding),
                    "sounding_intervals": [list(interval) for interval in sounding],
                    "boxes": [
                        [frame_index, *object_box(plan, appearance, frame_index)]
                        for frame_index in visible_frames(appearance, plan.fps)
                    ],
                }
            )
        videos[plan.video_id] = objects
    return {"fps": first.fps, "width": first.width, "height": first.height, "videos": videos}


def segment_rows(plan: VideoPlan) -> list[tuple[str, int, int, int, str, int]]:
    """AVE-style rows ``(video_id, segment, start_s, end_s, label, label_id)``, one per second.

    A whole second takes the class whose labelled events cover it most, if they cover at
    least ``SEGMENT_MIN_OVERLAP_S`` (ties go to the lower label_id); otherwise it is
    ``background`` with label_id K.
    """
    events = labelled_segments(plan)
    num_classes = len(plan.classes)
    rows = []
    for second in range(math.floor(plan.duration_s + 1e-9)):
        coverage = [0.0] * num_classes
        for label_id, start, end in events:
            coverage[label_id] += max(0.0, min(end, second + 1) - max(start, second))
        best = max(range(num_classes), key=lambda label_id: (coverage[label_id], -label_id))
        if coverage[best] >= SEGMENT_MIN_OVERLAP_S - 1e-9:
            label, label_id = plan.classes[best].label, best
        else:
            label, label_id = BACKGROUND_LABEL, num_classes
        rows.append((plan.video_id, second, second, second + 1, label, label_id))
    return rows


def write_ground_truth(plans: list[VideoPlan], out_dir: Path) -> None:
    """Write annotations.json, boxes.json, segments.csv and classes.json into ``out_dir``.

    Args:
        plans: the plans of one data set (one size, seed and class list).
        out_dir: the data set's output folder; created if needed.
    """
    if not plans:
        raise ValueError(f"write_ground_truth got no plans for {out_dir}")
    first = plans[0]
    for plan in plans:
        same_set = (plan.size_name, plan.seed, plan.classes) == (
            first.size_name,
            first.seed,
            first.classes,
        )
        if not same_set:
            raise ValueError(
                f"write_ground_truth: video {plan.video_id} belongs to another data set than "
                f"{first.video_id}; pass the plans of one plan_dataset call"
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "annotations.json", annotations(plans), indent=1)
    write_json_atomic(out_dir / "boxes.json", boxes(plans), separators=(",", ":"))
    classes = [
        {
            "label_id": spec.label_id,
            "label": spec.label,
            "rgb": list(spec.rgb),
            "shape": spec.shape,
            "sound": spec.sound,
            "frequency_hz": spec.frequency_hz,
        }
        for spec in first.classes
    ]
    write_json_atomic(out_dir / "classes.json", classes, indent=1)
    with (
        atomic_path(out_dir / "segments.csv") as temp_csv,
        temp_csv.open("w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(SEGMENTS_HEADER)
        for plan in plans:
            writer.writerows(segment_rows(plan))
