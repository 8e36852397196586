"""Throughput on a GPU: extraction with CLIP ViT-B/32 and VideoMAE, training of two detectors.

The one prepared script for a machine with an NVIDIA GPU; the README's GPU figures come from
it, and nothing in the test suite needs a GPU. The encoders are the real architectures at their
real sizes with random weights (nothing is downloaded; throughput does not depend on the
values):

* CLIP ViT-B/32 (open_clip ``ViT-B-32``: 224x224 frames, 4 frames a snippet, 512-d);
* VideoMAE base (transformers' ``VideoMAEConfig()`` defaults: 16 frames of 224x224, 768-d;
  the V2 giant of the Perception Test paper is 1408-d and about 7x the compute).

Rows, each in fp32 and in fp16 (the encoders' ``fp16`` switch: float16 autocast on CUDA; on a
CPU, where it does nothing, fp32 only):

* ``encode``: the encoder alone on random uint8 clips at its frame size, ``--batch`` clips a
  call, in clips per second (the GPU's share of extraction);
* ``extract``: :func:`pipeline.extract.extract_video` on one video (decoding and resizing on
  the CPU, embedding on the GPU; the default config's grid: 8 fps, 0.96 s windows every
  0.32 s), in seconds of video per second of wall time;

then the training throughput of the 2407.02318 early-fusion ActionFormer and LoCo at their
papers' sizes (``bench/detector_throughput.py`` on the device), in snippets per second.

    python bench/gpu_throughput.py [--device cuda] [--video PATH] [--steps 20] [--quick]

Without ``--video`` a 60 s 640x360 25 fps H.264 + AAC video is written first (``--quick``: 5 s,
fewer repeats; a smoke run that also works on a CPU).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # bench/ and tests/ helpers

from bench.detector_throughput import ROWS as DETECTOR_ROWS  # noqa: E402
from bench.detector_throughput import measure as measure_detector  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from pipeline.config import extraction_settings, load_config  # noqa: E402
from pipeline.decode import probe  # noqa: E402
from pipeline.encoders import AudioEncoder, VisualEncoder, build_audio_encoder  # noqa: E402
from pipeline.extract import extract_video  # noqa: E402
from tests.media import make_video  # noqa: E402

TRAINED_DETECTORS = ("2407.02318 fusion", "LoCo")  # rows of bench/detector_throughput.py


def clip_vit_b32(device: str, fp16: bool) -> VisualEncoder:
    """open_clip's ViT-B/32 with random weights, as the ``clip`` encoder."""
    import open_clip

    from pipeline.encoders.clip import CLIPVisualEncoder

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    return CLIPVisualEncoder.from_model(
        model,
        mean=open_clip.OPENAI_DATASET_MEAN,
        std=open_clip.OPENAI_DATASET_STD,
        model_name="ViT-B-32 (random weights)",
        device=device,
        fp16=fp16,
    )


def videomae_base(device: str, fp16: bool) -> VisualEncoder:
    """transformers' VideoMAE base with random weights, as the ``videomae`` encoder."""
    from transformers import VideoMAEConfig, VideoMAEModel

    from pipeline.encoders.videomae import VideoMAEVisualEncoder

    return VideoMAEVisualEncoder.from_model(
        VideoMAEModel(VideoMAEConfig()),
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
        model_name="VideoMAE base (random weights)",
        device=device,
        fp16=fp16,
    )


ENCODERS: dict[str, Callable[[str, bool], VisualEncoder]] = {
    "CLIP ViT-B/32": clip_vit_b32,
    "VideoMAE base": videomae_base,
}


def synchronised(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_seconds(task: Callable[[], object], repeats: int, device: str) -> float:
    """Wall seconds of the fastest of ``repeats`` runs, after one warm-up run."""
    task()
    synchronised(device)
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        task()
        synchronised(device)
        runs.append(time.perf_counter() - started)
    return min(runs)


def measure_encoder(
    encoder: VisualEncoder,
    video: Path,
    settings: dict[str, Any],
    audio_encoder: AudioEncoder,
    args: argparse.Namespace,
) -> tuple[float, float]:
    """(clips per second through ``encoder.encode``, seconds of video per second through
    :func:`extract_video`) of one encoder."""
    width, height = encoder.frame_size
    shape = (args.batch, encoder.frames_per_snippet, height, width, 3)
    clips = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    encode_s = best_seconds(lambda: encoder.encode(clips), args.repeats, args.device)
    extract_s = best_seconds(
        lambda: extract_video(
            video,
            settings,
            visual_encoder=encoder,
            audio_encoder=audio_encoder,
            batch_size=args.batch,
        ),
        args.repeats,
        args.device,
    )
    return args.batch / encode_s, probe(video).duration_s / extract_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--video", type=Path, help="video to extract (default: synthetic 60 s)")
    parser.add_argument("--batch", type=int, default=64, help="clips per encoder call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--quick", action="store_true", help="5 s video, 1 repeat, 1 step")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.batch = 1, 1, min(args.batch, 8)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    torch.manual_seed(0)
    gpu = ""
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(args.device))
        gpu = f", {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    print(f"device  : {args.device}{gpu}")
    print(f"machine : {cpu_model()}, {platform.platform()}; torch {torch.__version__}")

    settings = extraction_settings(load_config(REPO_ROOT / "workflow_config.yaml"))
    settings = {**settings, "visual_grid": False}
    audio_encoder = build_audio_encoder(settings["audio"], device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        video = args.video
        if video is None:
            video = Path(folder) / "gpu_bench.mp4"
            make_video(
                video,
                duration_s=5.0 if args.quick else 60.0,
                fps=25,
                size=(640, 360),
                sample_rate=48000,
                textured=True,
                video_bit_rate=1_000_000,
            )
        print(f"video   : {video} ({video.stat().st_size / 1e6:.1f} MB)")
        # the encoders' fp16 is float16 autocast on CUDA and ignored on a CPU
        precisions = (False, True) if args.device.startswith("cuda") else (False,)
        print("\n| encoder | precision | encode (clips/s) | extract (video s/s) |")
        print("|---|---|---:|---:|")
        for name, build in ENCODERS.items():
            for fp16 in precisions:
                encode_rate, extract_rate = measure_encoder(
                    build(args.device, fp16), video, settings, audio_encoder, args
                )
                precision = "fp16" if fp16 else "fp32"
                print(f"| {name} | {precision} | {encode_rate:.1f} | {extract_rate:.2f} |")
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()

    print("\n| detector | batch x length | parameters (M) | s / step | snippets / s |")
    print("|---|---|---:|---:|---:|")
    for label, config_name, run, dims, classes in DETECTOR_ROWS:
        if label not in TRAINED_DETECTORS:
            continue
        seconds, rate, parameters, batch, length = measure_detector(
            config_name, run, dims, classes, args.steps, args.device
        )
        print(f"| {label} | {batch} x {length} | {parameters:.1f} | {seconds:.3f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
