"""Masked multi-head cross-attention between two snippet sequences, global or in a band.

One modality's features are the queries, the other's the keys and values (Vaswani et al.,
arXiv 1706.03762, Sec. 3.2.2); with ``window`` set, query ``t`` sees only the keys within
``window // 2`` snippets of ``t`` (both sequences on one time grid). Used by the MRAV-FF
fusion neck (``models.necks_mravff``: visual-pyramid queries, audio keys and values) and as
LoCo's ``global`` cross-attention ablation (``models.loco``). Tensors are channel-first
``(B, C, T)``; masks ``(B, T)`` bool, True for valid snippets. A query never attends to a
padded key; padded queries output 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, C, T) -> (B, H, T, C // H)."""
    batch, channels, length = x.shape
    return x.view(batch, num_heads, channels // num_heads, length).transpose(2, 3)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, C // H) -> (B, C, T)."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(2, 3).reshape(batch, heads * head_dim, length)


def masked_softmax(scores: Tensor, key_valid: Tensor) -> Tensor:
    """Softmax over the last axis ignoring invalid keys.

    A row without any valid key (a fully padded video) gets uniform weights instead of NaN;
    its values are zero anyway because every caller zeroes padded values.
    """
    scores = scores.masked_fill(~key_valid, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)


class MaskedCrossAttention(nn.Module):
    """Multi-head attention of ``query`` snippets over all valid ``context`` snippets.

    Args:
        query_dim: width of the query sequence.
        context_dim: width of the key/value sequence.
        embed_dim: shared attention width, a multiple of ``num_heads``.
        num_heads: attention heads.
        out_dim: width of the output projection; None keeps ``query_dim``.
        attn_dropout: dropout on the attention weights.
        window: odd band width: query ``t`` attends to keys ``t - window // 2 .. t + window //
            2`` only (queries and keys on the same grid); None attends to every key.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        embed_dim: int,
        num_heads: int,
        out_dim: int | None = None,
        attn_dropout: float = 0.0,
        window: int | None = None,
    ) -> None:
        super().__init__()
        if window is not None and (window < 1 or window % 2 == 0):
            raise ValueError(f"cross-attention window must be a positive odd number, got {window}")
        self.window = window
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Conv1d(query_dim, embed_dim, 1)
        # no key bias: a shift shared by all keys of a query cancels in the softmax
        self.key = nn.Conv1d(context_dim, embed_dim, 1, bias=False)
        self.value = nn.Conv1d(context_dim, embed_dim, 1)
        self.proj = nn.Conv1d(embed_dim, out_dim or query_dim, 1)
        self.attn_drop = nn.Dropout(attn_dropout)

    def forward(
        self, query: Tensor, query_mask: Tensor, context: Tensor, context_mask: Tensor
    ) -> Tensor:
        """``query`` (B, C_q, T_q), ``query_mask`` (B, T_q), ``context`` (B, C_k, T_k),
        ``context_mask`` (B, T_k) -> (B, out_dim, T_q), zero at padded queries."""
        context_keep = context_mask[:, None, :].to(context.dtype)
        q = split_heads(self.query(query), self.num_heads)  # (B, H, T_q, hd)
        k = split_heads(self.key(context) * context_keep, self.num_heads)  # (B, H, T_k, hd)
        v = split_heads(self.value(context) * context_keep, self.num_heads)  # (B, H, T_k, hd)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.head_dim)  # (B, H, T_q, T_k)
        key_valid = context_mask[:, None, None, :]  # (B, 1, 1, T_k)
        if self.window is not None:
            if query.shape[-1] != context.shape[-1]:
                raise ValueError(
                    f"windowed cross-attention needs one time grid, got {query.shape[-1]} "
                    f"queries and {context.shape[-1]} keys"
                )
            positions = torch.arange(query.shape[-1], device=query.device)
            band = (positions[:, None] - positions[None, :]).abs() <= self.window // 2
            key_valid = key_valid & band  # (B, 1, T_q, T_k)
        weights = self.attn_drop(masked_softmax(scores, key_valid))
        out = self.proj(merge_heads(weights @ v))  # (B, out_dim, T_q)
        return out * query_mask[:, None, :].to(out.dtype)
