"""CLIP (Radford et al. 2021) as pure nn.Modules, in OpenAI's state-dict layout.

Image tower: patches (a stride-p convolution) plus a class token and learned positions, a pre-norm
transformer, ``ln_post`` of the class token times ``proj``. Text tower: token plus position
embeddings, a causal pre-norm transformer, ``ln_final`` of the state at the end-of-text token (the
highest token id of each row) times ``text_projection``. Module names follow OpenAI's so that a
state dict loads as is (``visual.transformer.resblocks.0.attn.in_proj_weight``, ...).

Masked attention (SAM, Kirillov et al. 2023, appendix D.5): given a mask, the class token of the
*last* image block attends only to itself and the patches inside the mask, so the embedding
describes the masked region of a crop. Patch masks come from pixel masks by area averaging: a
patch is in when at least half of it is covered, and the best-covered patch is always in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from anyseg.clip.config import ClipConfig, VisionConfig
from anyseg.errors import InvalidInputError


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation of OpenAI's CLIP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names
    (``in_proj_weight`` rows are q, k, v), batch first."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        """x (B, T, W); mask (B, 1, T, T) bool, True where a query may attend to a key."""
        b, t, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3W)
        qkv = qkv.view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, W/H)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))  # (B, H, T, D) -> (B, T, W)


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = QuickGELU() if activation == "quick_gelu" else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_dim: int, activation: str) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_dim, activation)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_dim: int, activation: str) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_dim, activation) for _ in range(layers)
        )


class VisionTransformer(nn.Module):
    """The image tower (keys under ``visual.``)."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, activation: str) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.grid**2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads, cfg.mlp_dim, activation)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim))

    def forward(self, pixels: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (B, E) of normalised images (B, 3, S, S); ``patch_mask`` (B, g, g) bool
        restricts the class token of the last block (module docstring)."""
        x = self.conv1(pixels)  # (B, W, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, W, g, g) -> (B, g*g, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 1+g*g, W)
        x = self.ln_pre(x)
        blocks = self.transformer.resblocks
        for block in blocks[:-1]:
            x = block(x)
        x = blocks[-1](x, None if patch_mask is None else _class_token_mask(patch_mask))
        return self.ln_post(x[:, 0]) @ self.proj


def _class_token_mask(patch_mask: torch.Tensor) -> torch.Tensor:
    """(B, g, g) bool -> (B, 1, T, T) attention mask: row 0 (class token) sees itself and the
    masked patches, every other row sees everything."""
    b = patch_mask.shape[0]
    keys = patch_mask.reshape(b, -1)  # (B, g*g)
    t = keys.shape[1] + 1
    mask = torch.ones(b, 1, t, t, dtype=torch.bool, device=patch_mask.device)
    mask[:, 0, 0, 1:] = keys
    return mask


def patch_mask(masks: torch.Tensor, grid: int) -> torch.Tensor:
    """Patch-grid masks (B, g, g) bool from crop masks (B, S, S) (bool or coverage in [0, 1]):
    a patch is in when at least half covered; the best-covered patch of each mask is always in."""
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2] or masks.shape[1] % grid:
        raise InvalidInputError(
            f"expected crop masks (B, S, S) with S a multiple of {grid}, got {tuple(masks.shape)}"
        )
    cover = F.adaptive_avg_pool2d(masks[:, None].float(), grid)[:, 0]  # (B, g, g)
    best = cover.flatten(1).argmax(1)  # (B,)
    out = cover >= 0.5
    out.view(out.shape[0], -1)[torch.arange(out.shape[0], device=out.device), best] = True
    return out


class ClipOutput(NamedTuple):
    """Embeddings (not normalised) and the learned temperature."""

    image_embeds: torch.Tensor  # (B, E)
    text_embeds: torch.Tensor  # (N, E)
    logit_scale: torch.Tensor  # () log of the inverse temperature


class ClipModel(nn.Module):
    """CLIP with a ViT image tower; state-dict keys as in OpenAI's release."""

    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        self.config = config
        t = config.text
        self.visual = VisionTransformer(config.vision, config.embed_dim, config.activation)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.zeros(t.context_length, t.width))
        self.transformer = Transformer(t.width, t.layers, t.heads, t.mlp_dim, config.activation)
        self.ln_final = nn.LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.zeros(t.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.reset_parameters()

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def reset_parameters(self) -> None:
        """Random initialisation with CLIP's scales (embeddings 0.02, positions 0.01, attention
        width^-1/2, residual projections shrunk with depth)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for tower, width in (
            (self.visual.transformer, self.config.vision.width),
            (self.transformer, self.config.text.width),
        ):
            layers = len(tower.resblocks)
            for block in tower.resblocks:
                assert isinstance(block, ResidualAttentionBlock)
                nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
                nn.init.zeros_(block.attn.in_proj_bias)
                nn.init.normal_(block.attn.out_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
                nn.init.normal_(block.mlp.c_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
        v = self.visual
        scale = self.config.vision.width**-0.5
        nn.init.normal_(v.conv1.weight, std=(3 * self.config.vision.patch_size**2) ** -0.5)
        nn.init.normal_(v.class_embedding, std=scale)
        nn.init.normal_(v.positional_embedding, std=scale)
        nn.init.normal_(v.proj, std=scale)
        nn.init.normal_(self.text_projection, std=self.config.text.width**-0.5)
        with torch.no_grad():
            self.logit_scale.fill_(math.log(1 / 0.07))

    def encode_image(self, pixels: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Image embeddings (B, E), not normalised.

        Args:
            pixels: normalised crops (B, 3, S, S) (see :func:`anyseg.clip.crops.to_pixels`).
            masks: optional masks for the last block's class token: patch masks (B, g, g) bool,
                or crop masks (B, S, S) turned into patch masks by :func:`patch_mask`.
        """
        v = self.config.vision
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, v.image_size, v.image_size):
            raise InvalidInputError(
                f"expected pixels (B, 3, {v.image_size}, {v.image_size}), got {tuple(pixels.shape)}"
            )
        if masks is not None:
            if masks.shape[0] != pixels.shape[0]:
                raise InvalidInputError(f"{masks.shape[0]} masks for {pixels.shape[0]} images")
            if tuple(masks.shape[1:]) != (v.grid, v.grid):
                masks = patch_mask(masks, v.grid)
            masks = masks.to(device=pixels.device, dtype=torch.bool)
        return self.visual(pixels, masks)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings (N, E), not normalised, of token ids (N, L) with L <= the context
        length; each row ends with its end-of-text token, the highest id of the row."""
        t = self.config.text
        if tokens.ndim != 2 or tokens.shape[1] > t.context_length:
            raise InvalidInputError(
                f"expected token ids (N, <= {t.context_length}), got {tuple(tokens.shape)}"
            )
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        for block in self.transformer.resblocks:
            x = block(x, causal=True)  # (N, L, W)
        x = self.ln_final(x)
        eot = tokens.argmax(dim=-1)  # (N,)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def forward(
        self, pixels: torch.Tensor, tokens: torch.Tensor, masks: torch.Tensor | None = None
    ) -> ClipOutput:
        return ClipOutput(
            self.encode_image(pixels, masks), self.encode_text(tokens), self.logit_scale
        )
