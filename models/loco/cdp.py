"""LoCo's cross-modal sliding-window attention and its Cross-modal Dynamic Perception (CDP)
(arXiv 2409.07967, Sec. 3.4, Eq. 6-8), on one pyramid level.

One modality (the query) attends to the other (the context, keys and values):

* Base windows (Sec. 3.4, Eq. 6): the level's sequence, padded behind to a multiple of the
  base window size ``w``, is cut into non-overlapping base windows; queries come from the
  query modality and keys and values from the context through linear layers (1x1
  convolutions here), split into H heads.
* Window Adaptation, WA (Eq. 7): average pooling over each base window (of the query
  modality's features, masked: the mean over its valid snippets), LeakyReLU and a 1x1
  convolution predict, per base window and per head, a temporal size ``s`` and offset
  ``o``. The text gives no parameterisation; ours: ``s = exp(.)`` (in units of ``w``, so
  always positive) and ``o`` in units of ``w``, the convolution zero-initialised so that
  training starts at ``s = 1, o = 0``.
* Target windows (Sec. 3.4, "Adaptive Window Attention"): head ``h`` of base window ``n``
  samples ``w`` keys and values uniformly from its target window, which has centre
  ``c_n + o * w`` (``c_n`` the base window's centre) and width ``s * w``: the centres of
  ``w`` equal bins, read by linear interpolation. The ``w`` samples of every window are
  stacked back into key and value sequences of the padded length (sample ``k`` of window
  ``n`` at position ``n * w + k``). At ``s = 1, o = 0`` the samples are the base window's
  own snippets, so the stacked sequences equal the projected context exactly.
* Cross-modal sliding-window attention, CSWA (Eq. 8, "following Longformer", Beltagy et
  al., arXiv 2004.05150): the query at position ``t`` attends to the ``w`` stacked keys
  and values at positions ``t - w // 2, ..., t - w // 2 + w - 1`` (for even ``w``: ``w / 2``
  before ``t``, ``t`` itself and ``w / 2 - 1`` after it). The residual, LayerNorm and FFN
  of Eq. (8) live in ``models.loco.pyramid.CrossModalLayer``.

Without WA (``adaptive=False``) this is the "Fixed" variant of Table 2(c): sliding-window
cross-attention of width ``w`` on the projected context itself; CDP therefore costs the same
attention plus WA and the sampling (``bench/cdp_cost.py``).

Masking: context features are zeroed at padded snippets and positions outside the sequence
read zero. A stacked key at position ``p`` is used only when ``p`` is a valid snippet and
(CDP) its interpolation puts weight on a valid snippet; WA pools only valid snippets. So a
valid query never attends to padding, and its output does not depend on how much padding
follows. Padded queries output 0.

Cost: no T x T matrix; the window is gathered by ``w`` shifted elementwise products, which
on CPU is several times faster than unfold + einsum (``torch.utils.flop_counter`` does not
count these products; :meth:`SlidingWindowCrossAttention.attention_flops` gives them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.cross_attention import masked_softmax


def window_attention_weights(q: Tensor, k: Tensor, key_valid: Tensor, window_size: int) -> Tensor:
    """Longformer-style sliding-window attention weights (LoCo Eq. 8): query ``t`` attends
    to the keys at ``t - w // 2 + i``, ``i = 0 .. w - 1``; positions outside ``[0, T)`` and
    keys not ``key_valid`` get weight 0.

    Args:
        q: (B, H, T, hd) queries.
        k: (B, H, T, hd) keys on the same time grid.
        key_valid: (B, H or 1, T) bool, which keys may be attended.
        window_size: w >= 1.

    Returns:
        (B, H, T, w) softmax weights over each query's window (``i`` last); a query
        without any valid key gets uniform weights (callers zero invalid values).
    """
    length = q.shape[2]
    before = window_size // 2
    after = window_size - 1 - before
    k_padded = F.pad(k, (0, 0, before, after))  # (B, H, T + w - 1, hd)
    scores = torch.stack(
        [(q * k_padded[:, :, i : i + length]).sum(-1) for i in range(window_size)], dim=-1
    ) / math.sqrt(q.shape[-1])  # (B, H, T, w)
    valid = F.pad(key_valid, (before, after), value=False).unfold(-1, window_size, 1)
    return masked_softmax(scores, valid)  # valid: (B, H or 1, T, w)


def apply_window_weights(weights: Tensor, v: Tensor) -> Tensor:
    """``weights`` (B, H, T, w) of :func:`window_attention_weights` applied to the values
    ``v`` (B, H, T, hd) of the same windows -> (B, H, T, hd)."""
    window_size, length = weights.shape[-1], v.shape[2]
    before = window_size // 2
    v_padded = F.pad(v, (0, 0, before, window_size - 1 - before))  # (B, H, T + w - 1, hd)
    out = weights[..., 0:1] * v_padded[:, :, 0:length]
    for i in range(1, window_size):
        out = out + weights[..., i : i + 1] * v_padded[:, :, i : i + length]
    return out


def window_sample_positions(size: Tensor, offset: Tensor, window_size: int) -> Tensor:
    """Sample positions of every head's target window (LoCo Sec. 3.4, uniform sampling).

    Args:
        size: (B, H, N) target-window width in units of ``window_size``.
        offset: (B, H, N) target-window centre shift in units of ``window_size``.
        window_size: base window width w.

    Returns:
        (B, H, N, w) positions ``c_n + o * w + s * (k + 0.5 - w / 2)``, ``k = 0 .. w - 1``,
        ``c_n = n * w + (w - 1) / 2``, in snippets of the padded sequence: the centres of
        ``w`` equal bins of the target window; ``n * w + k`` at ``s = 1, o = 0``.
    """
    num_windows = size.shape[-1]
    centre = torch.arange(num_windows, device=size.device, dtype=size.dtype) * window_size
    centre = centre + (window_size - 1) / 2  # (N,)
    bins = torch.arange(window_size, device=size.device, dtype=size.dtype) + 0.5
    bins = bins - window_size / 2  # (w,) bin centres relative to the window centre
    return (centre[:, None] + offset[..., None] * window_size) + size[..., None] * bins


def sample_linear(features: Tensor, valid: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Read every head's features at fractional ``positions`` by linear interpolation.

    Args:
        features: (B, H, F, T) per-head features, zero at invalid snippets; positions
            outside ``[0, T - 1]`` read zero.
        valid: (B, T) bool.
        positions: (B, H, M) per-head positions in snippets.

    Returns:
        ``samples`` (B, H, M, F) and ``touches_valid`` (B, H, M) bool (the interpolation
        puts weight on at least one valid snippet). Integer positions read their snippet
        exactly.
    """
    batch, heads, width, length = features.shape
    # one zero row per (video, head) after its T rows: the row out-of-range corners read
    table = F.pad(features, (0, 1)).transpose(2, 3).reshape(-1, width)  # (B*H*(T+1), F)
    lower = positions.detach().floor()
    upper_weight = positions - lower  # (B, H, M); carries the gradient to the positions
    corners = torch.stack([lower.long(), lower.long() + 1])  # (2, B, H, M)
    corners = torch.where((corners >= 0) & (corners < length), corners, length)
    first_row = torch.arange(batch * heads, device=features.device).view(1, batch, heads, 1)
    rows = first_row * (length + 1) + corners  # (2, B, H, M)
    # both corners in one gather; ``unbind`` (not indexing) keeps the backward to one copy
    read = table.index_select(0, rows.flatten()).view(*rows.shape, width)  # (2, B, H, M, F)
    lower_rows, upper_rows = read.unbind(0)
    samples = torch.lerp(lower_rows, upper_rows, upper_weight[..., None])  # (B, H, M, F)
    valid_rows = F.pad(valid, (0, 1), value=False)  # (B, T + 1)
    corner_valid = valid_rows.gather(1, corners.permute(1, 0, 2, 3).reshape(batch, -1))
    corner_valid = corner_valid.view(batch, 2, heads, -1).transpose(0, 1)  # (2, B, H, M)
    weight = upper_weight.detach()
    return samples, (corner_valid[0] & (weight < 1)) | (corner_valid[1] & (weight > 0))


