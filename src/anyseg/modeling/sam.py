"""``Sam``: the image encoder, prompt encoder and mask decoder composed (paper §3).

Differentiable end to end: training uses it directly. Inference state (a cached image
embedding) lives in :class:`anyseg.predictor.SamPredictor`, not here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from anyseg.config import SamConfig
from anyseg.modeling.image_encoder import ImageEncoderViT
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.prompt_encoder import PromptEncoder


class Sam(nn.Module):
    """Segment Anything model.

    State-dict keys are exactly those of the official release (``image_encoder.*``,
    ``prompt_encoder.*``, ``mask_decoder.*``); ``pixel_mean``/``pixel_std`` are non-persistent.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        enc = config.image_encoder
        grid = enc.embedding_size
        self.image_encoder = ImageEncoderViT(enc)
        self.prompt_encoder = PromptEncoder(
            config.prompt_encoder,
            image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size),
        )
        self.mask_decoder = MaskDecoder(config.mask_decoder)
        self.mask_threshold = config.mask_threshold
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        """Side of the square encoder input (1024 for the official models)."""
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (B, 3, h, w) resized pixels (0..255) and zero-pad to (B, 3, S, S)."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits (B, C, 4h, 4w) -> logits at the original image size (B, C, H, W).

        Upscale to the padded input, crop the padding (``input_size`` is the resized image's
        (h, w)), then resize to ``original_size`` (H, W); bilinear, as the original.
        """
        masks = F.interpolate(
            masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False
        )
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """End-to-end prediction for a list of images, each with its own prompts.

        Each input dict has ``image`` (3, h, w) resized pixels, ``original_size`` (H, W) and
        optionally ``point_coords`` (B, N, 2), ``point_labels`` (B, N), ``boxes`` (B, 4) and
        ``mask_inputs`` (B, 1, 4h', 4w'), all in the model frame. Each output dict has ``masks``
        (B, C, H, W) bool, ``iou_predictions`` (B, C) and ``low_res_logits`` (B, C, 4h', 4w').
        """
        images = torch.stack([self.preprocess(rec["image"]) for rec in batched_input], dim=0)
        embeddings = self.image_encoder(images)
        outputs = []
        for rec, embedding in zip(batched_input, embeddings, strict=True):
            points = None
            if "point_coords" in rec:
                points = (rec["point_coords"], rec["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=rec.get("boxes"), masks=rec.get("mask_inputs")
            )
            low_res, iou = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(low_res, rec["image"].shape[-2:], rec["original_size"])
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs


def build_sam(config: SamConfig) -> Sam:
    """Build a randomly initialised SAM for ``config`` (eval mode)."""
    return Sam(config).eval()
