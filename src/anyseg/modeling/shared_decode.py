"""Decoding many prompts on one image with the image-side work shared (model maths).

The model's :meth:`anyseg.modeling.MaskDecoder.predict_masks` repeats the image embedding once
per prompt. Here the same modules and arithmetic run in two steps, with the image embedding kept
at batch 1 until the prompts change it:

1. :func:`decode_prompts`: the two-way transformer (in its re-associated form,
   :mod:`anyseg.modeling.shared_transformer`, about 2x less work) and the IoU head, for any
   sparse prompts without a mask prompt (points, boxes, other prompt tokens);
   :func:`decode_tokens` does it for the automatic generator's single points.
2. :func:`decode_low_res_masks`: output upscaling and hypernetwork products, only for the prompts
   a caller still wants (the predicted IoU does not depend on this step, so an IoU filter can run
   in between without changing any result).

In float32 the outputs equal the model's own decoder up to rounding (~1e-5 on logits of ±20).

SAM-HQ decoders take the same first step (their HQ token rides along) and give one candidate per
prompt, with SAM's best multimask IoU (or its single-mask output's); their masks come from the
decoder's own upscaling and HQ fusion (:meth:`MaskDecoderHQ.masks_from_tokens_hq`) rather than
the channels-last shortcut.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from anyseg.modeling.hq_decoder import MaskDecoderHQ
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.sam import Sam
from anyseg.modeling.shared_transformer import (
    ImageSide,
    folding_pays,
    prepare_image_side,
    two_way_transformer,
)
from anyseg.ops.lanes import lanes_available, run_lanes, split_range
from anyseg.ops.threads import FEW_TOKENS, one_thread

# Work is split so that each large activation stays under ~16 MB. Besides cache locality, this
# keeps allocations below glibc's largest mmap threshold (32 MB): bigger buffers are mapped and
# unmapped on every use, and the page faults cost more than the arithmetic (the original's
# (64, 4096, 256) activations spend a large share of its time in the kernel this way).
CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TokenOutputs:
    """The transformer's outputs for B prompts (multimask: tokens 1..3 are the masks).

    Attributes:
        iou_preds: (B, K) float32 predicted IoU of each prompt's K candidates: SAM's three
            multimask outputs, or SAM-HQ's one (the best of those three).
        mask_tokens: (B, K, C) final states of the mask tokens of the outputs kept: SAM's three
            multimask outputs, or its single-mask output (the other mask tokens' final states
            are not computed); SAM-HQ: all 1 + 3 and its HQ token last.
        feature_chunks: image side of the transformer per prompt, in chunks of (<= chunk, h*w, C)
            (kept apart: one (B, h*w, C) tensor would be a 268 MB allocation for B = 64).
        chunk: prompts per chunk.
        grid_hw: (h, w) of the image embedding.
    """

    iou_preds: torch.Tensor
    mask_tokens: torch.Tensor
    feature_chunks: tuple[torch.Tensor, ...]
    chunk: int
    grid_hw: tuple[int, int]
    best_slot: torch.Tensor | None = None  # SAM-HQ: (B,) which multimask output is SAM's part
    multimask: bool = True  # the three ambiguity outputs (else the single-mask output)

    def image_features(self, prompts: list[int]) -> torch.Tensor:
        """(P, h*w, C) image features of the given prompts (a view when they are consecutive
        prompts of one chunk, as when every prompt is decoded)."""
        if prompts and prompts == list(range(prompts[0], prompts[0] + len(prompts))):
            part, offset = divmod(prompts[0], self.chunk)
            if offset + len(prompts) <= len(self.feature_chunks[part]):
                return self.feature_chunks[part][offset : offset + len(prompts)]
        return torch.stack([self.feature_chunks[i // self.chunk][i % self.chunk] for i in prompts])


def prepare_image(model: Sam, embedding: torch.Tensor, decoder: MaskDecoder) -> ImageSide:
    """What every prompt batch of one image shares: the (1, C, h, w) embedding plus the dense
    prompt embedding (no mask prompts in AMG), and the first block's projections of it."""
    dtype = decoder.iou_token.weight.dtype
    _, dense = model.prompt_encoder(points=None, boxes=None, masks=None)  # (1, C, h, w)
    image_pe = model.prompt_encoder.get_dense_pe().to(dtype)
    return prepare_image_side(decoder.transformer, (embedding + dense).to(dtype), image_pe)


