"""LoCo's unimodal encoders (arXiv 2409.07967, Sec. 3.2 "Multimodal Input Encoding"): each
modality's frozen snippet features pass "stacked uni-modal transformer blocks" on their
own, before any fusion. The text does not detail the blocks; ours are UnAV/UniAV's:
ActionFormer's masked convolution embedding, then full-resolution local pre-LN
transformer blocks (``models.blocks``). The LCC loss (Sec. 3.3, ``models.loco.lcc``) acts
on their outputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.blocks import ChannelLayerNorm, MaskedConv1d, TransformerBlock


class UnimodalEncoder(nn.Module):
    """Masked conv embedding (conv, LayerNorm, ReLU) then local transformer blocks.

    Args:
        in_channels: input feature width D_m of the modality.
        embed_dim: output width C.
        num_embed_convs: embedding convolutions (>= 1).
        embed_kernel_size: their odd kernel size.
        num_blocks: full-resolution transformer blocks.
        num_heads: attention heads.
        attn_window: local attention window (odd).
        mlp_ratio: MLP width multiple.
        dropout: dropout in the blocks.
        path_drop: stochastic depth of the blocks.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        num_embed_convs: int = 2,
        embed_kernel_size: int = 3,
        num_blocks: int = 2,
        num_heads: int = 4,
        attn_window: int = 9,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        path_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if num_embed_convs < 1 or num_blocks < 0:
            raise ValueError(
                f"num_embed_convs must be >= 1 and num_encoder_blocks >= 0, got "
                f"{num_embed_convs}, {num_blocks}"
            )
        self.convs = nn.ModuleList(
            MaskedConv1d(
                in_channels if i == 0 else embed_dim, embed_dim, embed_kernel_size, bias=False
            )
            for i in range(num_embed_convs)
        )
        self.norms = nn.ModuleList(ChannelLayerNorm(embed_dim) for _ in range(num_embed_convs))
        self.blocks = nn.ModuleList(
            TransformerBlock(
                embed_dim, num_heads, attn_window, False, mlp_ratio, dropout, path_drop
            )
            for _ in range(num_blocks)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` (B, D_m, T), ``mask`` (B, T) -> (B, C, T), zero at padded positions."""
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x, _ = conv(x, mask)
            x = norm(x).relu() * mask[:, None, :].to(x.dtype)
        for block in self.blocks:
            x, _ = block(x, mask)
        return x
