"""The two-way transformer of the mask decoder (paper §3, appendix A).

Prompt tokens and image embedding attend to each other in both directions. The image side may
have batch 1 while the tokens have batch B (one shared image for B prompts): attention
broadcasts over it, so the image embedding is never copied per prompt before it first differs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from anyseg.modeling.common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose internal width may be downscaled (``downsample_rate``)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, h, N, c)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q (Bq, Nq, C), k and v (Bk, Nk, C) with Bq == Bk or one of them 1 -> (B, Nq, C)."""
        q = self._split(self.q_proj(q))
        k = self._split(self.k_proj(k))
        v = self._split(self.v_proj(v))
        attn = q @ k.transpose(-2, -1)  # (B, h, Nq, Nk)
        attn = attn / math.sqrt(q.shape[-1])
        attn = torch.softmax(attn, dim=-1)
        out = attn @ v  # (B, h, Nq, c)
        b, h, n, c = out.shape
        out = out.transpose(1, 2).reshape(b, n, h * c)  # (B, h, Nq, c) -> (B, Nq, C')
        return self.out_proj(out)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token→image cross-attention, token MLP, image→token cross-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int,
        skip_first_layer_pe: bool,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def attend_tokens(self, queries: Tensor, query_pe: Tensor) -> Tensor:
        """The block's first step: the tokens' self-attention, then ``norm1``. The first block
        replaces the tokens by their self-attention (no residual, no PE)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        return self.norm1(queries)

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        queries = self.attend_tokens(queries, query_pe)
        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final token→image attention."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Run the transformer.

        Args:
            image_embedding: (Bi, C, h, w), Bi == B or 1 (shared by all B queries).
            image_pe: (1, C, h, w) positional encoding of the image cells.
            point_embedding: (B, N, C) prompt and output tokens.

        Returns:
            tokens (B, N, C) and image features (B, hw, C).
        """
        keys = image_embedding.flatten(2).permute(0, 2, 1)  # (Bi, C, h, w) -> (Bi, hw, C)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)  # (1, C, h, w) -> (1, hw, C)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(
                queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe
            )
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        if keys.shape[0] != queries.shape[0]:  # depth 0: the image side was never updated
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys
