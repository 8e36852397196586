"""Import UnAV-100's released features (Geng et al., CVPR 2023, arXiv 2303.12930) into stores.

Two releases, both one ``.npy`` array (T, D) per video and modality in one folder:

- ``i3d_vggish`` (the UnAV baseline's): ``{vid}_rgb.npy`` (T, 1024) and ``{vid}_flow.npy``
  (T, 1024), concatenated ``[rgb | flow]`` into the (T, 2048) visual array, and
  ``{vid}_vggish.npy`` (T, 128). I3D ran at 25 fps on 24-frame windows every 8 frames (UnAV's
  config: ``feat_stride 8, num_frames 24, default_fps 25``), so row k covers
  ``[8k / 25, (8k + 24) / 25]`` s: a 0.96 s window every 0.32 s. VGGish rows are on the same grid.
- ``one_peace`` (UniAV, arXiv 2404.03179, and later work): ``{vid}_one_peace_video_finetune.npy``
  (T, 1536) from 16-frame windows every 4 frames at 16 fps, row k covering
  ``[4k / 16, (4k + 16) / 16] = [0.25k, 0.25k + 1]`` s, and ``{vid}_one_peace_audio.npy`` from
  1 s windows every 0.25 s of 16 kHz audio, row k covering ``[0.25k, 0.25k + 1]`` s. Alignment:
  both modalities start at 0 s with the same window (1 s) and stride (0.25 s), so audio row k and
  visual row k cover the same second and are paired as they are; no resampling is needed. The
  audio width is taken from the files (the same for every video).

In both releases audio and visual row counts can differ by a few rows (each encoder rounds the
video's end its own way). As UnAV's own loader does, both are cut to the shorter count; the rows
dropped are recorded per store as ``attrs["trimmed"] = {"visual": n, "audio": m}``. RGB and flow
arrays of different lengths are refused (UnAV's loader could not concatenate them either).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.annotations import load_annotations
from pipeline.cli import user_errors
from pipeline.importers.common import (
    FeatureImportError,
    FrameGrid,
    ImportedVideo,
    ImportReport,
    ImportSettings,
    add_import_arguments,
    load_feature_array,
    names_from_out,
    run_import,
    summary_line,
)
from pipeline.store import StoreError, open_store


@dataclass(frozen=True)
class FeatureRelease:
    """File names, widths and grid of one UnAV-100 feature release."""

    visual_suffixes: tuple[str, ...]  # file suffixes concatenated along D into the visual array
    visual_dims: tuple[int, ...]  # width of each of those files
    audio_suffix: str  # file suffix of the audio features
    audio_dim: int | None  # width of the audio features (None: read from the files)
    grid: FrameGrid  # seconds each row covers
    visual_encoder: str  # name recorded in the store attributes
    audio_encoder: str  # name recorded in the store attributes


RELEASES: dict[str, FeatureRelease] = {
    "i3d_vggish": FeatureRelease(
        visual_suffixes=("_rgb", "_flow"),
        visual_dims=(1024, 1024),
        audio_suffix="_vggish",
        audio_dim=128,
        grid=FrameGrid(fps=25.0, stride_frames=8, window_frames=24),
        visual_encoder="i3d_rgb_flow",
        audio_encoder="vggish",
    ),
    "one_peace": FeatureRelease(
        visual_suffixes=("_one_peace_video_finetune",),
        visual_dims=(1536,),
        audio_suffix="_one_peace_audio",
        audio_dim=None,
        grid=FrameGrid(fps=16.0, stride_frames=4, window_frames=16),
        visual_encoder="one_peace_video_k400",
        audio_encoder="one_peace_audio",
    ),
}
AUDIO_SAMPLE_RATE = 16000  # VGGish and ONE-PEACE both take 16 kHz audio


def release_settings(release_name: str) -> ImportSettings:
    """The :class:`ImportSettings` of one release (``i3d_vggish`` or ``one_peace``)."""
    if release_name not in RELEASES:
        raise ValueError(f"unknown UnAV-100 feature release {release_name!r}; use {list(RELEASES)}")
    release = RELEASES[release_name]
    return ImportSettings(
        importer=f"unav100/{release_name}",
        fps=release.grid.fps,
        window_s=release.grid.window_s,
        stride_s=release.grid.stride_s,
        encoders={
            "visual": {"name": release.visual_encoder, "dim": sum(release.visual_dims)},
            "audio": {"name": release.audio_encoder, "dim": release.audio_dim},
        },
        sample_rate=AUDIO_SAMPLE_RATE,
        details={
            "feat_stride_frames": release.grid.stride_frames,
            "window_frames": release.grid.window_frames,
            "files": [f"{{vid}}{s}.npy" for s in (*release.visual_suffixes, release.audio_suffix)],
        },
    )


def load_video(
    features_dir: str | Path, video_id: str, duration_s: float, release_name: str = "i3d_vggish"
) -> ImportedVideo:
    """One video's released features, cut to a common length, with their timestamps."""
    release = RELEASES[release_name]
    folder = Path(features_dir)
    parts = [
        load_feature_array(folder / f"{video_id}{suffix}.npy", expected_dim=dim)
        for suffix, dim in zip(release.visual_suffixes, release.visual_dims, strict=True)
    ]
    lengths = {len(part) for part in parts}
    if len(lengths) > 1:
        names = [f"{video_id}{suffix}.npy" for suffix in release.visual_suffixes]
        raise FeatureImportError(
            f"{folder}: {names} have different lengths {[len(p) for p in parts]}; "
            "the streams of one video must have one row per snippet"
        )
    visual = np.concatenate(parts, axis=1)  # (Tv, sum D)
    audio = load_feature_array(
        folder / f"{video_id}{release.audio_suffix}.npy", expected_dim=release.audio_dim
    )  # (Ta, Da)
    num_snippets = min(len(visual), len(audio))
    return ImportedVideo(
        video_id=video_id,
        visual=visual[:num_snippets],
        audio=audio[:num_snippets],
        timestamps=release.grid.timestamps(num_snippets),
        duration_s=duration_s,
        audio_present=True,
        extra_attrs={
            "trimmed": {"visual": len(visual) - num_snippets, "audio": len(audio) - num_snippets}
        },
    )


