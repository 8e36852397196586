"""Frame augmentations of AV-BT pre-training (Sec. 3.2.1, Sec. 4.1, Table 5).

The six augmentations of Table 5, each a switch of
:class:`~pipeline.segments.settings.PretrainSettings`, with Barlow Twins' parameters
(arXiv 2103.03230, Appendix): random resized crop (area 0.08-1, aspect 3/4-4/3), horizontal
flip (p 0.5), colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8), grey-scale (p 0.2), Gaussian blur
(sigma 0.1-2) and solarisation. Barlow Twins' two views differ in blur (p 1.0 / 0.1) and
solarisation (p 0 / 0.2); AV-BT has one augmented view, which takes the means (0.5, 0.1). The
paper's defaults keep crop and blur only (Sec. 3.2.1; Table 5's best row). All randomness
comes from the ``torch.Generator`` passed in, so a seeded generator reproduces a batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF

from pipeline.segments.settings import PretrainSettings

FLIP_PROBABILITY = 0.5
JITTER_PROBABILITY = 0.8
JITTER_STRENGTHS = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
GRAYSCALE_PROBABILITY = 0.2
BLUR_PROBABILITY = 0.5
SOLARIZE_PROBABILITY = 0.1


def random_crop_boxes(
    batch_size: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """Random crop boxes ``(B, 4)`` as ``(x0, y0, x1, y1)`` pixels, inside the frame.

    Each box covers an area fraction drawn uniformly from ``scale`` with an aspect ratio
    (relative to the frame's) drawn log-uniformly from ``ratio``; a side that would leave the
    frame is clipped to it.
    """
    area = torch.empty(batch_size).uniform_(scale[0], scale[1], generator=generator)  # (B,)
    log_ratio = torch.empty(batch_size).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = log_ratio.exp()  # (B,)
    crop_width = (width * (area * aspect).sqrt()).clamp(max=width)  # (B,)
    crop_height = (height * (area / aspect).sqrt()).clamp(max=height)  # (B,)
    x0 = torch.rand(batch_size, generator=generator) * (width - crop_width)  # (B,)
    y0 = torch.rand(batch_size, generator=generator) * (height - crop_height)  # (B,)
    return torch.stack([x0, y0, x0 + crop_width, y0 + crop_height], dim=1)  # (B, 4)


def resized_crops(frames: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop each frame ``(B, C, H, W)`` to its box ``(B, 4)`` and resize it to ``(size, size)``
    (bilinear, one sample per output pixel)."""
    batch_index = torch.arange(len(frames), dtype=frames.dtype)[:, None]  # (B, 1)
    rois = torch.cat([batch_index, boxes.to(frames.dtype)], dim=1)  # (B, 5)
    return roi_align(
        frames, rois, output_size=(size, size), sampling_ratio=1, aligned=True
    )  # (B, C, size, size)


def centre_crops(frames: Tensor, size: int) -> Tensor:
    """The central square of each frame ``(B, C, H, W)`` resized to ``(size, size)``: the
    evaluation view (Barlow Twins' resize + centre crop)."""
    height, width = frames.shape[-2:]
    side = min(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    boxes = torch.tensor([[x0, y0, x0 + side, y0 + side]]).expand(len(frames), 4)
    return resized_crops(frames, boxes, size)


def _chosen(batch_size: int, probability: float, generator: torch.Generator) -> list[int]:
    """Indices of the frames an augmentation of ``probability`` applies to."""
    draws = torch.rand(batch_size, generator=generator)  # drawn even when unused: fixed stream
    return (draws < probability).nonzero().flatten().tolist()


def random_gaussian_blur(
    frames: Tensor,
    generator: torch.Generator,
    probability: float,
    sigma: tuple[float, float],
    kernel_size: int,
) -> Tensor:
    """Blur each frame ``(B, C, H, W)`` with ``probability``, sigma uniform in ``sigma``."""
    sigmas = torch.empty(len(frames)).uniform_(sigma[0], sigma[1], generator=generator)  # (B,)
    out = frames.clone()
    for index in _chosen(len(frames), probability, generator):
        value = float(sigmas[index])
        out[index] = TF.gaussian_blur(
            frames[index], kernel_size=[kernel_size, kernel_size], sigma=[value, value]
        )
    return out


def random_color_jitter(
    frames: Tensor,
    generator: torch.Generator,
    probability: float,
    strengths: tuple[float, float, float, float] = JITTER_STRENGTHS,
) -> Tensor:
    """Barlow Twins' colour jitter: brightness, contrast, saturation factors uniform in
    ``[1 - s, 1 + s]`` and a hue shift uniform in ``[-h, h]``, applied in random order."""
    brightness, contrast, saturation, hue = strengths
    factors = torch.rand(len(frames), 4, generator=generator) * 2 - 1  # (B, 4) in [-1, 1)
    orders = [torch.randperm(4, generator=generator).tolist() for _ in range(len(frames))]
    out = frames.clone()
    for index in _chosen(len(frames), probability, generator):
        frame = frames[index]
        for operation in orders[index]:
            value = float(factors[index, operation])
            if operation == 0:
                frame = TF.adjust_brightness(frame, 1 + brightness * value)
            elif operation == 1:
                frame = TF.adjust_contrast(frame, 1 + contrast * value)
            elif operation == 2:
                frame = TF.adjust_saturation(frame, 1 + saturation * value)
            else:
                frame = TF.adjust_hue(frame, hue * value)
        out[index] = frame
    return out


def augment_frames(
    frames: Tensor, generator: torch.Generator, settings: PretrainSettings
) -> Tensor:
    """AV-BT's frame augmentations (Sec. 3.2.1, Table 5), each switched by ``settings``:
    random resized crop (else the centre crop), flip, colour jitter, grey-scale, blur,
    solarisation, in Barlow Twins' order. Frames ``(B, 3, H, W)`` in [0, 1] ->
    ``(B, 3, crop_size, crop_size)``. All randomness comes from ``generator``.
    """
    batch_size, _, height, width = frames.shape
    size = settings.crop_size
    if settings.crop:
        boxes = random_crop_boxes(batch_size, height, width, generator, settings.crop_scale)
        frames = resized_crops(frames, boxes, size)
    else:
        frames = centre_crops(frames, size)
    if settings.flip:
        for index in _chosen(batch_size, FLIP_PROBABILITY, generator):
            frames[index] = frames[index].flip(-1)
    if settings.color_jitter:
        frames = random_color_jitter(frames, generator, JITTER_PROBABILITY)
    if settings.grayscale:
        for index in _chosen(batch_size, GRAYSCALE_PROBABILITY, generator):
            frames[index] = TF.rgb_to_grayscale(frames[index], num_output_channels=3)
    if settings.blur:
        frames = random_gaussian_blur(
            frames, generator, BLUR_PROBABILITY, settings.blur_sigma, settings.blur_kernel_size
        )
    if settings.solarize:
        for index in _chosen(batch_size, SOLARIZE_PROBABILITY, generator):
            frames[index] = TF.solarize(frames[index], threshold=0.5)
    return frames.clamp(0.0, 1.0)
