"""Write the results viewer: one self-contained HTML page per data set, with its media beside it.

The page (``page.html``, ``viewer.css`` and ``viewer.js`` of this package, inlined) reads one
JSON object embedded in it (:func:`viewer_data`); it needs no network and no server, and opens
from the file system. Beside it, in the same folder: ``videos/`` (each test video) and
``spatial/`` (the spatial stage's example heatmaps), hard-linked to the originals (no copy, no
transcoding: the synthetic videos are H.264 and AAC in MP4, which Debian's Chromium plays), or
copied where the folder is on another file system. A video the browser cannot play gets a
message instead of a picture; its timeline still works. The page is written last, atomically,
so a killed job never leaves a page that looks finished.

CLI: ``python -m pipeline.viewer.build --title demo --annotations annotations.json
--dataset '{...}' --runs results/demo/runs/fusion ... --out results/demo/viewer/index.html``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipeline.annotations import AnnotationSet, load_annotations
from pipeline.cli import user_errors
from pipeline.ids import safe_name
from pipeline.io import write_text_atomic
from pipeline.sources import list_videos
from pipeline.viewer import data

log = logging.getLogger(__name__)

SPLIT = "test"  # the split the runs are scored on (rule evaluate)


def link_media(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``: a hard link (no copy, and the folder stays usable when
    moved), or a copy where the two are on different file systems."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)


def place_media(files: Mapping[str, Path], folder: Path) -> dict[str, str]:
    """Link or copy each of ``files`` (name in ``folder`` -> source) into ``folder``, remove
    what an earlier build left there, and return name -> the page's relative URL."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.name not in files:
            stale.unlink()
    for name, source in files.items():
        if not source.is_file():
            raise FileNotFoundError(f"{source} does not exist; it is needed by the viewer")
        link_media(source, folder / name)
    return {name: f"{quote(folder.name)}/{quote(name)}" for name in files}


def viewer_data(
    *,
    title: str,
    truth: AnnotationSet,
    runs: Sequence[str | Path],
    video_urls: Mapping[str, str],
    segments_csv: str | Path | None = None,
    segment_runs: Sequence[str | Path] = (),
    heatmap_urls: Mapping[str, str] | None = None,
    max_detections_per_video: int = data.MAX_DETECTIONS_PER_VIDEO,
) -> dict[str, Any]:
    """The JSON object the page reads.

    Args:
        title: the data set's name.
        truth: the test split's annotations (pipeline.annotations).
        runs: detection run folders (``metrics.json`` inside, and ``events/test.json``, or for
            a run over seeds, :mod:`pipeline.detection.seeds`, its first seed's in
            ``seed{N}/events/``); the folder's name is the run's.
        video_urls: video id -> the page's relative URL of its video (a video without one is
            shown on its timeline only).
        segments_csv: the data set's 1-second labels, when the segment stage ran.
        segment_runs: segment run folders (``metrics.json`` inside).
        heatmap_urls: caption -> the page's relative URL of a spatial heatmap figure.
        max_detections_per_video: detections kept per video and run (the best first).
    """
    videos = data.ground_truth(truth)
    for video in videos:
        video["src"] = video_urls.get(video["id"])
    video_ids = set(truth.videos)
    page = {
        "title": title,
        "classes": list(truth.labels),
        "videos": videos,
        "max_detections_per_video": max_detections_per_video,
        "runs": {
            Path(run).name: {
                "metrics": data.run_metrics(Path(run) / "metrics.json", truth.labels),
                "detections": data.run_detections(
                    data.run_events(run, SPLIT),
                    truth.labels,
                    video_ids,
                    max_per_video=max_detections_per_video,
                ),
            }
            for run in runs
        },
        "segments": None,
        "heatmaps": [
            {"caption": caption, "src": url} for caption, url in (heatmap_urls or {}).items()
        ],
    }
    if segments_csv is not None:
        names, labels = data.segment_labels(segments_csv, video_ids)
        page["segments"] = {
            "classes": {str(label_id): name for label_id, name in sorted(names.items())},
            "labels": labels,
            "runs": data.segment_runs(
                {Path(run).name: Path(run) / "metrics.json" for run in segment_runs}, video_ids
            ),
        }
    return page


