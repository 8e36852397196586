"""The VideoMAE encoder against transformers' own preprocessing and token layout.

A tiny random VideoMAE with 3 temporal tokens over a 4 x 4 patch grid: the encoder's
(T', H', W') reading of the last hidden state is checked against the layout of the library's
own Conv3d patch map, and its outputs against the library's image processor and forward pass.
(The encoder takes the model's square ``image_size``; the CLIP test covers non-square frames.)
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

from pipeline.encoders.videomae import VideoMAEVisualEncoder

BATCH, FRAMES, SIZE, PATCH, TUBELET, DIM = 2, 6, 32, 8, 2, 16
TIME, SIDE = FRAMES // TUBELET, SIZE // PATCH  # 3 temporal tokens, 4 x 4 patches


def test_grid_and_embedding_match_transformers_token_layout() -> None:
    torch.manual_seed(0)
    video_model = VideoMAEModel(
        VideoMAEConfig(
            hidden_size=DIM,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=24,
            image_size=SIZE,
            patch_size=PATCH,
            num_frames=FRAMES,
            tubelet_size=TUBELET,
        )
    ).eval()
    processor = VideoMAEImageProcessor(
        size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
    )
    clips = np.random.default_rng(0).integers(0, 256, (BATCH, FRAMES, SIZE, SIZE, 3), np.uint8)
    pixels = processor([list(clip) for clip in clips], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (BATCH, FRAMES, 3, SIZE, SIZE)
    with torch.no_grad():
        patches = video_model.embeddings.patch_embeddings
        # the library's Conv3d patch map (B, D, T', H', W') and its flattened tokens (B, N, D)
        patch_map = patches.projection(pixels.permute(0, 2, 1, 3, 4))
        tokens = patches(pixels)
        hidden = video_model(pixel_values=pixels).last_hidden_state  # (B, N, D)
    assert patch_map.shape == (BATCH, DIM, TIME, SIDE, SIDE)
    # Token n is map cell (t, h, w) in (T', H', W') order: reshaping so recovers the map.
    torch.testing.assert_close(
        tokens.reshape(BATCH, TIME, SIDE, SIDE, DIM), patch_map.permute(0, 2, 3, 4, 1)
    )
    expected_grid = hidden.reshape(BATCH, TIME, SIDE, SIDE, DIM).mean(dim=1)  # (B, H', W', D)

    encoder = VideoMAEVisualEncoder.from_model(
        video_model, image_mean=processor.image_mean, image_std=processor.image_std
    )
    assert (encoder.grid_shape, encoder.temporal_tokens) == ((SIDE, SIDE), TIME)
    embedding, grid = encoder.encode_with_grid(clips)
    np.testing.assert_allclose(grid, expected_grid.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(embedding, hidden.mean(dim=1).numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_grid(clips), grid, rtol=0, atol=1e-6)
    # Cells differ from each other and from their transposes: the check above is not vacuous.
    assert not np.allclose(grid, grid.transpose(0, 2, 1, 3), atol=1e-3)