class SlidingWindowCrossAttention(nn.Module):
    """Multi-head cross-modal sliding-window attention, on the context itself ("Fixed") or
    on CDP's sampled keys and values (LoCo Sec. 3.4, Eq. 6-8).

    Args:
        embed_dim: width C of both modalities, a multiple of ``num_heads``.
        num_heads: attention heads H.
        window_size: base window w (snippets of this level): the window of the sliding
            attention and, with ``adaptive``, of the base windows and the samples per window.
        adaptive: CDP (Window Adaptation and sampled keys/values) when True, the "Fixed"
            sliding window when False.
        attn_dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        window_size: int,
        adaptive: bool = True,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        if window_size < 1:
            raise ValueError(f"cdp_window must be >= 1, got {window_size}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.window_size = window_size
        # LoCo Eq. (6): Q from the query modality, K and V from the context, Linear layers
        self.query = nn.Conv1d(embed_dim, embed_dim, 1)
        # no key bias: a shift shared by all keys of a query cancels in the softmax
        self.key = nn.Conv1d(embed_dim, embed_dim, 1, bias=False)
        self.value = nn.Conv1d(embed_dim, embed_dim, 1)
        self.proj = nn.Conv1d(embed_dim, embed_dim, 1)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.window_regressor: nn.Conv1d | None = None
        if adaptive:
            # LoCo Eq. (7), Sec. 3.4: WA = avg-pool (in window_geometry) -> LeakyReLU -> 1x1
            # conv to a (size, offset) per head; zero init: s = 1, o = 0 ("Fixed") at start
            self.window_regressor = nn.Conv1d(embed_dim, 2 * num_heads, 1)
            nn.init.zeros_(self.window_regressor.weight)
            nn.init.zeros_(self.window_regressor.bias)

    def window_geometry(self, query: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Per base window and head ``(size, offset)`` (B, H, N), in units of ``w``, from the
        query features (B, C, T) and their mask (B, T) (LoCo Eq. 7)."""
        w = self.window_size
        padding = (0, -query.shape[-1] % w)
        keep = F.pad(mask, padding, value=False)[:, None, :].to(query.dtype)  # (B, 1, N * w)
        query = F.pad(query, padding) * keep  # (B, C, N * w)
        # LoCo Eq. (7): average pooling over each base window (its valid snippets only)
        pooled = F.avg_pool1d(query, w) / F.avg_pool1d(keep, w).clamp(min=1.0 / w)  # (B, C, N)
        raw = self.window_regressor(F.leaky_relu(pooled))  # LoCo Eq. (7): (B, 2H, N)
        return raw[:, : self.num_heads].exp(), raw[:, self.num_heads :]

    def attention_flops(self, batch: int, length: int) -> int:
        """FLOPs of the windowed products (scores and weighted values) for ``batch`` videos
        of ``length`` snippets, which ``torch.utils.flop_counter`` does not count."""
        return 4 * batch * length * self.window_size * self.num_heads * self.head_dim

    def forward(self, query: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """``query``, ``context`` (B, C, T) of one level, ``mask`` (B, T) -> (B, C, T), zero
        at padded positions."""
        batch, channels, length = query.shape
        heads, head_dim = self.num_heads, self.head_dim
        keep = mask[:, None, :].to(query.dtype)
        q = self.query(query).view(batch, heads, head_dim, length).transpose(2, 3)  # (B,H,T,hd)
        k = (self.key(context) * keep).view(batch, heads, head_dim, length)  # (B, H, hd, T)
        v = (self.value(context) * keep).view(batch, heads, head_dim, length)  # (B, H, hd, T)
        if self.window_regressor is None:
            k, v = k.transpose(2, 3), v.transpose(2, 3)  # (B, H, T, hd)
            key_valid = mask[:, None, :]  # (B, 1, T)
        else:
            size, offset = self.window_geometry(query, mask)  # (B, H, N) each
            # LoCo Sec. 3.4: w uniform samples of each head's target window, stacked back
            # into sequences (position n * w + k); the padded tail is never a valid key
            positions = window_sample_positions(size, offset, self.window_size)
            positions = positions.flatten(2)[..., :length]  # (B, H, T)
            samples, touches_valid = sample_linear(torch.cat([k, v], 2), mask, positions)
            k, v = samples.split(head_dim, dim=-1)  # (B, H, T, hd) each
            key_valid = touches_valid & mask[:, None, :]  # (B, H, T)
            v = v * key_valid[..., None].to(v.dtype)  # a window without valid keys outputs 0
        # LoCo Eq. (8): cross-modal sliding-window attention over the (sampled) keys
        weights = window_attention_weights(q, k, key_valid, self.window_size)
        out = apply_window_weights(self.attn_drop(weights), v)  # (B, H, T, hd)
        out = self.proj(out.transpose(2, 3).reshape(batch, channels, length))  # (B, C, T)
        return out * keep
