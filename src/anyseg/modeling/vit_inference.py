"""The ViT encoder's attention and MLP evaluated for inference in cache-sized pieces.

Same maths, in the same order, as the original's explicit attention (``(q * scale) @ k^T``,
plus the decomposed relative-position bias, softmax, times ``v``) and MLP, but no tensor is
larger than :data:`CHUNK_BYTES`:

- The global blocks' attention logits are (heads, 4096, 4096) per image for the released models
  (805 MB in float32 for vit_b); here they are built one query chunk at a time, with the
  relative-position bias added in place (``(q_h, q_w, k_h) + (q_h, q_w, k_w)`` broadcast), never
  materialised as a bias tensor of their size.
- Projections and the MLP run over row chunks, so its (tokens, 4 x width) hidden layer is never
  whole.

Why the size matters on a CPU: glibc serves allocations above 32 MB with fresh ``mmap`` pages and
returns them on free, so each use of a large buffer pays a page fault per 4 KiB page (and the
kernel's zeroing) before any arithmetic; in the original encoder that is a large share of its
time. Small buffers are reused from the heap and stay in cache.

Inference only: the training path (with gradients) uses the fused attention of
:class:`anyseg.modeling.image_encoder.Attention`, whose backward keeps no (N, N) probabilities.
The modules are the model's own (``qkv``, ``proj``, ``mlp``), called as modules, so a caller
may swap them for other implementations of the same maps (a quantized linear layer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Each intermediate stays below this size (well under glibc's largest mmap threshold, 32 MB).
CHUNK_BYTES = 16 * 1024 * 1024


def rows_per_chunk(bytes_per_row: int) -> int:
    """How many rows of ``bytes_per_row`` fit in :data:`CHUNK_BYTES` (at least one)."""
    return max(1, CHUNK_BYTES // max(1, bytes_per_row))


def split_qkv(qkv: nn.Module, tokens: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """The qkv projection of (B, N, C) tokens as three (B, N, heads, C/heads) tensors, computed
    in row chunks (one (B*N, 3C) output would exceed :data:`CHUNK_BYTES`)."""
    b, n, c = tokens.shape
    flat = tokens.reshape(b * n, c)
    q, k, v = (tokens.new_empty(b * n, c) for _ in range(3))
    step = rows_per_chunk(3 * c * tokens.element_size())
    for s in range(0, b * n, step):
        part = qkv(flat[s : s + step])  # (r, 3C): q, k, v, each heads-major
        q[s : s + step], k[s : s + step], v[s : s + step] = part.chunk(3, dim=1)
    d = c // heads
    return q.view(b, n, heads, d), k.view(b, n, heads, d), v.view(b, n, heads, d)


def rel_pos_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float,
    rel_bias: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """Softmax attention ``softmax((q * scale) k^T + bias) v`` per batch item and head.

    Args:
        q, k, v: (B, N, heads, d) unscaled queries, keys and values (``q`` is scaled in place).
        scale: the query scale (head_dim ** -0.5).
        rel_bias: the decomposed relative-position bias, ``bias_h`` (B, heads, N, k_h) and
            ``bias_w`` (B, heads, N, k_w) with N = k_h * k_w keys in row-major order, or None.

    Returns:
        (B, N, heads * d).
    """
    b, n, heads, d = q.shape
    q.mul_(scale)
    out = q.new_empty(b, n, heads, d)
    rows = rows_per_chunk(heads * n * q.element_size())
    for i in range(b):
        qi = q[i].transpose(0, 1)  # (N, heads, d) -> (heads, N, d), a strided view
        ki = k[i].permute(1, 2, 0)  # (N, heads, d) -> (heads, d, N)
        vi = v[i].transpose(0, 1)
        for s in range(0, n, rows):
            attn = torch.bmm(qi[:, s : s + rows], ki)  # (heads, r, N)
            if rel_bias is not None:
                bias_h, bias_w = rel_bias
                r = attn.shape[1]
                k_h, k_w = bias_h.shape[-1], bias_w.shape[-1]
                grid = attn.view(heads, r, k_h, k_w)
                grid.add_(bias_h[i, :, s : s + rows, :, None])
                grid.add_(bias_w[i, :, s : s + rows, None, :])
            attn = attn.softmax(dim=-1)
            out[i, s : s + rows] = torch.bmm(attn, vi).transpose(0, 1)  # -> (r, heads, d)
    return out.view(b, n, heads * d)


def residual_mlp(x: Tensor, norm: nn.Module, mlp: nn.Module, hidden: int) -> Tensor:
    """``x + mlp(norm(x))`` for (..., C) tokens, in row chunks whose (r, hidden) activation
    stays within :data:`CHUNK_BYTES`."""
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    out = torch.empty_like(flat)
    step = rows_per_chunk(hidden * x.element_size())
    for s in range(0, flat.shape[0], step):
        rows = flat[s : s + step]
        torch.add(rows, mlp(norm(rows)), out=out[s : s + step])
    return out.view(x.shape)
