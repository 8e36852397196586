"""The CLIP encoder against open_clip's own preprocessing and outputs, on non-square frames.

A tiny random ViT whose frames are 40 wide and 24 high (patch grid 3 x 5): a height/width swap
in the pixel layout or a patch grid read in the wrong order keeps every shape of a square
model, but not the values open_clip itself computes.
"""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.encoders.base import clips_to_pixels
from pipeline.encoders.clip import CLIPVisualEncoder

HEIGHT, WIDTH, PATCH = 24, 40, 8  # grid 3 x 5
BATCH, FRAMES = 2, 3


def tiny_wide_clip() -> torch.nn.Module:
    torch.manual_seed(0)
    return open_clip.CLIP(
        embed_dim=16,
        vision_cfg={
            "image_size": (HEIGHT, WIDTH),  # open_clip: (height, width)
            "layers": 1,
            "width": 32,
            "patch_size": PATCH,
            "head_width": 16,
        },
        text_cfg={"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    ).eval()


def test_wide_frames_match_open_clips_preprocessing_embedding_and_grid() -> None:
    clip_model = tiny_wide_clip()
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    clips = np.random.default_rng(0).integers(
        0, 256, (BATCH, FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8
    )
    # open_clip's own inference transform on each frame as a PIL image (already at its size).
    preprocess = open_clip.image_transform(
        clip_model.visual.image_size, is_train=False, mean=mean, std=std
    )
    frames = clips.reshape(BATCH * FRAMES, HEIGHT, WIDTH, 3)
    pixels = torch.stack([preprocess(Image.fromarray(frame)) for frame in frames])
    assert pixels.shape == (BATCH * FRAMES, 3, HEIGHT, WIDTH)
    ours = clips_to_pixels(clips, mean, std, torch.device("cpu")).flatten(0, 1)
    torch.testing.assert_close(ours, pixels, rtol=0, atol=1e-6)
    with torch.no_grad():  # before wrapping: from_model switches the tower to return tokens
        reference = clip_model.visual.forward_intermediates(
            pixels,
            indices=1,
            normalize_intermediates=True,  # the last block, after ln_post
        )
    # open_clip reshapes the patch tokens to its own (B*F, width, H', W') map.
    patch_map = reference["image_intermediates"][-1]
    assert patch_map.shape[2:] == (HEIGHT // PATCH, WIDTH // PATCH)
    with torch.no_grad():
        grid = patch_map.permute(0, 2, 3, 1) @ clip_model.visual.proj  # (B*F, H', W', D)
    grid = F.normalize(grid, dim=-1).reshape(BATCH, FRAMES, 3, 5, -1).mean(dim=1)
    embedding = F.normalize(reference["image_features"], dim=-1)  # (B*F, D)
    embedding = embedding.reshape(BATCH, FRAMES, -1).mean(dim=1)

    encoder = CLIPVisualEncoder.from_model(clip_model, mean=mean, std=std, frames_per_snippet=3)
    assert encoder.frame_size == (WIDTH, HEIGHT)  # (W, H), as the decoder takes it
    assert encoder.grid_shape == (3, 5)
    ours_embedding, ours_grid = encoder.encode_with_grid(clips)
    np.testing.assert_allclose(ours_embedding, embedding.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours_grid, grid.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_grid(clips), grid.numpy(), rtol=0, atol=1e-5)
    # Frames the other way round are refused, not silently read transposed.
    with pytest.raises(ValueError, match="frame_size 40x24"):
        encoder.encode(np.ascontiguousarray(clips.transpose(0, 1, 3, 2, 4)))
