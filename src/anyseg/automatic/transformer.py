"""The mask decoder's two-way transformer, re-associated for many prompts on one image.

Automatic mask generation decodes hundreds of single-point prompts against one image
embedding. The model's :class:`anyseg.modeling.transformer.TwoWayTransformer` computes, per
prompt, full projections of the 4096 image tokens (keys, values, queries, output: four
(4096 x 256) x (256 x 128) products per attention) although each attention only mixes them with
a handful of prompt tokens. Here the same function is evaluated with the weight matrices folded
into the *prompt-token* side, so that the per-prompt work on the image side is a product with
``heads x tokens`` (8 x 7 = 56) columns instead of 128 or 256:

- token -> image: ``softmax(q Wk (x + pe)^T) (x Wv)`` = ``softmax((q Wk) (x + pe)^T) x Wv``
  (the key bias adds a constant per softmax row, which cancels; rows of the softmax sum to 1,
  so the value bias passes through);
- image -> token: ``softmax((x + pe) Wq k^T)`` uses ``Wq k^T`` (256 x 56) and the output
  ``P (v Wo)`` uses ``v Wo`` (56 x 256) per head.

While the image side is still shared by all prompts (the first block), its projections are
computed once instead, as the model does; and where ``heads x tokens`` is not below the internal
width (very small test models) the model's own attention runs unchanged. Mathematically the
outputs are those of the model's transformer; in float32 they differ by rounding only (~1e-5 on
logits of ±20). The parameters are read from the model's own modules.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from anyseg.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer


def two_way_transformer(
    transformer: TwoWayTransformer,
    image_embedding: Tensor,
    image_pe: Tensor,
    point_embedding: Tensor,
) -> tuple[Tensor, Tensor]:
    """Same contract as ``TwoWayTransformer.forward``.

    Args:
        transformer: the model's transformer (its parameters are used).
        image_embedding: (1, C, h, w) shared by all prompts (or (B, C, h, w)).
        image_pe: (1, C, h, w).
        point_embedding: (B, T, C) output and prompt tokens.

    Returns:
        tokens (B, T, C) and image features (B, h*w, C).
    """
    keys = image_embedding.flatten(2).permute(0, 2, 1)  # (Bi, C, h, w) -> (Bi, hw, C)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)  # (1, C, h, w) -> (1, hw, C)
    queries = point_embedding
    for layer in transformer.layers:
        assert isinstance(layer, TwoWayAttentionBlock)
        queries, keys = _block(layer, queries, keys, point_embedding, key_pe)
    q = queries + point_embedding
    attn = _token_to_image(transformer.final_attn_token_to_image, q, keys + key_pe, keys)
    queries = transformer.norm_final_attn(queries + attn)
    if keys.shape[0] != queries.shape[0]:  # depth 0: the image side was never updated
        keys = keys.expand(queries.shape[0], -1, -1)
    return queries, keys


def _block(
    layer: TwoWayAttentionBlock, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward`` with the re-associated cross-attentions."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)

    q = queries + query_pe
    k = keys + key_pe  # the image side does not change until the block's last attention
    queries = layer.norm2(queries + _token_to_image(layer.cross_attn_token_to_image, q, k, keys))

    queries = layer.norm3(queries + layer.mlp(queries))

    q = queries + query_pe
    keys = layer.norm4(
        _image_to_token_residual(layer.cross_attn_image_to_token, k, q, queries, keys)
    )
    return queries, keys


def _heads(attn: Attention) -> tuple[int, int]:
    return attn.num_heads, attn.internal_dim // attn.num_heads


def _folding_pays(attn: Attention, tokens: int) -> bool:
    """Folding costs heads x tokens columns per image cell instead of the internal width."""
    return attn.num_heads * tokens < attn.internal_dim


def _token_to_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Tokens (B, T, C) attend to image cells k, v (Bi, N, C) -> (B, T, C)."""
    b, t, c = q.shape
    h, d = _heads(attn)
    if k.shape[0] == 1 and b > 1:
        return _token_to_shared_image(attn, q, k, v)
    if not _folding_pays(attn, t):
        return attn(q=q, k=k, v=v)  # small model: the plain attention is cheaper
    qh = attn.q_proj(q).reshape(b, t, h, d) / math.sqrt(d)  # (B, T, D) -> (B, T, H, d)
    wk = attn.k_proj.weight.reshape(h, d, c)  # (D, C) -> (H, d, C)
    folded = torch.einsum("bthd,hdc->bhtc", qh, wk).reshape(b, h * t, c)  # (B, H*T, C)
    # The key bias adds q.bk to a whole softmax row: it cancels.
    scores = folded @ k.transpose(1, 2)  # (B, H*T, N)
    mixed = torch.softmax(scores, dim=-1) @ v  # (B, H*T, C): softmax rows sum to 1 ...
    wv = attn.v_proj.weight.reshape(h, d, c)
    out = torch.einsum("bhtc,hdc->bthd", mixed.reshape(b, h, t, c), wv)  # (B, T, H, d)
    out = out + attn.v_proj.bias.reshape(h, d)  # ... so the value bias passes through
    return attn.out_proj(out.reshape(b, t, h * d))  # (B, T, H, d) -> (B, T, D) -> (B, T, C)