def render_page(page_data: Mapping[str, Any]) -> str:
    """The HTML page: the template with its style, script and ``page_data`` inlined."""
    assets = resources.files("pipeline.viewer")
    template = assets.joinpath("page.html").read_text(encoding="utf-8")
    # "<" escaped: no string in the data can close the <script> element that holds it
    payload = json.dumps(page_data, separators=(",", ":")).replace("<", "\\u003c")
    parts = {
        "{{TITLE}}": page_data["title"].replace("&", "&amp;").replace("<", "&lt;"),
        "{{STYLE}}": assets.joinpath("viewer.css").read_text(encoding="utf-8"),
        "{{SCRIPT}}": assets.joinpath("viewer.js").read_text(encoding="utf-8"),
        "{{DATA}}": payload,
    }
    for marker, text in parts.items():
        template = template.replace(marker, text)
    return template


def read_page_data(path: str | Path) -> dict[str, Any]:
    """The JSON object embedded in a page :func:`render_page` wrote (for tests and scripts)."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index(">", text.index('id="viewer-data"')) + 1
    return json.loads(text[start : text.index("</script>", start)])


def heatmap_caption(path: Path) -> tuple[str, str]:
    """The caption and file name of ``spatial/{run}/seed{n}/heatmaps.png`` in the viewer."""
    run, seed = path.parent.parent.name, path.parent.name
    return f"{run}, {seed.replace('seed', 'seed ')}", f"{run}-{seed}.png"


def build_viewer(
    out: str | Path,
    *,
    title: str,
    annotations: str | Path,
    runs: Sequence[str | Path],
    videos: Mapping[str, str | Path],
    segments_csv: str | Path | None = None,
    segment_runs: Sequence[str | Path] = (),
    heatmaps: Sequence[str | Path] = (),
    max_detections_per_video: int = data.MAX_DETECTIONS_PER_VIDEO,
) -> Path:
    """Write the page ``out`` and its media folders beside it; return ``out``.

    ``videos`` maps video id -> file (every video of the data set; the test split's are
    placed); ``heatmaps`` are the spatial stage's ``heatmaps.png`` figures. The other arguments
    are :func:`viewer_data`'s.
    """
    out = Path(out)
    truth = load_annotations(annotations).subset(SPLIT)
    video_files = {
        f"{safe_name(video_id)}{Path(path).suffix.lower()}": (video_id, Path(path))
        for video_id, path in videos.items()
        if video_id in truth.videos
    }
    urls = place_media(
        {name: path for name, (_, path) in video_files.items()}, out.parent / "videos"
    )
    video_urls = {video_id: urls[name] for name, (video_id, _) in video_files.items()}
    figures = {heatmap_caption(Path(path)): Path(path) for path in heatmaps}
    figure_urls = place_media(
        {name: path for (_, name), path in figures.items()}, out.parent / "spatial"
    )
    heatmap_urls = {caption: figure_urls[name] for caption, name in figures}
    page = viewer_data(
        title=title,
        truth=truth,
        runs=runs,
        video_urls=video_urls,
        segments_csv=segments_csv,
        segment_runs=segment_runs,
        heatmap_urls=heatmap_urls,
        max_detections_per_video=max_detections_per_video,
    )
    write_text_atomic(out, render_page(page))
    log.info(
        "%s: %d test videos (%d with a video file), %d detection runs, %d segment runs, "
        "%d heatmap figures",
        out,
        len(page["videos"]),
        len(video_urls),
        len(page["runs"]),
        len(segment_runs),
        len(heatmap_urls),
    )
    return out


@user_errors()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", required=True, help="the data set's name")
    parser.add_argument("--annotations", required=True, help="UnAV-100-format annotation file")
    parser.add_argument(
        "--dataset",
        default="{}",
        help="where the videos are, as JSON: the config's dataset.name, source, synth, videos_dir "
        "and video_extensions (pipeline.sources.list_videos); none when omitted",
    )
    parser.add_argument("--runs", nargs="*", default=[], help="detection run folders")
    parser.add_argument("--segments", help="segments.csv, where the segment stage ran")
    parser.add_argument("--segment-runs", nargs="*", default=[], help="segment run folders")
    parser.add_argument("--heatmaps", nargs="*", default=[], help="the spatial heatmaps.png")
    parser.add_argument(
        "--max-detections",
        type=int,
        default=data.MAX_DETECTIONS_PER_VIDEO,
        help="detections kept per video and run, the best first (default: %(default)s)",
    )
    parser.add_argument("--out", required=True, help="the page to write (index.html)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = json.loads(args.dataset)
    build_viewer(
        args.out,
        title=args.title,
        annotations=args.annotations,
        runs=args.runs,
        videos=list_videos(dataset) if dataset else {},
        segments_csv=args.segments,
        segment_runs=args.segment_runs,
        heatmaps=args.heatmaps,
        max_detections_per_video=args.max_detections,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
