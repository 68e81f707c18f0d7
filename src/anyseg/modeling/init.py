"""Initialisations for training SAM from scratch.

With PyTorch's default initialisation, a randomly initialised SAM trained on a small budget
(one image and a dozen masks per step) collapses to a constant, prompt-independent mask within
about 50 steps and stays there for hundreds: the only route from a prompt to a location is the
attention between the prompt tokens' positional encoding and the image's, and random query/key
projections start with no such correspondence. :func:`prompt_localizing_init` starts the
decoder's cross-attention with *tied* query and key projections (an orthogonal matrix shared by
both), so the dot product of two positional encodings, which peaks where the positions coincide,
is there from step 0; and it starts the encoder's output small, so that positional encodings
dominate the image keys until the encoder has learned something. Measured on synthetic scenes
(256 px, 16x16 embedding): box-prompt IoU starts rising after ~100 steps instead of staying at 0.

Only parameter values change: the architecture and the checkpoint layout are the official ones.
"""

from __future__ import annotations

import torch
from torch import nn

from anyseg.modeling.common import LayerNorm2d
from anyseg.modeling.sam import Sam

CROSS_ATTENTION = (
    "cross_attn_token_to_image",
    "cross_attn_image_to_token",
    "final_attn_token_to_image",
)


@torch.no_grad()
def prompt_localizing_init(
    model: Sam, attention_gain: float = 3.0, embedding_scale: float = 0.1, seed: int = 0
) -> Sam:
    """Re-initialise ``model`` in place for training from scratch (see the module docstring).

    Args:
        model: a freshly built SAM.
        attention_gain: gain of the orthogonal query/key projections of the decoder's
            cross-attention layers (larger = sharper initial attention).
        embedding_scale: initial weight of the encoder neck's final LayerNorm (1.0 = default).
        seed: seed of the orthogonal matrices.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, module in model.mask_decoder.transformer.named_modules():
        if name.split(".")[-1] in CROSS_ATTENTION:
            q, k = module.q_proj, module.k_proj
            assert isinstance(q, nn.Linear) and isinstance(k, nn.Linear)
            weight = torch.empty_like(q.weight)
            nn.init.orthogonal_(weight, gain=attention_gain, generator=gen)
            q.weight.copy_(weight)
            k.weight.copy_(weight)
            q.bias.zero_()
            k.bias.zero_()
    final_norm = model.image_encoder.neck[-1]
    assert isinstance(final_norm, LayerNorm2d)
    final_norm.weight.fill_(embedding_scale)
    return model