def import_unav100(
    annotations_path: str | Path,
    features_dir: str | Path,
    out_dir: str | Path,
    *,
    release: str = "i3d_vggish",
    missing: str = "error",
    dataset: str = "unav100",
    encoder_set: str | None = None,
) -> ImportReport:
    """Import every annotated video of UnAV-100; statistics use the annotations' train split.

    Args:
        annotations_path: ``unav100_annotations.json`` (validated by :mod:`pipeline.annotations`).
        features_dir: folder holding the release's ``.npy`` files.
        out_dir: feature folder, e.g. ``results/unav100/features/i3d_vggish``.
        release: ``i3d_vggish`` or ``one_peace``.
        missing: ``error`` or ``skip`` for annotated videos without feature files.
        dataset: data set name recorded in the index.
        encoder_set: feature set name recorded in the index (default: the release name).
    """
    settings = release_settings(release)
    annotations = load_annotations(annotations_path)
    durations = {vid: video.duration_s for vid, video in annotations.videos.items()}
    return run_import(
        sorted(durations),
        lambda vid: load_video(features_dir, vid, durations[vid], release),
        settings=settings,
        out_dir=out_dir,
        missing=missing,
        annotations_path=annotations_path,
        dataset=dataset,
        encoder_set=encoder_set or release,
    )


def trim_summary(out_dir: str | Path, video_ids: Sequence[str]) -> str:
    """How many stores were trimmed, and by how many rows at most, for the CLI."""
    visual, audio = [], []
    for video_id in video_ids:
        # an attribute of this importer's own: not one of StoreInfo's typed fields
        trimmed = open_store(Path(out_dir) / f"{video_id}.zarr").info.attrs["trimmed"]
        visual.append(trimmed["visual"])
        audio.append(trimmed["audio"])
    cut = sum(1 for v, a in zip(visual, audio, strict=True) if v or a)
    return (
        f"{cut} of {len(video_ids)} new stores trimmed; most rows dropped: "
        f"visual {max(visual, default=0)}, audio {max(audio, default=0)}"
    )


@user_errors(StoreError)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_import_arguments(parser, annotations_help="unav100_annotations.json")
    parser.add_argument(
        "--release", choices=sorted(RELEASES), default="i3d_vggish", help="feature release"
    )
    args = parser.parse_args(argv)
    dataset, encoder_set = names_from_out(args.out, args.dataset, args.encoder_set)
    report = import_unav100(
        args.annotations,
        args.features_dir,
        args.out,
        release=args.release,
        missing=args.missing,
        dataset=dataset,
        encoder_set=encoder_set,
    )
    print(summary_line(report) + "\n" + trim_summary(args.out, report.written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
