"""SAM-HQ's mask decoder (Ke et al. 2023, "Segment Anything in High Quality", §3.2).

SAM's decoder plus three things, with SAM's weights untouched:

- an **HQ output token** (``hf_token``) that goes through the two-way transformer beside SAM's
  output tokens, with its own hypernetwork MLP (``hf_mlp``);
- **global-local feature fusion**: the encoder's early features (after the first global
  attention block of the ViT, or TinyViT's stage 1) and its final embedding are each upscaled 4x
  by transposed convolutions (``compress_vit_feat``, ``embedding_encoder``) and summed into
  per-image *HQ features* (:meth:`MaskDecoderHQ.fuse_features`); the HQ token's mask is the
  product with ``embedding_maskfeature(SAM's upscaled features) + HQ features``;
- the **output rule**: SAM's mask (the best of the three multimask outputs by predicted IoU, or
  the single-mask output) plus the HQ mask, or the HQ mask alone (``hq_token_only``). One mask
  per prompt either way; its IoU is SAM's prediction for the chosen mask.

Parameter names are those of the released ``sam_hq_vit_*.pth`` files (``mask_decoder.hf_token``,
``mask_decoder.hf_mlp``, ``mask_decoder.compress_vit_feat``, ...).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from anyseg.config import HQConfig, MaskDecoderConfig
from anyseg.modeling.common import MLP, LayerNorm2d
from anyseg.modeling.mask_decoder import MaskDecoder


def _upscale4(in_chans: int, mid_chans: int, out_chans: int) -> nn.Sequential:
    """Two stride-2 2x2 transposed convolutions with a channel LayerNorm and a GELU between."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_chans, mid_chans, kernel_size=2, stride=2),
        LayerNorm2d(mid_chans),
        nn.GELU(),
        nn.ConvTranspose2d(mid_chans, out_chans, kernel_size=2, stride=2),
    )


class MaskDecoderHQ(MaskDecoder):
    """SAM's mask decoder with SAM-HQ's HQ token and feature fusion (see the module docstring)."""

    def __init__(self, config: MaskDecoderConfig, early_dim: int, hq: HQConfig) -> None:
        super().__init__(config)
        dim = config.transformer_dim
        self.hq_token_only = hq.hq_token_only
        self.hf_token = nn.Embedding(1, dim)
        self.hf_mlp = MLP(dim, dim, dim // 8, 3)
        self.compress_vit_feat = _upscale4(early_dim, dim, dim // 8)
        self.embedding_encoder = _upscale4(dim, dim // 4, dim // 8)
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(dim // 8, dim // 4, 3, 1, 1),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.Conv2d(dim // 4, dim // 8, 3, 1, 1),
        )

    def output_tokens(self) -> Tensor:
        """(T, C): IoU token, SAM's mask tokens, then the HQ token."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hf_token.weight])

    def fuse_features(self, image_embeddings: Tensor, early_features: Tensor) -> Tensor:
        """Per-image HQ features from the final embedding (Bi, C, h, w) and the encoder's early
        features (Bi, D, h, w): (Bi, C/8, 4h, 4w). Computed once per image."""
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(early_features)

    def forward(  # type: ignore[override]
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        hq_features: Tensor,
        hq_token_only: bool | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Decode one mask per prompt.

        Args:
            image_embeddings: (1, C, h, w) shared by all prompts, or (B, C, h, w).
            image_pe: (1, C, h, w) from ``PromptEncoder.get_dense_pe``.
            sparse_prompt_embeddings: (B, K, C).
            dense_prompt_embeddings: (B, C, h, w).
            multimask_output: SAM's part is the best of its 3 multimask outputs by predicted
                IoU (instead of its single-mask output).
            hq_features: (1 or B, C/8, 4h, 4w) from :meth:`fuse_features`.
            hq_token_only: the HQ mask alone (default: the config's ``hq_token_only``).

        Returns:
            low-resolution mask logits (B, 1, 4h, 4w) and predicted IoU (B, 1).
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            hq_features=hq_features,
        )
        return self.select_outputs(masks, iou_pred, multimask_output, hq_token_only)

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        hq_features: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """SAM's M masks and the HQ mask: (B, M + 1, 4h, 4w) logits (HQ last) and SAM's
        (B, M) predicted IoU."""
        if hq_features is None:
            raise ValueError("the SAM-HQ decoder needs the image's hq_features (fuse_features)")
        hs, src_grid = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        masks = self.masks_from_tokens_hq(
            hs[:, 1 : 2 + self.num_mask_tokens, :], src_grid, hq_features
        )
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def masks_from_tokens_hq(
        self, mask_tokens: Tensor, src_grid: Tensor, hq_features: Tensor
    ) -> Tensor:
        """(B, M + 1, C) mask tokens (HQ last), (B, C, h, w) image side and (1 or B, C/8,
        4h, 4w) HQ features -> (B, M + 1, 4h, 4w) logits, HQ last."""
        upscaled = self.output_upscaling(src_grid)  # (B, C/8, 4h, 4w)
        sam = self.hypernetwork_masks(mask_tokens[:, :-1, :], upscaled)
        hq_in = self.embedding_maskfeature(upscaled) + hq_features
        b, c8, uh, uw = hq_in.shape
        hyper = self.hf_mlp(mask_tokens[:, -1, :]).unsqueeze(1)  # (B, 1, C/8)
        hq = (hyper @ hq_in.view(b, c8, uh * uw)).view(b, 1, uh, uw)
        return torch.cat([sam, hq], dim=1)

    def select_outputs(
        self, masks: Tensor, iou_pred: Tensor, multimask_output: bool, hq_token_only: bool | None
    ) -> tuple[Tensor, Tensor]:
        """SAM-HQ's output rule on all masks (B, M + 1, 4h, 4w) and SAM's IoU (B, M):
        (B, 1, 4h, 4w) logits and (B, 1) IoU (see the module docstring)."""
        if multimask_output:
            iou, best = iou_pred[:, 1:].max(dim=1)  # the most confident multimask output
            sam = masks[torch.arange(masks.shape[0], device=masks.device), best + 1][:, None]
            iou = iou[:, None]
        else:
            sam, iou = masks[:, :1], iou_pred[:, :1]
        hq = masks[:, -1:]
        only = self.hq_token_only if hq_token_only is None else hq_token_only
        return (hq if only else sam + hq), iou
