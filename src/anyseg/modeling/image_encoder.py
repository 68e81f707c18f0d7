"""The heavy image encoder: a ViT with windowed and global attention (paper §3, appendix A).

Input: a normalised, zero-padded image (B, 3, S, S). Output: the image embedding
(B, out_chans, S/16, S/16), i.e. 256×64×64 for the official 1024 px models.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from anyseg.config import ImageEncoderConfig
from anyseg.modeling.common import DropPath, LayerNorm2d, MLPBlock
from anyseg.modeling.vit_inference import rel_pos_attention, residual_mlp, split_qkv


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, 3, S, S) -> (B, S/p, S/p, D)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, D, h, w) -> (B, h, w, D)


def rel_pos_for(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings for every (query, key) pair along one axis.

    Args:
        q_size: number of query positions along the axis.
        k_size: number of key positions along the axis.
        rel_pos: (L, C) learned table; linearly resized when L != 2 * max(q, k) - 1 (e.g. a
            checkpoint trained at another resolution).

    Returns:
        (q_size, k_size, C)
    """
    length = 2 * max(q_size, k_size) - 1
    table = rel_pos
    if rel_pos.shape[0] != length:
        # (L, C) -> (1, C, L) -> interpolate -> (length, C)
        table = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear"
        )
        table = table.reshape(-1, length).permute(1, 0)
    # Positions are scaled to the longer axis when query and key lengths differ.
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[offsets.long()]


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_hw: tuple[int, int],
    k_hw: tuple[int, int],
) -> torch.Tensor:
    """Decomposed relative-position attention bias (MViTv2), added to the attention logits.

    Args:
        q: (B, q_h * q_w, C) queries, before scaling.
        rel_pos_h, rel_pos_w: (L, C) tables for the height and width axes.

    Returns:
        (B, q_h * q_w, k_h * k_w) bias.
    """
    q_h, q_w = q_hw
    k_h, k_w = k_hw
    table_h = rel_pos_for(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    table_w = rel_pos_for(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    b, _, c = q.shape
    q_grid = q.reshape(b, q_h, q_w, c)
    bias_h = torch.einsum("bhwc,hkc->bhwk", q_grid, table_h)  # (B, q_h, q_w, k_h)
    bias_w = torch.einsum("bhwc,wkc->bhwk", q_grid, table_w)  # (B, q_h, q_w, k_w)
    bias = bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]  # (B, q_h, q_w, k_h, k_w)
    return bias.reshape(b, q_h * q_w, k_h * k_w)


def eager_inference(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether a forward pass is eager inference: not differentiated (grad mode off, or
    nothing requires grad) and not traced or compiled into a graph (ONNX export, TorchScript,
    ``torch.compile``), which get the fused form."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not (x.requires_grad or any(p.requires_grad for p in module.parameters()))


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid with decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("relative positions need the attention input size")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        if eager_inference(self, x):
            return self._chunked(x)
        return self._fused(x)

    def _chunked(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the explicit form in cache-sized chunks (see :mod:`.vit_inference`)."""
        b, h, w, c = x.shape
        q, k, v = split_qkv(self.qkv, x.reshape(b, h * w, c), self.num_heads)  # (B, N, nH, d)
        rel_bias = None
        if self.use_rel_pos:
            table_h = rel_pos_for(h, h, self.rel_pos_h)  # (q_h, k_h, d)
            table_w = rel_pos_for(w, w, self.rel_pos_w)  # (q_w, k_w, d)
            grid = q.view(b, h, w, self.num_heads, -1)  # unscaled, as the original's bias
            bias_h = torch.einsum("bhwnc,hkc->bnhwk", grid, table_h).contiguous()
            bias_w = torch.einsum("bhwnc,wkc->bnhwk", grid, table_w).contiguous()
            # (B, nH, q_h, q_w, k) -> (B, nH, N, k)
            rel_bias = (bias_h.view(b, self.num_heads, h * w, h), bias_w.flatten(2, 3))
        out = rel_pos_attention(q, k, v, self.scale, rel_bias)  # (B, N, C)
        return self.proj(out.view(b, h, w, c))

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """Training and graphs: fused attention (its backward keeps no (N, N) probabilities)."""
        b, h, w, _ = x.shape
        n = h * w
        # (B, H, W, 3C) -> (3, B*heads, HW, C/heads)
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, n, -1).unbind(0)
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))
        # Fused attention: softmax(q k^T * scale + bias) v; same maths as the explicit form.
        out = F.scaled_dot_product_attention(
            q.unsqueeze(0),
            k.unsqueeze(0),
            v.unsqueeze(0),
            attn_mask=None if bias is None else bias.unsqueeze(0).to(q.dtype),
            scale=self.scale,
        ).squeeze(0)
        # (B*heads, HW, C/heads) -> (B, H, W, C)
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split (B, H, W, C) into (B * nW, window, window, C) after zero-padding to a multiple of
    ``window``; returns the windows and the padded size (Hp, Wp)."""
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window, window, C) -> (B, H, W, C)."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when ``window_size > 0``, else global."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, padded_hw = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded_hw, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + self.drop_path(x)
        if eager_inference(self, x) and not (self.training and self.drop_path.drop_prob):
            # the MLP in cache-sized row chunks
            return residual_mlp(x, self.norm2, self.mlp, self.mlp.lin1.out_features)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ImageEncoderViT(nn.Module):
    """ViT backbone + neck to ``out_chans`` channels."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.img_size = config.img_size
        grid = config.embedding_size
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, config.embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if config.use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, config.embed_dim))
        # stochastic depth grows linearly from 0 at the first block to drop_path_rate at the last
        drop_rates = [
            config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)
        ]
        self.blocks = nn.ModuleList(
            Block(
                dim=config.embed_dim,
                num_heads=config.num_heads,
                mlp_ratio=config.mlp_ratio,
                qkv_bias=config.qkv_bias,
                use_rel_pos=config.use_rel_pos,
                window_size=0 if i in config.global_attn_indexes else config.window_size,
                input_size=(grid, grid),
                drop_path=drop_rates[i],
            )
            for i in range(config.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(config.embed_dim, config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised, padded image -> (B, out_chans, S/16, S/16)."""
        return self._run(x, keep_early=False)[0]

    def forward_with_early(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> embedding (B, out_chans, S/16, S/16) and the early features SAM-HQ
        fuses: the output of the first global-attention block, (B, embed_dim, S/16, S/16)."""
        embedding, early = self._run(x, keep_early=True)
        assert early is not None  # SamConfig.validate: an HQ model has a global block
        return embedding, early

    def _run(self, x: torch.Tensor, keep_early: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        early = None
        for block in self.blocks:
            x = block(x)
            if keep_early and early is None and block.window_size == 0:
                early = x.permute(0, 3, 1, 2)  # (B, h, w, D) -> (B, D, h, w)
        return self.neck(x.permute(0, 3, 1, 2)), early  # (B, h, w, D) -> (B, D, h, w)
