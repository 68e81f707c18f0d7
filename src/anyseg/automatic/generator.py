"""Fully automatic mask generation: the third stage of the SAM data engine (paper §4, app. B).

Prompt the model with a regular grid of points over the image (and optionally over zoomed-in
crops), keep the confident and stable masks, remove duplicates, and return them as records.

In ``exact`` mode the records are the original ``SamAutomaticMaskGenerator``'s, in the same
order; the work it wastes is skipped (masks are upscaled only after the IoU filter, the image
embedding is never copied per prompt, RLE and boxes are vectorized). ``fast`` mode adds the
predictor's fast arithmetic (:mod:`anyseg.precision`: bfloat16 or int8 where this machine does
them well) and a low-resolution stability pre-filter.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from anyseg.automatic.config import AmgConfig
from anyseg.automatic.decode import low_res_stability, upscale_chunk_size, upscale_logits
from anyseg.automatic.grids import CropBox, build_all_layer_point_grids, generate_crop_boxes
from anyseg.automatic.records import Candidates, MaskRecord, records_from_candidates
from anyseg.io import MIN_SIDE, ImageLike, to_rgb_uint8
from anyseg.modeling import Sam
from anyseg.modeling.shared_decode import decode_low_res_masks, decode_tokens
from anyseg.modeling.shared_transformer import ImageSide
from anyseg.ops.boxes import (
    batched_nms,
    box_area,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from anyseg.ops.masks import mask_to_box, remove_small_regions, stability_score
from anyseg.ops.rle import masks_to_uncompressed_rle, uncompressed_rle_to_mask
from anyseg.ops.transforms import apply_coords
from anyseg.precision import FastPath
from anyseg.predictor import SamPredictor

if TYPE_CHECKING:
    from anyseg.automatic.labels import MaskLabeller
    from anyseg.clip import ClipOptions, LoadedClip

# Fast mode keeps masks whose low-res stability is within this margin of the threshold; the
# exact full-resolution score then decides.
FAST_STABILITY_MARGIN = 0.05

ProgressFn = Callable[[int, int], None]


@dataclass
class FilterStats:
    """What the filters did to the last image's masks (``generator.last_stats``).

    Attributes:
        proposed: masks decoded (3 per prompt point, all crops).
        after_pred_iou: masks left after the predicted-IoU filter.
        after_stability: masks left after the stability filter.
        kept: masks in the result (after the edge filter, NMS and small-region clean-up).
        max_pred_iou: the highest predicted IoU of any proposed mask (nan if none).
    """

    proposed: int = 0
    after_pred_iou: int = 0
    after_stability: int = 0
    kept: int = 0
    max_pred_iou: float = float("nan")

    def hint(self, config: AmgConfig) -> str | None:
        """Why nothing was kept, and which option to change; None when masks were kept."""
        if self.kept or not self.proposed:
            return None
        if self.after_pred_iou == 0:
            return (
                f"no mask passed the predicted-IoU filter (highest predicted IoU "
                f"{self.max_pred_iou:.2f}, threshold {config.iou_threshold}): lower "
                "--pred-iou-thresh"
            )
        if self.after_stability == 0:
            return (
                f"{self.after_pred_iou} masks passed the predicted-IoU filter, none the stability "
                f"filter (threshold {config.stability_threshold}): lower "
                "--stability-score-thresh"
            )
        return "every mask touched a crop edge or was removed as a duplicate"


class SamAutomaticMaskGenerator:
    """Generates masks for a whole image from a grid of point prompts.

    Construct with keyword arguments named as in the original (``points_per_side=32``, ...) or
    with ``config=AmgConfig(...)``; see :class:`anyseg.automatic.AmgConfig` for their meaning.
    ``fast_path`` forces fast mode's arithmetic (default: the one ``choose_fast_path`` picks).
    """

    def __init__(
        self,
        model: Sam,
        config: AmgConfig | None = None,
        *,
        fast_path: FastPath | None = None,
        clip: LoadedClip | ClipOptions | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """``clip``: the CLIP of ``label_vocab`` labels (default: the bundled one)."""
        if config is not None and kwargs:
            raise TypeError(
                f"give either config or keyword options, not both (got {sorted(kwargs)})"
            )
        # Unset thresholds: the model's recommendation (its checkpoint metadata), else the paper's.
        unresolved = config if config is not None else AmgConfig(**kwargs)
        self.config = unresolved.resolved_for(getattr(model, "amg_thresholds", None))
        cfg = self.config
        if cfg.point_grids is not None:
            self.point_grids = list(cfg.point_grids)
        else:
            assert cfg.points_per_side is not None  # AmgConfig guarantees one of the two
            self.point_grids = build_all_layer_point_grids(
                cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
            )
        # Fast mode encodes and decodes in the arithmetic the predictor picks for this machine.
        self.predictor = SamPredictor(model, mode=cfg.mode, fast_path=fast_path)
        self.model = model
        self.labeller: MaskLabeller | None = None
        if cfg.label_vocab:
            from anyseg.automatic.labels import MaskLabeller
            from anyseg.clip import as_loaded_clip

            self.labeller = MaskLabeller(as_loaded_clip(clip, model.device), cfg.label_vocab)
        self.last_stats = FilterStats()
        self.decoder = self.predictor.decoder

    @property
    def fast(self) -> bool:
        return self.config.mode == "fast"

    # ------------------------------------------------------------------------------ public
    def generate(self, image: ImageLike) -> list[dict[str, Any]]:
        """Masks of ``image`` as the original's record dicts.

        Args:
            image: (H, W, 3) uint8 RGB array (or anything :func:`anyseg.io.to_rgb_uint8`
                accepts: PIL image, path, grayscale, ...).

        Returns:
            One dict per mask: ``segmentation`` (per ``output_mode``), ``area``, ``bbox`` (XYWH),
            ``predicted_iou``, ``point_coords`` ([[x, y]]), ``stability_score``, ``crop_box``
            (XYWH); all in image pixels.
        """
        return [r.to_dict(self.config.output_mode) for r in self.generate_records(image)]

    @torch.inference_mode()
    def generate_records(
        self, image: ImageLike, progress: ProgressFn | None = None
    ) -> list[MaskRecord]:
        """Masks of ``image`` as typed records (see :meth:`generate`).

        Args:
            image: the image (see :meth:`generate`).
            progress: called as ``progress(done, total)`` after each batch of prompts.
        """
        cfg = self.config
        rgb = to_rgb_uint8(image)
        size_hw = (rgb.shape[0], rgb.shape[1])
        crops = generate_crop_boxes(size_hw, cfg.crop_n_layers, cfg.crop_overlap_ratio)
        # Deep crop layers on tiny images give crops under 2 px (the original fails on them)
        crops = [c for c in crops if min(c.x1 - c.x0, c.y1 - c.y0) >= MIN_SIDE]
        counter = _BatchCounter(crops, self.point_grids, cfg.points_per_batch, progress)
        self.last_stats = FilterStats()

        # Predict, filter and deduplicate the masks of each crop
        candidates = Candidates.cat([self._process_crop(rgb, c, counter) for c in crops])

        # Remove duplicates between crops, preferring masks from smaller crops
        if len(crops) > 1:
            scores = 1 / box_area(candidates.crop_boxes_xyxy)
            keep = batched_nms(
                candidates.boxes_xyxy.float(),
                scores,
                torch.zeros(len(candidates), dtype=torch.int64),
                cfg.crop_nms_thresh,
            )
            candidates = candidates.select(keep)

        # Fill small holes and drop small islands, then remove new duplicates
        if cfg.min_mask_region_area > 0:
            candidates = remove_small_regions_and_dedupe(
                candidates,
                cfg.min_mask_region_area,
                max(cfg.box_nms_thresh, cfg.crop_nms_thresh),
            )
        self.last_stats.kept = len(candidates)
        records = records_from_candidates(candidates)

        # Name each mask with the best-matching phrase of the label vocabulary (CLIP)
        if self.labeller is not None:
            records = self.labeller.label(rgb, records)
        return records

    # --------------------------------------------------------------------------- per crop
    def _process_crop(self, image: np.ndarray, crop: CropBox, counter: _BatchCounter) -> Candidates:
        cfg = self.config
        x0, y0, x1, y1 = crop.xyxy
        crop_hw = (y1 - y0, x1 - x0)

        # Encode the crop
        self.predictor.set_image(image[y0:y1, x0:x1])
        image_side = self.predictor.image_side()
        assert self.predictor.input_size is not None
        input_hw = self.predictor.input_size

        # Scale the layer's grid to the crop's pixels
        points_xy = self.point_grids[crop.layer] * np.array([[crop_hw[1], crop_hw[0]]])

        # Decode the grid in batches, keeping confident, stable masks away from crop edges
        parts = []
        for start in range(0, len(points_xy), cfg.points_per_batch):
            batch = points_xy[start : start + cfg.points_per_batch]
            parts.append(self._process_batch(batch, image_side, input_hw, crop, image.shape[:2]))
            counter.tick()
        self.predictor.reset_image()
        candidates = Candidates.cat(parts)

        # Remove duplicates within the crop
        keep = batched_nms(
            candidates.boxes_xyxy.float(),
            candidates.iou_preds,
            torch.zeros(len(candidates), dtype=torch.int64),
            cfg.box_nms_thresh,
        )
        candidates = candidates.select(keep)

        # Return to the image frame
        return candidates.replace(
            boxes_xyxy=uncrop_boxes_xyxy(candidates.boxes_xyxy, crop.xyxy),
            points_xy=uncrop_points(candidates.points_xy, crop.xyxy),
            crop_boxes_xyxy=torch.tensor([crop.xyxy], dtype=torch.int64).repeat(len(candidates), 1),
        )

    def _process_batch(
        self,
        points_xy: np.ndarray,
        image_side: ImageSide,
        input_hw: tuple[int, int],
        crop: CropBox,
        image_hw: tuple[int, ...],
    ) -> Candidates:
        cfg = self.config
        model = self.model
        crop_hw = (crop.y1 - crop.y0, crop.x1 - crop.x0)
        device = model.device
        threshold = model.mask_threshold

        # Run the prompt encoder, transformer and IoU head (no masks yet)
        points_input = torch.as_tensor(
            apply_coords(points_xy, crop_hw, model.img_size), device=device
        )
        tokens = decode_tokens(model, image_side, points_input, self.decoder)

        # Filter by predicted IoU, before any mask is computed
        per_prompt = tokens.iou_preds.shape[1]  # 3 candidates (SAM) or 1 (SAM-HQ)
        iou_preds = tokens.iou_preds.flatten()  # (B, K) -> (B*K,): prompt-major, as the original
        keep = torch.ones_like(iou_preds, dtype=torch.bool)
        if cfg.iou_threshold > 0.0:
            keep = iou_preds > cfg.iou_threshold
        kept = torch.nonzero(keep).flatten()
        stats = self.last_stats
        stats.proposed += iou_preds.numel()
        stats.after_pred_iou += kept.numel()
        if iou_preds.numel():
            top = float(iou_preds.max())
            stats.max_pred_iou = (
                top if math.isnan(stats.max_pred_iou) else max(stats.max_pred_iou, top)
            )
        if kept.numel() == 0:
            return Candidates.empty()

        # Predict low-res masks for the prompts that still have one
        prompts, slots = kept // per_prompt, kept % per_prompt
        unique_prompts, inverse = torch.unique(prompts, return_inverse=True)
        low_res_all = decode_low_res_masks(
            model, tokens, unique_prompts, self.decoder, hq_features=self.predictor.hq_features
        )
        low_res = low_res_all[inverse, slots]  # (K, 4h, 4w)
        points = torch.as_tensor(points_xy, dtype=torch.float64)[prompts.cpu()]
        iou_preds = iou_preds[kept]

        # Fast mode: drop masks that are clearly unstable at low resolution
        if self.fast and cfg.stability_threshold > 0.0:
            rough = low_res_stability(
                low_res, input_hw, model.img_size, threshold, cfg.stability_score_offset
            )
            ok = torch.nonzero(rough >= cfg.stability_threshold - FAST_STABILITY_MARGIN).flatten()
            low_res, points, iou_preds = low_res[ok], points[ok.cpu()], iou_preds[ok]

        # Upscale to the crop, then: stability score and filter, threshold, boxes, edge filter
        parts = []
        chunk = upscale_chunk_size(model, crop_hw)
        for start in range(0, low_res.shape[0], chunk):
            sl = slice(start, start + chunk)
            logits = upscale_logits(model, low_res[sl], input_hw, crop_hw)
            parts.append(
                self._threshold_and_encode(logits, iou_preds[sl], points[sl], crop, image_hw)
            )
        return Candidates.cat(parts)

    def _threshold_and_encode(
        self,
        logits: torch.Tensor,
        iou_preds: torch.Tensor,
        points_xy: torch.Tensor,
        crop: CropBox,
        image_hw: tuple[int, ...],
    ) -> Candidates:
        cfg = self.config
        threshold = self.model.mask_threshold

        # Stability score, and filter
        stability = stability_score(logits, threshold, cfg.stability_score_offset)
        if cfg.stability_threshold > 0.0:
            keep = stability >= cfg.stability_threshold
            logits, iou_preds, points_xy, stability = (
                logits[keep],
                iou_preds[keep],
                points_xy[keep.cpu()],
                stability[keep],
            )

        self.last_stats.after_stability += int(logits.shape[0])

        # Threshold masks and compute their boxes
        masks = logits > threshold
        boxes = mask_to_box(masks)

        # Drop masks touching the crop's edges (unless those are the image's)
        near_edge = is_box_near_crop_edge(boxes, crop.xyxy, [0, 0, image_hw[1], image_hw[0]])
        if near_edge.any():
            keep = ~near_edge
            masks, boxes, iou_preds, points_xy, stability = (
                masks[keep],
                boxes[keep],
                iou_preds[keep],
                points_xy[keep.cpu()],
                stability[keep],
            )

        # Run-length encode in the image frame
        full = uncrop_masks(masks, crop.xyxy, int(image_hw[0]), int(image_hw[1]))
        return Candidates(
            rles=masks_to_uncompressed_rle(full),
            boxes_xyxy=boxes.cpu(),
            iou_preds=iou_preds.float().cpu(),
            points_xy=points_xy,
            stability=stability.cpu(),
            crop_boxes_xyxy=torch.zeros(len(boxes), 4, dtype=torch.int64),  # set per crop
        )


def remove_small_regions_and_dedupe(
    candidates: Candidates, min_area: int, nms_thresh: float
) -> Candidates:
    """Fill holes and remove islands smaller than ``min_area`` pixels in every mask, then drop
    masks that became duplicates, preferring masks that needed no change (box NMS)."""
    if len(candidates) == 0:
        return candidates
    rles = list(candidates.rles)
    boxes = []
    unchanged = []
    for i, rle in enumerate(candidates.rles):
        mask = uncompressed_rle_to_mask(rle)
        mask, filled = remove_small_regions(mask, min_area, "holes")
        mask, trimmed = remove_small_regions(mask, min_area, "islands")
        boxes.append(mask_to_box(torch.from_numpy(mask)))
        unchanged.append(not (filled or trimmed))
        if filled or trimmed:
            rles[i] = masks_to_uncompressed_rle(torch.from_numpy(mask)[None])[0]
    new_boxes = torch.stack(boxes)
    scores = torch.tensor(unchanged, dtype=torch.float32)
    keep = batched_nms(
        new_boxes.float(), scores, torch.zeros(len(candidates), dtype=torch.int64), nms_thresh
    )
    return candidates.replace(rles=rles, boxes_xyxy=new_boxes).select(keep)


class _BatchCounter:
    """Counts decoded batches over all crops for a ``progress(done, total)`` callback."""

    def __init__(
        self,
        crops: list[CropBox],
        grids: list[np.ndarray],
        batch: int,
        progress: ProgressFn | None,
    ) -> None:
        self.total = sum(-(-len(grids[c.layer]) // batch) for c in crops)
        self.done = 0
        self.progress = progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
