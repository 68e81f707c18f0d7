"""The light prompt encoder: points and boxes as random-Fourier positional encodings plus learned
type embeddings (sparse), and a mask prompt through strided convolutions (dense). Paper §3.

The optional text path (paper §7.5, appendix D.5) takes an embedding, never a string: a CLIP
embedding (L2-normalised; the image embedding of a mask crop in training, the text embedding at
inference), scaled by sqrt(E) so that its elements have about unit size like the other tokens'
inputs, goes through a small MLP to the prompt width, plus a learned "text" type embedding, and
becomes one more sparse token, after the point and box tokens. (Unscaled, a unit-norm 128-wide
embedding gave the MLP inputs of about 0.09: the token was the type embedding plus a few percent,
and a CPU fine-tune's text path had not begun to tell objects apart after 300 steps.) The CLIP
itself lives outside the model (:mod:`anyseg.clip`).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from anyseg.config import PromptEncoderConfig
from anyseg.errors import InvalidInputError
from anyseg.modeling.common import MLP, LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random Gaussian spatial frequencies (Tancik et al. 2020).

    The (2, F) frequency matrix is a persistent buffer: it is part of every checkpoint.
    """

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates in [0, 1] -> (..., 2F) [sin, cos] features."""
        coords = 2 * coords01 - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size_hw: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an (h, w) grid: (2F, h, w)."""
        h, w = size_hw
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(
            [xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1
        )  # (h, w, 2) as (x, y)
        return self._encode(grid).permute(2, 0, 1)  # (h, w, 2F) -> (2F, h, w)

    def forward_with_coords(
        self, coords_xy: torch.Tensor, image_size_hw: tuple[int, int]
    ) -> torch.Tensor:
        """(B, N, 2) pixel coordinates in the model frame -> (B, N, 2F)."""
        h, w = image_size_hw
        # Normalise x by width and y by height in the input's own precision (float64 stays
        # float64 until after the division), as two divisions rather than a multiply, then cast:
        # bit-identical to the reference implementation for every input dtype.
        coords = torch.stack([coords_xy[..., 0] / w, coords_xy[..., 1] / h], dim=-1)
        return self._encode(coords.float())


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for the mask decoder."""

    def __init__(
        self,
        config: PromptEncoderConfig,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
    ) -> None:
        super().__init__()
        dim = config.embed_dim
        self.embed_dim = dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        c = config.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.Conv2d(c // 4, c, kernel_size=2, stride=2),
            LayerNorm2d(c),
            nn.GELU(),
            nn.Conv2d(c, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)
        self.text_embed_dim = config.text_embed_dim
        if config.has_text:
            self.text_mlp = MLP(config.text_embed_dim, dim, dim, 2)
            self.text_embed = nn.Embedding(1, dim)

    @property
    def has_text(self) -> bool:
        """Whether this encoder has the text path (see the module docstring)."""
        return self.text_embed_dim > 0

    def embed_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, E) CLIP embeddings -> (B, 1, C) text tokens (MLP plus the "text" type
        embedding)."""
        if not self.has_text:
            raise InvalidInputError("this prompt encoder has no text path (text_embed_dim is 0)")
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.text_embed_dim:
            raise InvalidInputError(
                f"text embeddings must be (B, {self.text_embed_dim}), got "
                f"{tuple(text_embeddings.shape)}"
            )
        return self.text_token(text_embeddings.to(self.text_embed.weight.dtype))[:, None]

    def text_token(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(..., E) embeddings -> (..., C) tokens, unchecked (the maths of :meth:`embed_text`)."""
        scaled = text_embeddings * math.sqrt(self.text_embed_dim)
        return self.text_mlp(scaled) + self.text_embed.weight[0]

    def _type_embedding(self, index: int) -> torch.Tensor:
        """(1, C) learned embedding of prompt type ``index`` (see ``point_embeddings``)."""
        return cast(nn.Embedding, self.point_embeddings[index]).weight

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of every embedding cell: (1, C, h, w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(
        self, coords_xy: torch.Tensor, labels: torch.Tensor, pad: bool
    ) -> torch.Tensor:
        """(B, N, 2) model-frame points, (B, N) labels in {1, 0, -1} -> (B, N(+1), C)."""
        coords_xy = coords_xy + 0.5  # pixel centres
        if pad:
            # Without a box, a "not a point" token is appended (as in training).
            b = coords_xy.shape[0]
            coords_xy = torch.cat([coords_xy, coords_xy.new_zeros(b, 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(b, 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(coords_xy, self.input_image_size)
        labels = labels[..., None]  # (B, N) -> (B, N, 1)
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = emb + (labels == 0) * self._type_embedding(0)
        return emb + (labels == 1) * self._type_embedding(1)

    def _embed_boxes(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """(B, 4) model-frame boxes -> (B, 2, C) corner embeddings."""
        corners = (boxes_xyxy + 0.5).reshape(-1, 2, 2)  # (B, 4) -> (B, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_type = torch.cat([self._type_embedding(2), self._type_embedding(3)])
        return emb + corner_type  # (B, 2, C) + (2, C)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        text: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts of B queries.

        Args:
            points: (coords (B, N, 2) xy in the model frame, labels (B, N): 1 foreground,
                0 background, -1 padding), or None.
            boxes: (B, 4) XYXY in the model frame, or None.
            masks: (B, 1, 4h, 4w) low-resolution mask logits, or None.
            text: (B, E) CLIP embeddings (models with the text path only), or None.

        Returns:
            sparse (B, K, C) point/box/text tokens and dense (B, C, h, w) mask embedding.
        """
        if points is not None:
            b = points[0].shape[0]
        elif boxes is not None:
            b = boxes.shape[0]
        elif masks is not None:
            b = masks.shape[0]
        elif text is not None:
            b = text.shape[0]
        else:
            b = 1
        weight = self.no_mask_embed.weight
        tokens = [weight.new_empty((b, 0, self.embed_dim))]
        if points is not None:
            tokens.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            tokens.append(self._embed_boxes(boxes))
        if text is not None:
            tokens.append(self.embed_text(text))
        sparse = torch.cat(tokens, dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
        return sparse, dense
