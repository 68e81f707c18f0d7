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
computed once per image (:func:`prepare_image_side`) and each head attends with all prompts'
tokens in one product. Where ``heads x tokens`` is not below the internal width (very small
test models, :func:`folding_pays`), callers use the model's transformer instead. Mathematically
the outputs are those of the model's transformer; in float32 they differ by rounding only
(~1e-5 on logits of ±20). The parameters are read from the model's own modules.

For a prompt or two, the prompt-token side is a few thousand numbers per op, and those ops run
on one thread (:func:`anyseg.ops.threads.one_thread`): waking the worker threads costs more
than the op. The products with the image cells keep every thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from anyseg.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from anyseg.ops.threads import FEW_TOKENS, one_thread


@dataclass(frozen=True)
class ImageSide:
    """Image-side tensors of the first block, the same for every prompt of one image: computed
    once per image instead of once per prompt batch.

    Attributes:
        keys: (1, N, C) image embedding (with the dense prompt embedding), tokens last.
        key_pe: (1, N, C) positional encoding of the image cells.
        t2i_keys: (H, d, N) first block's token->image keys, per head.
        t2i_values: (H, N, d) first block's token->image values, per head.
        i2t_queries: (H, d, N) first block's image->token queries, per head.
    """

    keys: Tensor
    key_pe: Tensor
    t2i_keys: Tensor
    t2i_values: Tensor
    i2t_queries: Tensor


def prepare_image_side(
    transformer: TwoWayTransformer, image_embedding: Tensor, image_pe: Tensor
) -> ImageSide:
    """Project the (1, C, h, w) image for the first block (see :class:`ImageSide`)."""
    # Contiguous tokens-last copies: every prompt's residual adds and positional sums read them
    # (a transposed view makes those adds several times slower).
    keys = image_embedding.flatten(2).transpose(1, 2).contiguous()  # (1, C, h, w) -> (1, hw, C)
    key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
    first = transformer.layers[0]
    assert isinstance(first, TwoWayAttentionBlock)
    n = keys.shape[1]
    t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
    h, d = _heads(t2i)
    with_pe = keys + key_pe
    hi, di = _heads(i2t)
    return ImageSide(
        keys=keys,
        key_pe=key_pe,
        t2i_keys=t2i.k_proj(with_pe).reshape(n, h, d).permute(1, 2, 0),  # (1, N, D) -> (H, d, N)
        t2i_values=t2i.v_proj(keys).reshape(n, h, d).transpose(0, 1),  # (1, N, D) -> (H, N, d)
        i2t_queries=i2t.q_proj(with_pe).reshape(n, hi, di).permute(1, 2, 0),  # -> (H, d, N)
    )


def folding_pays(transformer: TwoWayTransformer, tokens: int) -> bool:
    """Folding costs heads x tokens columns per image cell instead of the internal width, so it
    pays for SAM's decoder (8 x 7 < 128) but not for very small test models."""
    attn = transformer.final_attn_token_to_image
    return len(transformer.layers) > 0 and attn.num_heads * tokens < attn.internal_dim


