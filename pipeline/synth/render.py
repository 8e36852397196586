"""Rendering a video plan into an MP4 file (H.264 video, AAC audio) with PyAV."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path
from pipeline.synth.plan import VideoPlan, visible_frames
from pipeline.synth.shapes import shape_alpha
from pipeline.synth.sounds import background_noise, class_waveform

EVENT_RMS = 0.1  # RMS of a class sound at gain 1
BACKGROUND_RMS = 0.02  # RMS of the background noise: class sounds sit 12-14 dB above it
BACKGROUND_LEVEL = 115.0  # mean grey level of the background texture
BACKGROUND_CONTRAST = 22.0  # standard deviation of the texture's grey level
BACKGROUND_TINT = 0.08  # largest relative colour cast of the texture per channel
GRADIENT_AMPLITUDE = 14.0  # grey levels of the slowly turning linear gradient
GRADIENT_TURN_RAD_S = 0.3  # how fast the gradient's direction turns
TEXTURE_CUTOFF_CYCLES = 3.0  # spatial low-pass of the texture, in cycles per frame side
CHUNK_S = 1.0  # frames and samples encoded per step
AAC_FRAME_SAMPLES = 1024
AAC_BIT_RATE = 64_000
X264_OPTIONS = {"preset": "veryfast", "crf": "18"}
HASH_TAG = "avloc-synth plan_hash="  # prefix of the plan hash in the MP4 "comment" tag


class FrameRenderer:
    """Draws the frames of one video plan.

    Args:
        plan: the video to draw.
    """

    def __init__(self, plan: VideoPlan) -> None:
        self.plan = plan
        rng = np.random.default_rng([plan.background_seed, 1])
        height, width = plan.height, plan.width
        # A periodic smooth texture: white noise low-passed in the frequency domain.
        spectrum = np.fft.fft2(rng.standard_normal((height, width)))
        fy = np.fft.fftfreq(height)[:, None] * height  # cycles per frame height
        fx = np.fft.fftfreq(width)[None, :] * width
        spectrum *= np.exp(-(fx**2 + fy**2) / (2 * TEXTURE_CUTOFF_CYCLES**2))
        texture = np.real(np.fft.ifft2(spectrum))  # (H, W)
        texture = (texture - texture.mean()) / texture.std() * BACKGROUND_CONTRAST
        tint = 1.0 + rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)
        texture = ((BACKGROUND_LEVEL + texture)[:, :, None] * tint).astype(np.float32)
        self.texture_tiled = np.tile(texture, (2, 2, 1))  # (2H, 2W, 3): any shift is a slice
        self.gradient_phase = float(rng.uniform(0, 2 * math.pi))
        self.x_unit = ((np.arange(width) - width / 2) / width).astype(np.float32)[None, :]  # (1, W)
        self.y_unit = ((np.arange(height) - height / 2) / height).astype(np.float32)[
            :, None
        ]  # (H, 1)
        self.sprites = []  # (frames shown, motion, alpha, rgb) in drawing order
        for clutter in plan.clutter:
            self.sprites.append(
                (
                    range(plan.num_frames),
                    clutter.motion,
                    shape_alpha(clutter.shape, clutter.motion.size_px),
                    np.full(3, clutter.grey, np.float32),
                )
            )
        for appearance in plan.appearances:
            if appearance.motion is None:
                continue
            spec = plan.classes[appearance.label_id]
            self.sprites.append(
                (
                    visible_frames(appearance, plan.fps),
                    appearance.motion,
                    shape_alpha(spec.shape, appearance.motion.size_px),
                    np.asarray(spec.rgb, np.float32),
                )
            )

    def frame(self, frame_index: int) -> np.ndarray:
        """The RGB frame ``frame_index``; uint8 (H, W, 3)."""
        plan = self.plan
        time_s = frame_index / plan.fps
        shift_x = round(plan.background_drift_px_s[0] * time_s) % plan.width
        shift_y = round(plan.background_drift_px_s[1] * time_s) % plan.height
        texture = self.texture_tiled[
            shift_y : shift_y + plan.height, shift_x : shift_x + plan.width
        ]
        angle = self.gradient_phase + GRADIENT_TURN_RAD_S * time_s
        gradient = GRADIENT_AMPLITUDE * (
            math.cos(angle) * self.x_unit + math.sin(angle) * self.y_unit
        )  # (H, W)
        image = texture + gradient[:, :, None]  # (H, W, 3), a fresh array
        for frames, motion, alpha, rgb in self.sprites:
            if frame_index not in frames:
                continue
            x, y = motion.top_left(time_s, plan.width, plan.height)
            size = motion.size_px
            region = image[y : y + size, x : x + size]  # (size, size, 3) view
            region += alpha[:, :, None] * (rgb - region)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def render_audio(plan: VideoPlan) -> np.ndarray:
    """The mono soundtrack of a plan: background noise plus class sounds; float32 (N,)."""
    rate = plan.sample_rate
    rng = np.random.default_rng([plan.background_seed, 2])
    track = BACKGROUND_RMS * background_noise(plan.num_samples, rate, rng)
    for appearance in plan.appearances:
        if appearance.audible_s is None:
            continue
        start = round(appearance.audible_s[0] * rate)
        end = min(round(appearance.audible_s[1] * rate), plan.num_samples)
        sound_rng = np.random.default_rng(appearance.sound_seed)
        spec = plan.classes[appearance.label_id]
        wave = class_waveform(spec, end - start, rate, sound_rng)
        track[start:end] += EVENT_RMS * appearance.gain * wave
    return np.clip(track, -1.0, 1.0).astype(np.float32)


def _encode(plan: VideoPlan, path: Path) -> None:
    """Encode a plan into an MP4 at ``path``, streaming one chunk of frames at a time."""
    import av  # here, not at the top: building the DAG imports this package without PyAV

    with av.open(str(path), "w", format="mp4") as container:
        container.metadata["comment"] = HASH_TAG + plan.plan_hash()
        video = container.add_stream("libx264", rate=plan.fps)
        video.width, video.height, video.pix_fmt = plan.width, plan.height, "yuv420p"
        video.options = dict(X264_OPTIONS)
        video.codec_context.thread_count = 1  # parallelism is across videos
        audio = container.add_stream("aac", rate=plan.sample_rate, layout="mono")
        audio.bit_rate = AAC_BIT_RATE
        renderer = FrameRenderer(plan)
        soundtrack = render_audio(plan)
        frames_per_chunk = max(1, round(CHUNK_S * plan.fps))
        next_sample = 0
        for chunk_start in range(0, plan.num_frames, frames_per_chunk):
            chunk_end = min(chunk_start + frames_per_chunk, plan.num_frames)
            for frame_index in range(chunk_start, chunk_end):
                frame = av.VideoFrame.from_ndarray(renderer.frame(frame_index), format="rgb24")
                frame.pts = frame_index
                container.mux(video.encode(frame))
            sample_end = chunk_end * plan.sample_rate // plan.fps
            if chunk_end == plan.num_frames:
                sample_end = plan.num_samples
            while next_sample < sample_end:
                block = soundtrack[next_sample : min(next_sample + AAC_FRAME_SAMPLES, sample_end)]
                if len(block) < AAC_FRAME_SAMPLES and sample_end < plan.num_samples:
                    break  # wait for the next chunk to fill a whole AAC frame
                audio_frame = av.AudioFrame.from_ndarray(
                    block[None, :], format="fltp", layout="mono"
                )
                audio_frame.sample_rate = plan.sample_rate
                audio_frame.pts = next_sample
                container.mux(audio.encode(audio_frame))
                next_sample += len(block)
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def render_video(plan: VideoPlan, path: Path) -> None:
    """Render a plan to an MP4 at ``path``, atomically.

    The file is written under a temporary name in the same folder (``.{name}.*.part``,
    :func:`pipeline.io.atomic_path`) and renamed to ``path`` only when complete, so a killed
    render never leaves a file that looks finished. The plan hash is stored in the MP4's
    ``comment`` tag.

    Args:
        plan: the video to render.
        path: the MP4 file to write; its folder is created if needed.
    """
    with atomic_path(path) as temp_path:
        _encode(plan, temp_path)


def read_plan_hash(path: Path) -> str | None:
    """The plan hash stored in an MP4 written by ``render_video``, or None if it has none."""
    import av

    with av.open(str(path)) as container:
        comment = container.metadata.get("comment", "")
    return comment[len(HASH_TAG) :] if comment.startswith(HASH_TAG) else None
