"""The light mask decoder: output tokens through the two-way transformer, upscaled image
features, hypernetwork MLPs per mask token and an IoU head (paper §3, appendix A)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from anyseg.config import MaskDecoderConfig
from anyseg.modeling.common import MLP, LayerNorm2d
from anyseg.modeling.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predicts 1 + ``num_multimask_outputs`` masks and their IoU from prompt embeddings."""

    def __init__(self, config: MaskDecoderConfig) -> None:
        super().__init__()
        dim = config.transformer_dim
        self.transformer_dim = dim
        self.transformer = TwoWayTransformer(
            depth=config.depth,
            embedding_dim=dim,
            num_heads=config.num_heads,
            mlp_dim=config.mlp_dim,
            attention_downsample_rate=config.attention_downsample_rate,
        )
        self.num_multimask_outputs = config.num_multimask_outputs
        self.iou_token = nn.Embedding(1, dim)
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim, config.iou_head_hidden_dim, self.num_mask_tokens, config.iou_head_depth
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Decode masks for B prompts.

        Args:
            image_embeddings: (1, C, h, w) shared by all prompts, or (B, C, h, w) one per prompt.
            image_pe: (1, C, h, w) from ``PromptEncoder.get_dense_pe``.
            sparse_prompt_embeddings: (B, K, C).
            dense_prompt_embeddings: (B, C, h, w).
            multimask_output: return the 3 ambiguity masks (tokens 1..3) instead of token 0.

        Returns:
            low-resolution mask logits (B, 3 or 1, 4h, 4w) and predicted IoU (B, 3 or 1).
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """All 1 + num_multimask_outputs masks: (B, M, 4h, 4w) logits and (B, M) IoU."""
        hs, src_grid = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        masks = self.masks_from_tokens(hs[:, 1 : 1 + self.num_mask_tokens, :], src_grid)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])
        return masks, iou_pred

    @torch.no_grad()
    def rescale_iou_head(self, scale: Tensor, shift: Tensor) -> None:
        """Fold an affine map into the IoU head, exactly (its last layer is linear): afterwards
        output ``k`` predicts ``scale[k] * before + shift[k]``. Used to recalibrate a head whose
        predictions run systematically low or high (``anyseg calibrate``).

        Args:
            scale, shift: one value per IoU output (1 + num_multimask_outputs), or one for all.
        """
        last = self.iou_prediction_head.layers[-1]
        assert isinstance(last, nn.Linear)
        n = last.out_features
        scale = torch.as_tensor(scale, dtype=last.weight.dtype, device=last.weight.device)
        shift = torch.as_tensor(shift, dtype=last.weight.dtype, device=last.weight.device)
        if scale.numel() not in (1, n) or shift.numel() not in (1, n):
            raise ValueError(f"scale and shift need 1 or {n} values each")
        scale, shift = scale.reshape(-1).expand(n), shift.reshape(-1).expand(n)
        last.weight.mul_(scale[:, None])
        last.bias.mul_(scale).add_(shift)

    def output_tokens(self) -> Tensor:
        """(T, C) learned output tokens put before the prompt tokens: IoU, then the masks'."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def run_transformer(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """The two-way transformer on the output and prompt tokens.

        Returns:
            tokens (B, T + K, C) (output tokens first) and the image side (B, C, h, w).
        """
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = self.output_tokens().unsqueeze(0).expand(b, -1, -1)  # (B, T, C)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(
                f"image_embeddings batch {image_embeddings.shape[0]} must be 1 or match the "
                f"{b} prompts"
            )
        dense = dense_prompt_embeddings
        if image_embeddings.shape[0] == 1 and dense.shape[0] > 1 and dense.stride(0) == 0:
            # No mask prompt: the dense embedding is the same for every prompt (an expanded
            # view), so the image side stays batch 1 and broadcasts in the transformer until
            # the prompts first change it.
            dense = dense[:1]
        src = image_embeddings + dense  # (Bi, C, h, w)
        _, c, h, w = src.shape
        hs, src_out = self.transformer(src, image_pe, tokens)
        return hs, src_out.transpose(1, 2).reshape(b, c, h, w)  # (B, hw, C) -> (B, C, h, w)

    def masks_from_tokens(self, mask_tokens: Tensor, src_grid: Tensor) -> Tensor:
        """Mask logits from the transformer's mask tokens (B, M, C) and image side
        (B, C, h, w): upscale the image side 4x, then one hypernetwork product per token.
        Returns (B, M, 4h, 4w)."""
        upscaled = self.output_upscaling(src_grid)  # (B, C/8, 4h, 4w)
        return self.hypernetwork_masks(mask_tokens, upscaled)

    def hypernetwork_masks(self, mask_tokens: Tensor, upscaled: Tensor) -> Tensor:
        """(B, M, C) mask tokens and (B, C/8, 4h, 4w) upscaled features -> (B, M, 4h, 4w)."""
        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, M, C/8)
        b, c8, uh, uw = upscaled.shape
        return (hyper_in @ upscaled.view(b, c8, uh * uw)).view(b, -1, uh, uw)