def two_way_transformer(
    transformer: TwoWayTransformer,
    image: ImageSide,
    point_embedding: Tensor,
    keep: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """``TwoWayTransformer.forward`` for B prompts on one image (requires :func:`folding_pays`).

    Args:
        transformer: the model's transformer (its parameters are used).
        image: the image side from :func:`prepare_image_side`.
        point_embedding: (B, T, C) output and prompt tokens.
        keep: return only these tokens, in this order (the decoder reads the final states of
            its IoU token and of the mask tokens it outputs, never those of the prompt tokens),
            which the final attention then computes alone; default all T.

    Returns:
        tokens (B, len(keep), C) and image features (B, h*w, C).
    """
    queries = point_embedding
    keys = image.keys
    serial = point_embedding.shape[0] * point_embedding.shape[1] <= FEW_TOKENS
    for i, layer in enumerate(transformer.layers):
        assert isinstance(layer, TwoWayAttentionBlock)
        queries, keys = _block(layer, queries, keys, point_embedding, image, i == 0, serial)
    with one_thread(serial):
        if keep is not None:
            rows = torch.tensor(keep, device=queries.device)
            queries, query_pe = queries[:, rows], point_embedding[:, rows]
        else:
            query_pe = point_embedding
        q = queries + query_pe
    final = transformer.final_attn_token_to_image
    attn = _token_to_image(final, q, keys + image.key_pe, keys, serial)
    with one_thread(serial):
        queries = transformer.norm_final_attn(queries + attn)
    return queries, keys


def _block(
    layer: TwoWayAttentionBlock,
    queries: Tensor,
    keys: Tensor,
    query_pe: Tensor,
    image: ImageSide,
    first: bool,
    serial: bool,
) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward`` with the re-associated cross-attentions; the first
    block reads the shared image projections of ``image``. ``serial``: the prompt-token ops
    run on one thread."""
    with one_thread(serial):
        queries = layer.attend_tokens(queries, query_pe)
        q = queries + query_pe

    t2i = layer.cross_attn_token_to_image
    if first:
        attn = _token_to_shared_image(t2i, q, image, serial)
        k = image.keys  # unused: the first block's image->token queries are precomputed
    else:
        k = keys + image.key_pe  # the image side does not change until the block's end
        attn = _token_to_image(t2i, q, k, keys, serial)
    with one_thread(serial):
        queries = layer.norm2(queries + attn)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + query_pe

    i2t = layer.cross_attn_image_to_token
    shared = image if first else None
    keys = layer.norm4(_image_to_token_residual(i2t, k, q, queries, keys, shared, serial))
    return queries, keys


def _heads(attn: Attention) -> tuple[int, int]:
    return attn.num_heads, attn.internal_dim // attn.num_heads


def _token_to_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor, serial: bool) -> Tensor:
    """Tokens q (B, T, C) attend to per-prompt image cells k, v (B, N, C) -> (B, T, C)."""
    b, t, c = q.shape
    h, d = _heads(attn)
    with one_thread(serial):
        qh = attn.q_proj(q).reshape(b, t, h, d) / math.sqrt(d)  # (B, T, D) -> (B, T, H, d)
        wk = attn.k_proj.weight.reshape(h, d, c)  # (D, C) -> (H, d, C)
        folded = torch.einsum("bthd,hdc->bhtc", qh, wk).reshape(b, h * t, c)  # (B, H*T, C)
    # The key bias adds q.bk to a whole softmax row: it cancels.
    scores = folded @ k.transpose(1, 2)  # (B, H*T, N)
    mixed = torch.softmax(scores, dim=-1) @ v  # (B, H*T, C): softmax rows sum to 1 ...
    with one_thread(serial):
        wv = attn.v_proj.weight.reshape(h, d, c)
        out = torch.einsum("bhtc,hdc->bthd", mixed.reshape(b, h, t, c), wv)  # (B, T, H, d)
        out = out + attn.v_proj.bias.reshape(h, d)  # ... so the value bias passes through
        return attn.out_proj(out.reshape(b, t, h * d))  # (B, T, H, d) -> (B, T, D) -> (B, T, C)


def _token_to_shared_image(attn: Attention, q: Tensor, image: ImageSide, serial: bool) -> Tensor:
    """Tokens q (B, T, C) attend to the shared image: all B*T queries of a head form one
    matrix product with the precomputed keys and values (no per-prompt image copy)."""
    b, t, _ = q.shape
    h, d = _heads(attn)
    with one_thread(serial):
        qh = attn.q_proj(q).reshape(b * t, h, d).transpose(0, 1) / math.sqrt(d)  # (H, B*T, d)
    out = torch.softmax(qh @ image.t2i_keys, dim=-1) @ image.t2i_values  # (H, B*T, d)
    with one_thread(serial):
        return attn.out_proj(out.transpose(0, 1).reshape(b, t, h * d))  # -> (B, T, D)


def _image_to_token_residual(
    attn: Attention,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    residual: Tensor,
    image: ImageSide | None,
    serial: bool,
) -> Tensor:
    """``residual + attn(q, k, v)``: image cells q (Bi, N, C) attend to tokens k, v (B, T, C);
    the residual (Bi, N, C) is added to the output product. With ``image`` (first block) the
    queries are the precomputed shared projections. Returns (B, N, C).

    Scores are laid out (B, H, T, N) so that the softmax over the few tokens runs along a
    strided dim with N contiguous (a per-row softmax over 7 values is very slow on CPU).
    """
    b, t, c = k.shape
    n = residual.shape[1]
    h, d = _heads(attn)
    with one_thread(serial):
        kh = attn.k_proj(k).reshape(b, t, h, d) / math.sqrt(d)  # (B, T, D) -> (B, T, H, d)
        vh = attn.v_proj(v).reshape(b, t, h, d)
        wo = attn.out_proj.weight.reshape(c, h, d)  # (C, D) -> (C, H, d)
        values = torch.einsum("bthd,chd->bhtc", vh, wo)  # (B, H, T, C)
        # Each head's probabilities sum to 1 over T, so the output bias spreads as bias / H.
        values = (values + attn.out_proj.bias / h).reshape(b, h * t, c)  # (B, H*T, C)
        if image is None:
            wq = attn.q_proj.weight.reshape(h, d, c)
            folded = torch.einsum("bthd,hdc->bhtc", kh, wq).reshape(b, h * t, c)  # (B, H*T, C)
            bias = torch.einsum("bthd,hd->bht", kh, attn.q_proj.bias.reshape(h, d))
    if image is not None:
        # Shared image: per head one product of all B*T keys with the projected queries.
        keys = kh.permute(2, 0, 1, 3).reshape(h, b * t, d)  # (B, T, H, d) -> (H, B*T, d)
        scores = (keys @ image.i2t_queries).reshape(h, b, t, n).transpose(0, 1)  # (B, H, T, N)
    else:
        scores = torch.baddbmm(bias.reshape(b, h * t, 1), folded, q.transpose(1, 2))
        scores = scores.reshape(b, h, t, n)  # (B, H*T, N) -> (B, H, T, N)
    probs = torch.softmax(scores, dim=2).reshape(b, h * t, n)  # over the T tokens
    # The residual is the GEMM's accumulator (no separate (B, N, C) product and add).
    return torch.baddbmm(residual, probs.transpose(1, 2), values)  # (B, N, C)
