"""The TinyViT image encoder of MobileSAM (Zhang et al. 2023; TinyViT: Wu et al. 2022).

MobileSAM replaces SAM's ViT with a 5 M-parameter TinyViT distilled from it, keeping SAM's prompt
encoder and mask decoder. The encoder is four stages: a convolutional one (MBConv blocks), then
three of windowed self-attention with a learned per-head bias for every (|dy|, |dx|) offset
inside a window and a depthwise convolution after each attention. Stages are joined by patch
mergings; the last one keeps the resolution (``keep_res_merges``), so a 1024 px input gives SAM's
64x64 embedding. SAM's
neck maps the last stage to the prompt width.

Parameter names are those of MobileSAM's released ``mobile_sam.pt`` (under ``image_encoder.``),
including TinyViT's unused classifier head, so the released file loads strictly. Every
convolution is followed by a BatchNorm (running statistics in eval mode).

Input: a normalised, zero-padded image (B, 3, S, S). Output: the image embedding
(B, out_chans, S/stride, S/stride), stride 16 for MobileSAM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anyseg.config import TinyViTConfig
from anyseg.modeling.common import DropPath, LayerNorm2d
from anyseg.modeling.image_encoder import window_partition, window_unpartition


class ConvBN(nn.Sequential):
    """A bias-free convolution and a BatchNorm (children ``c`` and ``bn``, as in TinyViT)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.add_module(
            "c",
            nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False),
        )
        self.add_module("bn", nn.BatchNorm2d(out_chans))


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: (B, 3, S, S) -> (B, D, S/4, S/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual, activation.
    Channels first: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim)
        self.act3 = nn.GELU()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(x + self.drop_path(self.conv3(y)))


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depthwise conv (stride 2, or 1 for the last merging), 1x1 conv.
    Channels first: (B, C, H, W) -> (B, C', H / stride, W / stride)."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class Mlp(nn.Module):
    """Pre-norm feed-forward block (the norm is inside, as in TinyViT)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def offset_index(window: int) -> Tensor:
    """(w*w, w*w) index of the bias table for every (query, key) pair of a w x w window: the
    offset (|dy|, |dx|) is entry ``|dy| * w + |dx|`` (the order TinyViT enumerates them in)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (w*w,) row-major positions
    return (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()


class Attention(nn.Module):
    """Self-attention inside one window with a learned bias per head and offset.

    The fused projection holds, per head, its query, key and value next to each other
    (``(heads, 3, head_dim)`` along the output axis), as TinyViT stores it.
    """

    bias_index: Tensor

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("bias_index", offset_index(window), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) window tokens -> (B, N, C)."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # -> 3 x (B, heads, N, d)
        bias = self.attention_biases[:, self.bias_index]  # (heads, N, N)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale
        )  # (B, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))  # -> (B, N, C)


class TinyViTBlock(nn.Module):
    """Windowed attention, a depthwise convolution, then the MLP; channels last (B, H, W, C).

    Windows are zero-padded at the bottom and right; the padded cells take part in the
    attention (as in TinyViT) and are cropped afterwards.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        local_conv_size: int,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        _, h, w, c = x.shape
        windows, padded_hw = window_partition(x, self.window)  # (B*nW, ws, ws, C)
        attn = self.attn(windows.view(-1, self.window * self.window, c))
        attn = window_unpartition(attn.view_as(windows), self.window, padded_hw, (h, w))
        x = x + self.drop_path(attn)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # conv channels first
        return x + self.drop_path(self.mlp(x))


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks and a patch merging, channels first (B, C, H, W)."""

    def __init__(self, blocks: list[MBConv], downsample: PatchMerging) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class AttentionStage(nn.Module):
    """Stages 1..3: TinyViT blocks, channels last (B, H, W, C), and (but for the last stage) a
    patch merging."""

    def __init__(self, blocks: list[TinyViTBlock], downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


class TinyViT(nn.Module):
    """TinyViT backbone + SAM's neck (see the module docstring)."""

    def __init__(self, config: TinyViTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.img_size = config.img_size
        dims, depths = config.embed_dims, config.depths
        rates = torch.linspace(0, config.drop_path_rate, sum(depths)).tolist()
        per_stage = [rates[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(len(depths))]
        last = len(depths) - 1
        self.patch_embed = PatchEmbed(config.in_chans, dims[0])
        stages: list[nn.Module] = [
            ConvStage(
                [MBConv(dims[0], config.mbconv_expand_ratio, r) for r in per_stage[0]],
                PatchMerging(dims[0], dims[1], stride=1 if config.keep_res_merges >= last else 2),
            )
        ]
        for i in range(1, len(depths)):
            blocks = [
                TinyViTBlock(
                    dims[i],
                    config.num_heads[i],
                    config.window_sizes[i],
                    config.mlp_ratio,
                    config.local_conv_size,
                    r,
                )
                for r in per_stage[i]
            ]
            merge = None
            if i < last:  # the last keep_res_merges mergings keep the resolution
                keep = i >= last - config.keep_res_merges
                merge = PatchMerging(dims[i], dims[i + 1], stride=1 if keep else 2)
            stages.append(AttentionStage(blocks, merge))
        self.layers = nn.ModuleList(stages)
        # TinyViT's ImageNet classifier: in every MobileSAM checkpoint, never used by SAM.
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], config.num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def forward_with_early(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) -> embedding (B, out_chans, S/stride, S/stride) and the early features
        SAM-HQ fuses, stage 1's output (B, embed_dims[2], S/stride, S/stride)."""
        x = self.layers[0](self.patch_embed(x)).permute(0, 2, 3, 1)  # -> (B, H, W, C)
        early = x
        for i, stage in enumerate(self.layers[1:], start=1):
            x = stage(x)
            if i == 1:
                early = x
        embedding = self.neck(x.permute(0, 3, 1, 2))  # (B, h, w, C) -> (B, C, h, w)
        return embedding, early.permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) normalised, padded image -> (B, out_chans, S/stride, S/stride)."""
        return self.forward_with_early(x)[0]