def _token_to_shared_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Tokens (B, T, C) attend to one image k, v (1, N, C): the image is projected once and all
    B*T queries of a head form one matrix product (no per-prompt copy of the image)."""
    b, t, _ = q.shape
    n = k.shape[1]
    h, d = _heads(attn)
    qh = attn.q_proj(q).reshape(b * t, h, d).transpose(0, 1) / math.sqrt(d)  # (H, B*T, d)
    kh = attn.k_proj(k).reshape(n, h, d).permute(1, 2, 0)  # (1, N, D) -> (H, d, N)
    vh = attn.v_proj(v).reshape(n, h, d).transpose(0, 1)  # (1, N, D) -> (H, N, d)
    out = torch.softmax(qh @ kh, dim=-1) @ vh  # (H, B*T, d)
    return attn.out_proj(out.transpose(0, 1).reshape(b, t, h * d))  # (H, B*T, d) -> (B, T, D)


def _image_to_token_residual(
    attn: Attention, q: Tensor, k: Tensor, v: Tensor, residual: Tensor
) -> Tensor:
    """``residual + attn(q, k, v)``: image cells q (Bi, N, C) attend to tokens k, v (B, T, C);
    the residual (Bi, N, C) is added inside the output product. Returns (B, N, C)."""
    b, t, c = k.shape
    n = q.shape[1]
    h, d = _heads(attn)
    if not _folding_pays(attn, t):
        return residual + attn(q=q, k=k, v=v)
    kh = attn.k_proj(k).reshape(b, t, h, d) / math.sqrt(d)  # (B, T, D) -> (B, T, H, d)
    vh = attn.v_proj(v).reshape(b, t, h, d)
    if q.shape[0] == 1 and b > 1:
        # Image side shared: project the queries once; per head one product with all B*T keys.
        qh = attn.q_proj(q).reshape(n, h, d).transpose(0, 1)  # (1, N, D) -> (H, N, d)
        scores = qh @ kh.permute(2, 3, 0, 1).reshape(h, d, b * t)  # (H, N, B*T)
        scores = scores.reshape(h, n, b, t).permute(2, 1, 0, 3)  # (B, N, H, T)
        probs = _softmax_short_rows(scores)
    else:
        wq = attn.q_proj.weight.reshape(h, d, c)
        folded = torch.einsum("hdc,bthd->bcht", wq, kh).reshape(b, c, h * t)  # (B, C, H*T)
        bias = torch.einsum("hd,bthd->bht", attn.q_proj.bias.reshape(h, d), kh)
        scores = torch.baddbmm(bias.reshape(b, 1, h * t), q, folded)  # (B, N, H*T)
        probs = _softmax_short_rows(scores.reshape(b, n, h, t))  # (B, N, H, T)
    wo = attn.out_proj.weight.reshape(c, h, d)  # (C, D) -> (C, H, d)
    values = torch.einsum("bthd,chd->bhtc", vh, wo)  # (B, H, T, C)
    # Each head's probabilities sum to 1 over T, so the output bias spreads as bias / H.
    values = (values + attn.out_proj.bias / h).reshape(b, h * t, c)  # (B, H*T, C)
    return torch.bmm(probs.reshape(b, n, h * t), values).add_(residual)  # (B, N, C)


def _softmax_short_rows(x: Tensor) -> Tensor:
    """Softmax over a short last dim (the T prompt tokens): elementwise passes are ~5x faster
    on CPU than ``torch.softmax``'s per-row kernel for rows of ~7 values."""
    e = (x - x.amax(dim=-1, keepdim=True)).exp_()
    return e.div_(e.sum(dim=-1, keepdim=True))