def decode_tokens(
    model: Sam,
    image: ImageSide,
    points_input: torch.Tensor,
    decoder: MaskDecoder | None = None,
) -> TokenOutputs:
    """Run the prompt encoder, the two-way transformer and the IoU head for single-point prompts
    (the automatic generator's grid), with the multimask outputs.

    Args:
        model: the SAM model.
        image: the image side from :func:`prepare_image` (with the same ``decoder``).
        points_input: (B, 2) foreground points, xy in the model frame (float64 as the original).
        decoder: the mask decoder to use (default ``model.mask_decoder``); its dtype is the
            compute dtype.

    Returns:
        The transformer outputs; no mask is computed yet.
    """
    coords = points_input[:, None, :]  # (B, 2) -> (B, 1, 2)
    labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
    sparse, _ = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    return decode_prompts(model, image, sparse, decoder, multimask_output=True)


def decode_prompts(
    model: Sam,
    image: ImageSide,
    sparse: torch.Tensor,
    decoder: MaskDecoder | None = None,
    multimask_output: bool = True,
) -> TokenOutputs:
    """The two-way transformer and the IoU head for B prompts without a mask prompt.

    Args:
        model: the SAM model.
        image: the image side from :func:`prepare_image` (with the same ``decoder``).
        sparse: (B, K, C) sparse prompt embeddings (points, box corners, and any other prompt
            token a caller appends), from ``model.prompt_encoder``.
        decoder: the mask decoder to use (default ``model.mask_decoder``); its dtype is the
            compute dtype.
        multimask_output: keep the three ambiguity outputs (SAM-HQ: SAM's part is their best)
            instead of the single-mask output.

    Returns:
        The transformer outputs; no mask is computed yet.
    """
    decoder = model.mask_decoder if decoder is None else decoder
    dtype = decoder.iou_token.weight.dtype
    b = sparse.shape[0]
    output_tokens = decoder.output_tokens()
    with one_thread(b * output_tokens.shape[0] <= FEW_TOKENS):
        tokens = torch.cat([output_tokens[None].expand(b, -1, -1), sparse.to(dtype)], dim=1)
    n, c = image.keys.shape[1:]
    grid_hw = model.prompt_encoder.image_embedding_size
    hs_parts, feature_parts = [], []
    chunk = max(1, CHUNK_BYTES // (n * c * image.keys.element_size()))
    folded = folding_pays(decoder.transformer, tokens.shape[1])
    keep = _kept_tokens(decoder, output_tokens.shape[0], multimask_output)
    for start in range(0, b, chunk):
        part = tokens[start : start + chunk]
        if folded:
            hs, features = two_way_transformer(decoder.transformer, image, part, keep=keep)
        else:  # very small models or many prompt tokens: the plain transformer is cheaper
            grid = image.keys.transpose(1, 2).reshape(1, c, *grid_hw)  # (1, N, C) -> (1, C, h, w)
            pe = image.key_pe.transpose(1, 2).reshape(1, c, *grid_hw)
            hs, features = decoder.transformer(grid, pe, part)
            hs = hs[:, keep]
        hs_parts.append(hs)
        feature_parts.append(features)
    hs = torch.cat(hs_parts)
    with one_thread(b <= FEW_TOKENS):
        iou_all = decoder.iou_prediction_head(hs[:, 0, :]).float()  # (B, 1 + M)
    iou_preds = iou_all[:, 1:] if multimask_output else iou_all[:, :1]
    best = None
    if isinstance(decoder, MaskDecoderHQ):  # one candidate per prompt
        if multimask_output:  # SAM's part: its most confident multimask output
            iou_max, best = iou_preds.max(dim=1)
            iou_preds = iou_max[:, None]
        else:  # SAM's part: the single-mask output (slot -1 + 1 = 0)
            best = torch.full((b,), -1, dtype=torch.int64, device=hs.device)
    return TokenOutputs(
        iou_preds=iou_preds,
        mask_tokens=hs[:, 1:, :],
        feature_chunks=tuple(feature_parts),
        chunk=chunk,
        grid_hw=(int(grid_hw[0]), int(grid_hw[1])),
        best_slot=best,
        multimask=multimask_output,
    )


def _kept_tokens(decoder: MaskDecoder, count: int, multimask_output: bool) -> list[int]:
    """The output tokens whose final states are read: the IoU token (0) and the mask tokens of
    the outputs returned (SAM: 2..4 multimask, 1 single; SAM-HQ reads them all)."""
    if isinstance(decoder, MaskDecoderHQ):
        return list(range(count))
    return [0, *range(2, count)] if multimask_output else [0, 1]


def decode_low_res_masks(
    model: Sam,
    tokens: TokenOutputs,
    prompts: torch.Tensor,
    decoder: MaskDecoder | None = None,
    hq_features: torch.Tensor | None = None,
    hq_token_only: bool | None = None,
) -> torch.Tensor:
    """Low-res logits of the selected prompts' outputs: the three multimask outputs, or the
    single-mask output (:attr:`TokenOutputs.multimask`); SAM-HQ: their one candidate, from
    ``hq_features``, the image's (1, C/8, 4h, 4w) HQ features, and ``hq_token_only`` (default:
    the decoder's).

    Evaluates the decoder's output upscaling (two stride-2 2x2 transposed convolutions with a
    channel LayerNorm and GELUs) and the hypernetwork products channels-last: each transposed
    convolution is one matrix product per image cell, the LayerNorm a plain ``layer_norm`` over
    the last dim. The rows are put in mask order between the convolutions (the second one runs
    once per sub-pixel row), so the hypernetwork products write the masks in place, without a
    final shuffle of the 4x4 sub-pixels. For a prompt or two the grid rows are cut into one
    band per thread, each upscaled end to end on its thread (:func:`anyseg.ops.lanes.run_lanes`;
    the same values as one pass).

    Args:
        model: the SAM model.
        tokens: :func:`decode_tokens` outputs for B prompts.
        prompts: (P,) int64 indices of the prompts to decode.
        decoder: the decoder that produced ``tokens`` (default ``model.mask_decoder``).

    Returns:
        (P, K, 4h, 4w) float32 logits (256x256 for the official models), K as in
        :attr:`TokenOutputs.iou_preds`.
    """
    decoder = model.mask_decoder if decoder is None else decoder
    if isinstance(decoder, MaskDecoderHQ):
        if hq_features is None:
            raise ValueError("a SAM-HQ decoder needs the image's hq_features")
        only = decoder.hq_token_only if hq_token_only is None else hq_token_only
        return _hq_low_res_masks(decoder, tokens, prompts, hq_features, only)
    up = _ChannelsLastUpscaling.of(decoder)
    h, w = tokens.grid_hw
    all_mlps = list(decoder.output_hypernetworks_mlps)
    mlps = all_mlps[1:] if tokens.multimask else all_mlps[:1]  # those of tokens.mask_tokens
    out = torch.empty(
        prompts.numel(), len(mlps), 4 * h, 4 * w, dtype=torch.float32,
        device=tokens.mask_tokens.device,
    )  # fmt: skip
    # The largest activation: 16 h*w sub-pixels x C/8 channels per prompt.
    step = max(1, CHUNK_BYTES // (16 * h * w * up.c2 * up.w1.element_size()))
    for start in range(0, prompts.numel(), step):
        chunk = prompts[start : start + step]
        p = chunk.numel()
        features = tokens.image_features(chunk.tolist()).reshape(p, h, w, -1)  # (P, h, w, C)
        mask_tokens = tokens.mask_tokens[chunk]
        few = p * len(mlps) <= FEW_TOKENS
        with one_thread(few):
            hyper = torch.stack(
                [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(mlps)], dim=1
            )  # (P, M, C/8)
        # (P, M, y, x) with y = 4i + 2a + a' -> (P, M, i, a, a', x)
        target = out[start : start + p].view(p, len(mlps), h, 2, 2, 4 * w)
        # A prompt or two: each thread upscales its own band of grid rows end to end.
        bands = split_range(h, lanes_available(features.device) if few else 1)
        run_lanes(partial(up.band, features, hyper, target), bands)
    return out


@dataclass(frozen=True)
class _ChannelsLastUpscaling:
    """The decoder's output upscaling as matrix products over channels-last image cells."""

    w1: torch.Tensor  # (C, 2*2*C/4): the first convolution's four sub-pixels, channels last
    b1: torch.Tensor
    norm_weight: torch.Tensor
    norm_bias: torch.Tensor
    norm_eps: float
    act1: nn.Module
    w2: torch.Tensor  # (C/4, 2, 2*C/8): per sub-pixel row a', the columns (b', C/8)
    b2: torch.Tensor
    act2: nn.Module

    @property
    def c1(self) -> int:
        return self.norm_weight.shape[0]

    @property
    def c2(self) -> int:
        return self.b2.shape[0] // 2

    @staticmethod
    def of(decoder: MaskDecoder) -> _ChannelsLastUpscaling:
        up1, norm, act1, up2, act2 = decoder.output_upscaling
        assert isinstance(up1, nn.ConvTranspose2d) and isinstance(up2, nn.ConvTranspose2d)
        assert up1.bias is not None and up2.bias is not None
        c1, c2 = up1.out_channels, up2.out_channels
        with one_thread():  # weight-sized copies
            # (C_in, C_out, 2, 2) -> (C_in, 2*2*C_out)
            w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, 4 * c1)
            w2 = up2.weight.permute(0, 2, 3, 1).reshape(c1, 2, 2 * c2)  # (C/4, C/8, 2, 2) ->
            b1, b2 = up1.bias.repeat(4), up2.bias.repeat(2)
        return _ChannelsLastUpscaling(
            w1=w1,
            b1=b1,
            norm_weight=cast(torch.Tensor, norm.weight),
            norm_bias=cast(torch.Tensor, norm.bias),
            norm_eps=float(cast(float, norm.eps)),  # LayerNorm2d over channels: last dim
            act1=act1,
            w2=w2,
            b2=b2,
            act2=act2,
        )

    def band(
        self, features: torch.Tensor, hyper: torch.Tensor, target: torch.Tensor, i0: int, i1: int
    ) -> None:
        """Masks of grid rows [i0, i1) of P prompts' (P, h, w, C) features and (P, M, C/8)
        hypernetwork outputs, written into ``target`` (P, M, h, 2, 2, 4w)."""
        p, _, w, _ = features.shape
        r, c1, c2 = i1 - i0, self.c1, self.c2
        x = torch.addmm(self.b1, features[:, i0:i1].reshape(p * r * w, -1), self.w1)
        x = x.reshape(p * r * w * 4, c1)  # rows: (prompt, i, j, a, b)
        x = F.layer_norm(x, (c1,), self.norm_weight, self.norm_bias, self.norm_eps)
        x = _activate_(self.act1, x)
        # rows (prompt, i, j, a, b) -> (prompt, i, a, j, b): runs of 2 x C/4 values move
        x = x.reshape(p, r, w, 2, 2, c1).transpose(2, 3).reshape(p * r * w * 4, c1)
        for a2 in range(2):  # the second convolution's sub-pixel row a'
            y = _activate_(self.act2, torch.addmm(self.b2, x, self.w2[:, a2]))  # cols (b', C/8)
            y = y.reshape(p, 2 * r * 2 * w * 2, c2)  # rows (i, a, j, b, b')
            # (P, M, C/8) @ (P, C/8, rows) -> (P, M, i, a, (j, b, b')): x = 4j + 2b + b'
            masks = hyper @ y.transpose(1, 2)
            target[:, :, i0:i1, :, a2] = masks.reshape(p, -1, r, 2, 4 * w)


def _activate_(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` for a tensor x the caller owns: GELU in place (the same values without a
    fresh (rows, C) buffer, whose first touch costs page faults), other activations as given."""
    if isinstance(act, nn.GELU) and not x.requires_grad:
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return cast(torch.Tensor, act(x))


def _hq_low_res_masks(
    decoder: MaskDecoderHQ,
    tokens: TokenOutputs,
    prompts: torch.Tensor,
    hq_features: torch.Tensor,
    hq_token_only: bool,
) -> torch.Tensor:
    """SAM-HQ's one mask per selected prompt, (P, 1, 4h, 4w) float32, through the decoder's
    own upscaling, fusion and output rule (SAM's part: :attr:`TokenOutputs.best_slot`)."""
    assert tokens.best_slot is not None
    h, w = tokens.grid_hw
    hq_features = hq_features.to(decoder.iou_token.weight.dtype)
    out = []
    c8 = decoder.transformer_dim // 8
    step = max(1, CHUNK_BYTES // (16 * h * w * c8 * 4 * hq_features.element_size()))
    for start in range(0, prompts.numel(), step):
        chunk = prompts[start : start + step]
        features = tokens.image_features(chunk.tolist())  # (P, hw, C)
        grid = features.transpose(1, 2).reshape(chunk.numel(), -1, h, w)  # -> (P, C, h, w)
        masks = decoder.masks_from_tokens_hq(tokens.mask_tokens[chunk], grid, hq_features)
        best = tokens.best_slot[chunk]
        sam = masks[torch.arange(chunk.numel(), device=masks.device), best + 1][:, None]
        hq = masks[:, -1:]
        out.append((hq if hq_token_only else sam + hq).float())
    return torch.cat(out) if out else torch.zeros(0, 1, 4 * h, 4 * w)
