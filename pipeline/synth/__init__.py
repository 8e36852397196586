"""Synthetic audio-visual benchmark: MP4 videos with ground truth, reproducible from a seed.

Each of K classes has a coloured shape and a sound. An event is labelled only where the
class's object is visible *and* its sound is audible; silent objects, off-screen sounds,
background noise and grey clutter are distractors, so neither modality alone separates
events from distractors.

Usage: ``python -m pipeline.synth --out results/demo --size demo --seed 0 --num-classes 10``.

Importing the package is light (numpy only): PyAV is imported when a video is rendered or
read, so building the workflow's DAG, which reads :func:`video_ids`, never loads it.
"""

from pipeline.synth.classes import ClassSpec, make_classes
from pipeline.synth.generate import generate, is_rendered
from pipeline.synth.ground_truth import ANNOTATIONS_SCHEMA, write_ground_truth
from pipeline.synth.plan import (
    Appearance,
    Clutter,
    Motion,
    VideoPlan,
    labelled_segments,
    object_box,
    sounding_intervals,
    visible_frames,
)
from pipeline.synth.planner import plan_dataset
from pipeline.synth.render import read_plan_hash, render_video
from pipeline.synth.sizes import SIZES, SynthSize, video_ids

__all__ = [
    "ANNOTATIONS_SCHEMA",
    "SIZES",
    "Appearance",
    "ClassSpec",
    "Clutter",
    "Motion",
    "SynthSize",
    "VideoPlan",
    "generate",
    "is_rendered",
    "labelled_segments",
    "make_classes",
    "object_box",
    "plan_dataset",
    "read_plan_hash",
    "render_video",
    "sounding_intervals",
    "video_ids",
    "visible_frames",
    "write_ground_truth",
]
