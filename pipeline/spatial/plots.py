"""Heatmap figures: a few test frames with the heatmap over them and their ground-truth boxes.

Drawn on matplotlib's Agg canvas directly (no pyplot, no display, no process-wide backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.decode import DecodeError, iter_frames
from pipeline.spatial.metrics import normalise_min_max

SOUNDING_COLOUR = "#38a169"  # ground-truth boxes of sounding objects
SILENT_COLOUR = "#e53e3e"  # boxes of visible objects that do not sound


def read_video_frames(
    requests: Sequence[tuple[str, int]], fps: float, frame_size: tuple[int, int]
) -> list[np.ndarray]:
    """RGB frames (height, width, 3) uint8 for ``(video path, frame index)`` requests.

    Raises:
        FileNotFoundError: a video file is missing (plot with ``--no-video-frames``).
        DecodeError: a frame past the video's end was asked for.
    """
    images: list[np.ndarray] = []
    for path, frame in requests:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"video {path} (recorded in its feature store) is missing; run from the "
                "folder the extraction ran in, or plot with --no-video-frames"
            )
        for index, image in enumerate(iter_frames(path, fps, frame_size)):
            if index == frame:
                images.append(image)
                break
        else:
            raise DecodeError(f"{path} has no frame {frame}")
    return images


def read_images(paths: Sequence[str], frame_size: tuple[int, int]) -> list[np.ndarray]:
    """RGB images (height, width, 3) uint8 resized to ``frame_size`` (bicubic): the stills of a
    benchmark's spatial set, drawn as its heatmaps were computed (224x224).

    Raises:
        FileNotFoundError: an image is missing (plot with ``--no-video-frames``).
    """
    from PIL import Image

    images = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"image {path} (recorded in the spatial set) is missing; run from the folder "
                "the set was built in, or plot with --no-video-frames"
            )
        with Image.open(path) as image:
            resized = image.convert("RGB").resize(tuple(frame_size), Image.Resampling.BICUBIC)
        images.append(np.asarray(resized, dtype=np.uint8))
    return images


def plot_heatmaps(path: str | Path, panels: Sequence[dict[str, Any]], *, title: str) -> Path:
    """One panel per frame: heatmap (min-max normalised) over the frame, boxes on top.

    Args:
        path: PNG file to write.
        panels: per frame ``{"title", "heatmap": (H, W), "sounding": boxes, "silent": boxes}``
            and optionally ``"image": (H, W, 3) uint8``; boxes are ``[x0, y0, x1, y1]``.
        title: figure title.
    """
    if not panels:
        raise ValueError(f"no frame to plot into {path}")
    columns = len(panels)
    figure = Figure(figsize=(3.2 * columns, 3.0), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    for axis, panel in zip(axes, panels, strict=True):
        heatmap = normalise_min_max(np.asarray(panel["heatmap"], dtype=np.float64))
        if panel.get("image") is not None:
            axis.imshow(panel["image"])
            axis.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        else:
            axis.imshow(heatmap, cmap="jet", vmin=0.0, vmax=1.0)
        for boxes, colour, style in (
            (panel["sounding"], SOUNDING_COLOUR, "-"),
            (panel["silent"], SILENT_COLOUR, "--"),
        ):
            for x0, y0, x1, y1 in boxes:
                axis.add_patch(
                    Rectangle(
                        (x0 - 0.5, y0 - 0.5),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        edgecolor=colour,
                        linestyle=style,
                        linewidth=1.8,
                    )
                )
        axis.set_title(panel["title"], fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{title}: green = sounding (GT), red dashed = silent", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path
