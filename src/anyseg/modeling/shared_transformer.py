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
from typing import cast

import torch
from torch import Tensor

from anyseg.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from anyseg.ops.lanes import lanes_available, run_lanes, split_range
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
    serial = point_embedding.shape[0] * point_embedding.shape[1] <= FEW_TOKENS
    lanes = lanes_available(image.keys.device) if serial else 1
    if lanes > 1:
        parts = split_range(image.keys.shape[1], lanes)
        return _two_way_in_lanes(transformer, image, point_embedding, keep, parts)
    queries = point_embedding
    keys = image.keys
    for i, layer in enumerate(transformer.layers):
        assert isinstance(layer, TwoWayAttentionBlock)
        queries, keys = _block(layer, queries, keys, point_embedding, image, i == 0, serial)
    with one_thread(serial):
        queries, query_pe = _kept(queries, point_embedding, keep)
        q = queries + query_pe
    final = transformer.final_attn_token_to_image
    attn = _token_to_image(final, q, keys + image.key_pe, keys, serial)
    with one_thread(serial):
        queries = transformer.norm_final_attn(queries + attn)
    return queries, keys


def _kept(queries: Tensor, query_pe: Tensor, keep: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    if keep is None:
        return queries, query_pe
    rows = torch.tensor(keep, device=queries.device)
    return queries[:, rows], query_pe[:, rows]


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
        k = None  # the first block's image->token queries are precomputed
    else:
        k = keys + image.key_pe  # the image side does not change until the block's end
        attn = _token_to_image(t2i, q, k, keys, serial)
    with one_thread(serial):
        queries = _after_token_to_image(layer, queries, attn)
        fold = _fold_image_to_token(layer.cross_attn_image_to_token, queries + query_pe, queries)
    shared = image.i2t_queries if first else None
    keys = layer.norm4(_image_to_token_residual(fold, keys, k, shared))
    return queries, keys


def _after_token_to_image(layer: TwoWayAttentionBlock, queries: Tensor, attn: Tensor) -> Tensor:
    """The block's token steps after its token->image attention: norm2, the MLP and norm3."""
    queries = layer.norm2(queries + attn)
    return cast(Tensor, layer.norm3(queries + layer.mlp(queries)))


def _two_way_in_lanes(
    transformer: TwoWayTransformer,
    image: ImageSide,
    point_embedding: Tensor,
    keep: Sequence[int] | None,
    parts: Sequence[tuple[int, int]],
) -> tuple[Tensor, Tensor]:
    """:func:`two_way_transformer` for a prompt or two, the image cells split into ``parts``
    (:mod:`anyseg.ops.lanes`): per block, one lane region runs the block's image->token
    attention and norm4 and the next token->image attention's products for its cells, with a
    softmax over its cells only; the regions' partial softmaxes are merged exactly (rescaled
    by their maxima). The token-side steps in between run on the calling thread, and the next
    block's self-attention runs before the region (it does not read the image)."""
    pe = point_embedding
    layers = [cast(TwoWayAttentionBlock, layer) for layer in transformer.layers]
    with one_thread():
        queries = layers[0].attend_tokens(pe, pe)
        q = queries + pe
    attn = _token_to_shared_image(layers[0].cross_attn_token_to_image, q, image, True)
    features = image.keys.new_empty(pe.shape[0], *image.keys.shape[1:])
    keys: dict[int, tuple[Tensor, Tensor]] = {}  # per part: its cells' keys and keys + pe
    for i, layer in enumerate(layers):
        last = i + 1 == len(layers)
        with one_thread():
            queries = _after_token_to_image(layer, queries, attn)
            fold = _fold_image_to_token(layer.cross_attn_image_to_token, queries + pe, queries)
            if last:
                queries, query_pe = _kept(queries, pe, keep)
                t2i = transformer.final_attn_token_to_image
            else:
                queries, query_pe = layers[i + 1].attend_tokens(queries, pe), pe
                t2i = layers[i + 1].cross_attn_token_to_image
            folded = _fold_token_queries(t2i, queries + query_pe)

        region = _CellRegion(
            layer, image, fold, folded, first=i == 0, keys=keys, features=features if last else None
        )
        mixed = _PartialSoftmax.merge(run_lanes(region, parts), queries.dtype)
        with one_thread():
            attn = _token_output(t2i, mixed)
    with one_thread():
        queries = transformer.norm_final_attn(queries + attn)
    return queries, features


@dataclass(frozen=True)
class _CellRegion:
    """One block's lane work on image cells [start, stop): its image->token attention and
    norm4, then the next token->image attention's partial softmax over these cells.

    Attributes:
        keys: per part (by its start), the part's keys and keys + PE after the last block run;
            the first block starts from the shared image.
        features: the last block writes its cells' keys here (B, N, C); else None.
    """

    layer: TwoWayAttentionBlock
    image: ImageSide
    fold: _ImageToTokenFold
    folded: Tensor  # (B, H*T', C) the next token->image attention's folded queries
    first: bool
    keys: dict[int, tuple[Tensor, Tensor]]
    features: Tensor | None

    def __call__(self, start: int, stop: int) -> _PartialSoftmax:
        if self.first:
            residual, cells = self.image.keys[:, start:stop], None
            shared = self.image.i2t_queries[..., start:stop]
        else:
            (residual, cells), shared = self.keys[start], None
        part = self.layer.norm4(_image_to_token_residual(self.fold, residual, cells, shared))
        if self.features is not None:
            self.features[:, start:stop] = part
        k = part + self.image.key_pe[:, start:stop]
        self.keys[start] = (part, k)
        return _PartialSoftmax.of(self.folded @ k.transpose(1, 2), part)


@dataclass(frozen=True)
class _PartialSoftmax:
    """``softmax(scores) @ values`` over part of the softmax's columns, unnormalised: row maxima
    ``top`` (..., R, 1), sums ``total`` (..., R, 1) of exp(scores - top), and ``mixed``
    (..., R, C), the exp-weighted values.

    As ``torch.softmax`` does for half and bfloat16 inputs, the exponentials, sums and rescaling
    are float32 (``top``, ``total`` and ``mixed`` are float32 for float32 or narrower scores);
    the exp-weights meet the values in the values' dtype, as softmax's output would.
    """

    top: Tensor
    total: Tensor
    mixed: Tensor

    @staticmethod
    def of(scores: Tensor, values: Tensor) -> _PartialSoftmax:
        wide = scores if scores.dtype == torch.float64 else scores.float()
        top = wide.amax(dim=-1, keepdim=True)
        weights = wide.sub_(top).exp_()  # scores' own storage when already float32
        mixed = weights.to(values.dtype) @ values
        return _PartialSoftmax(top, weights.sum(dim=-1, keepdim=True), mixed.to(top.dtype))

    @staticmethod
    def merge(parts: Sequence[_PartialSoftmax], dtype: torch.dtype | None = None) -> Tensor:
        """The softmax-weighted values over all the parts' columns (in ``dtype``; default the
        parts' own, float32 for narrow inputs)."""
        top = torch.stack([p.top for p in parts]).amax(dim=0)
        scales = [torch.exp(p.top - top) for p in parts]
        mixed = sum(s * p.mixed for s, p in zip(scales, parts, strict=True))
        total = sum(s * p.total for s, p in zip(scales, parts, strict=True))
        out = cast(Tensor, mixed / total)
        return out if dtype is None else out.to(dtype)


def _heads(attn: Attention) -> tuple[int, int]:
    return attn.num_heads, attn.internal_dim // attn.num_heads


def _fold_token_queries(attn: Attention, q: Tensor) -> Tensor:
    """Token queries q (B, T, C) folded with the key weights: (B, H*T, C) rows that score the
    image cells directly (scaled; the key bias adds q.bk to a whole softmax row: it cancels)."""
    b, t, c = q.shape
    h, d = _heads(attn)
    qh = attn.q_proj(q).reshape(b, t, h, d) / math.sqrt(d)  # (B, T, D) -> (B, T, H, d)
    wk = attn.k_proj.weight.reshape(h, d, c)  # (D, C) -> (H, d, C)
    return torch.einsum("bthd,hdc->bhtc", qh, wk).reshape(b, h * t, c)


def _token_output(attn: Attention, mixed: Tensor) -> Tensor:
    """The attention output (B, T, C) from the softmax-weighted image cells (B, H*T, C)."""
    b, ht, c = mixed.shape
    h, d = _heads(attn)
    wv = attn.v_proj.weight.reshape(h, d, c)
    out = torch.einsum("bhtc,hdc->bthd", mixed.reshape(b, h, ht // h, c), wv)  # (B, T, H, d)
    out = out + attn.v_proj.bias.reshape(h, d)  # softmax rows sum to 1: the value bias passes
    return cast(Tensor, attn.out_proj(out.reshape(b, ht // h, h * d)))  # -> (B, T, C)


def _token_to_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor, serial: bool) -> Tensor:
    """Tokens q (B, T, C) attend to per-prompt image cells k, v (B, N, C) -> (B, T, C)."""
    with one_thread(serial):
        folded = _fold_token_queries(attn, q)  # (B, H*T, C)
    mixed = torch.softmax(folded @ k.transpose(1, 2), dim=-1) @ v  # (B, H*T, N) -> (B, H*T, C)
    with one_thread(serial):
        return _token_output(attn, mixed)


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


@dataclass(frozen=True)
class _ImageToTokenFold:
    """The token side of an image->token attention, folded for products with the image cells.

    Attributes:
        keys: (B, T, H, d) projected, scaled token keys.
        folded: (B, H*T, C) the keys folded with the query weights, and ``bias`` (B, H*T) the
            query bias's scores, for per-prompt image cells (the shared first block's image
            queries are projected already and use ``keys``).
        values: (B, H*T, C) token values folded with the output weights (and output bias / H:
            each head's probabilities sum to 1 over T).
    """

    keys: Tensor
    folded: Tensor
    bias: Tensor
    values: Tensor


def _fold_image_to_token(attn: Attention, k: Tensor, v: Tensor) -> _ImageToTokenFold:
    """Fold the tokens k (B, T, C) (with their PE) and v (B, T, C) of an image->token
    attention."""
    b, t, c = k.shape
    h, d = _heads(attn)
    kh = attn.k_proj(k).reshape(b, t, h, d) / math.sqrt(d)  # (B, T, D) -> (B, T, H, d)
    vh = attn.v_proj(v).reshape(b, t, h, d)
    wo = attn.out_proj.weight.reshape(c, h, d)  # (C, D) -> (C, H, d)
    values = torch.einsum("bthd,chd->bhtc", vh, wo)  # (B, H, T, C)
    values = (values + attn.out_proj.bias / h).reshape(b, h * t, c)
    wq = attn.q_proj.weight.reshape(h, d, c)
    folded = torch.einsum("bthd,hdc->bhtc", kh, wq).reshape(b, h * t, c)  # (B, H*T, C)
    bias = torch.einsum("bthd,hd->bht", kh, attn.q_proj.bias.reshape(h, d)).reshape(b, h * t)
    return _ImageToTokenFold(keys=kh, folded=folded, bias=bias, values=values)


def _image_to_token_residual(
    fold: _ImageToTokenFold,
    residual: Tensor,
    cells: Tensor | None,
    shared_queries: Tensor | None,
) -> Tensor:
    """``residual + attn(cells, tokens)``: image cells (B, n, C) with their PE attend to the
    folded tokens; the residual (B or 1, n, C) is added to the output product. With
    ``shared_queries`` (H, d, n) (the first block's projected image queries) instead of
    ``cells``, all prompts' keys of a head form one product with them. Returns (B, n, C).

    Scores are laid out (B, H, T, n) so that the softmax over the few tokens runs along a
    strided dim with n contiguous (a per-row softmax over 7 values is very slow on CPU).
    """
    b, t, h, d = fold.keys.shape
    n = residual.shape[1]
    if shared_queries is not None:
        keys = fold.keys.permute(2, 0, 1, 3).reshape(h, b * t, d)  # -> (H, B*T, d)
        scores = (keys @ shared_queries).reshape(h, b, t, n).transpose(0, 1)  # (B, H, T, n)
    else:
        assert cells is not None
        scores = torch.baddbmm(fold.bias[..., None], fold.folded, cells.transpose(1, 2))
        scores = scores.reshape(b, h, t, n)  # (B, H*T, n) -> (B, H, T, n)
    probs = torch.softmax(scores, dim=2).reshape(b, h * t, n)  # over the T tokens
    # The residual is the GEMM's accumulator (no separate (B, n, C) product and add).
    return torch.baddbmm(residual, probs.transpose(1, 2), fold.values)  # (B, n, C)
