"""``Sam``: the image encoder, prompt encoder and mask decoder composed (paper §3).

Differentiable end to end: training uses it directly. Inference state (a cached image
embedding) lives in :class:`anyseg.predictor.SamPredictor`, not here.

The config picks the boxes of each checkpoint family: a ViT (SAM) or TinyViT (MobileSAM) image
encoder, and SAM's decoder or SAM-HQ's. :meth:`Sam.encode` and :meth:`Sam.decode` are the two
halves every caller uses, whatever the family: an HQ model's encoding also carries its per-image
HQ features, and its decoder needs them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anyseg.config import AmgThresholds, ImageEncoderConfig, SamConfig, TextClipRecord
from anyseg.errors import InvalidInputError
from anyseg.modeling.hq_decoder import MaskDecoderHQ
from anyseg.modeling.image_encoder import ImageEncoderViT
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.prompt_encoder import PromptEncoder
from anyseg.modeling.tiny_vit import TinyViT


class ImageEncoding(NamedTuple):
    """What the decoder needs of an image.

    Attributes:
        embedding: (B, C, h, w) image embedding (256x64x64 for the released models).
        hq_features: (B, C/8, 4h, 4w) SAM-HQ's fused early/final features; None for models
            without the HQ decoder.
    """

    embedding: Tensor
    hq_features: Tensor | None


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
        self.image_encoder: ImageEncoderViT | TinyViT = (
            ImageEncoderViT(enc) if isinstance(enc, ImageEncoderConfig) else TinyViT(enc)
        )
        self.prompt_encoder = PromptEncoder(
            config.prompt_encoder,
            image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size),
        )
        self.mask_decoder: MaskDecoder = (
            MaskDecoder(config.mask_decoder)
            if config.hq is None
            else MaskDecoderHQ(config.mask_decoder, enc.early_dim, config.hq)
        )
        self.mask_threshold = config.mask_threshold
        # Which CLIP the text path was trained with (set by training and by the loader).
        self.text_clip: TextClipRecord | None = None
        #: The automatic generator's thresholds this model recommends (checkpoint metadata).
        self.amg_thresholds: AmgThresholds | None = None
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        """Side of the square encoder input (1024 for the official models)."""
        return self.image_encoder.img_size

    @property
    def has_text(self) -> bool:
        """Whether the prompt encoder takes text (CLIP) embeddings."""
        return self.prompt_encoder.has_text

    @property
    def is_hq(self) -> bool:
        """Whether the decoder is SAM-HQ's (it needs :attr:`ImageEncoding.hq_features`)."""
        return isinstance(self.mask_decoder, MaskDecoderHQ)

    def encode(self, images: Tensor) -> ImageEncoding:
        """Encode (B, 3, S, S) preprocessed images (see :meth:`preprocess`)."""
        embedding, early = self.encode_features(images)
        return ImageEncoding(embedding, self.hq_features(embedding, early))

    def encode_features(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """The image encoder alone: embedding (B, C, h, w) and, for SAM-HQ models, the early
        features it fuses (B, D, h, w), else None."""
        if not isinstance(self.mask_decoder, MaskDecoderHQ):
            return self.image_encoder(images), None
        return self.image_encoder.forward_with_early(images)

    def hq_features(self, embedding: Tensor, early: Tensor | None) -> Tensor | None:
        """SAM-HQ's per-image fusion (part of its decoder: trained with it), or None."""
        if not isinstance(self.mask_decoder, MaskDecoderHQ) or early is None:
            return None
        return self.mask_decoder.fuse_features(embedding, early)

    def decode(
        self,
        image_embeddings: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        hq_features: Tensor | None = None,
        hq_token_only: bool | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the mask decoder for B prompts on one (or B) image embedding(s).

        Args:
            image_embeddings: (1 or B, C, h, w).
            sparse_prompt_embeddings: (B, K, C) and dense_prompt_embeddings (B, C, h, w) from
                the prompt encoder.
            multimask_output: SAM: the 3 ambiguity masks instead of 1; SAM-HQ: SAM's part is
                the best of those 3 (one mask either way).
            hq_features: (1 or B, C/8, 4h, 4w), required by (and only by) SAM-HQ models.
            hq_token_only: SAM-HQ: the HQ mask alone (default: the config's choice).

        Returns:
            low-res logits (B, M, 4h, 4w) and predicted IoU (B, M); M is 3 or 1 (always 1 for
            SAM-HQ).
        """
        hq: dict[str, Any] = {}
        if isinstance(self.mask_decoder, MaskDecoderHQ):
            if hq_features is None:
                raise InvalidInputError(
                    "this SAM-HQ model needs the image's hq_features (from Sam.encode) as well "
                    "as its embedding"
                )
            hq = {"hq_features": hq_features, "hq_token_only": hq_token_only}
        return self.mask_decoder(
            image_embeddings,
            self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            multimask_output,
            **hq,
        )

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
        self,
        batched_input: list[dict[str, Any]],
        multimask_output: bool,
        hq_token_only: bool | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """End-to-end prediction for a list of images, each with its own prompts.

        Each input dict has ``image`` (3, h, w) resized pixels, ``original_size`` (H, W) and
        optionally ``point_coords`` (B, N, 2), ``point_labels`` (B, N), ``boxes`` (B, 4),
        ``mask_inputs`` (B, 1, 4h', 4w'), all in the model frame, and ``text_embeddings`` (B, E)
        (CLIP embeddings, models with the text path). Each output dict has ``masks``
        (B, C, H, W) bool, ``iou_predictions`` (B, C) and ``low_res_logits`` (B, C, 4h', 4w').
        """
        images = torch.stack([self.preprocess(rec["image"]) for rec in batched_input], dim=0)
        encoding = self.encode(images)
        outputs = []
        for i, (rec, embedding) in enumerate(zip(batched_input, encoding.embedding, strict=True)):
            hq = None if encoding.hq_features is None else encoding.hq_features[i : i + 1]
            points = None
            if "point_coords" in rec:
                points = (rec["point_coords"], rec["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points,
                boxes=rec.get("boxes"),
                masks=rec.get("mask_inputs"),
                text=rec.get("text_embeddings"),
            )
            low_res, iou = self.decode(
                embedding.unsqueeze(0), sparse, dense, multimask_output, hq, hq_token_only
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
