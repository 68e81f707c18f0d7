"""The generator against a literal transcription of the original recipe (same model, our ops),
plus the behaviour of each filter, crops, small-region removal, output modes and fast mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyseg.automatic import AmgConfig, SamAutomaticMaskGenerator
from anyseg.automatic.decode import upscale_logits
from anyseg.automatic.grids import build_all_layer_point_grids, generate_crop_boxes
from anyseg.modeling import Sam
from anyseg.ops.boxes import (
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    is_box_near_crop_edge,
    uncrop_masks,
)
from anyseg.ops.masks import mask_to_box, stability_score
from anyseg.ops.rle import decode_rle, uncompressed_rle_to_mask
from anyseg.predictor import SamPredictor

LOOSE = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 0.7}
# The test model's logits are small: a small offset makes stability scores vary (0.13-0.33).
FILTERS = {
    "pred_iou_thresh": 0.2,
    "stability_score_offset": 0.05,
    "stability_score_thresh": 0.27,
    "box_nms_thresh": 1.0,
}


def naive_amg(model: Sam, image: np.ndarray, cfg: AmgConfig) -> list[dict]:
    """The original algorithm step by step: decode every prompt, upscale every mask, filter."""
    predictor = SamPredictor(model)
    h, w = image.shape[:2]
    grids = build_all_layer_point_grids(cfg.points_per_side, cfg.crop_n_layers, 1)
    crops = generate_crop_boxes((h, w), cfg.crop_n_layers, cfg.crop_overlap_ratio)
    per_crop = []
    for crop in crops:
        x0, y0, x1, y1 = crop.xyxy
        predictor.set_image(image[y0:y1, x0:x1])
        points = grids[crop.layer] * np.array([[x1 - x0, y1 - y0]])
        logits = []
        ious = []
        with torch.inference_mode():
            for s in range(0, len(points), cfg.points_per_batch):
                batch = points[s : s + cfg.points_per_batch]
                coords = torch.as_tensor(predictor.transform_coords(batch))[:, None]
                m, iou, _ = predictor.predict_torch(
                    coords, torch.ones(coords.shape[:2], dtype=torch.int), return_logits=True
                )
                logits.append(m.flatten(0, 1))
                ious.append(iou.flatten())
        lg, iou = torch.cat(logits), torch.cat(ious)
        pts = torch.as_tensor(np.repeat(points, 3, axis=0))
        keep = iou > cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0 else torch.ones_like(iou) > 0
        lg, iou, pts = lg[keep], iou[keep], pts[keep]
        stab = stability_score(lg, 0.0, cfg.stability_score_offset)
        if cfg.stability_score_thresh > 0:
            keep = stab >= cfg.stability_score_thresh
            lg, iou, pts, stab = lg[keep], iou[keep], pts[keep], stab[keep]
        masks = lg > 0
        boxes = mask_to_box(masks)
        keep = ~is_box_near_crop_edge(boxes, crop.xyxy, [0, 0, w, h])
        masks, boxes, iou, pts, stab = masks[keep], boxes[keep], iou[keep], pts[keep], stab[keep]
        keep = batched_nms(boxes.float(), iou, torch.zeros(len(iou)), cfg.box_nms_thresh)
        off = torch.tensor([x0, y0, x0, y0])
        per_crop.append(
            {
                "masks": uncrop_masks(masks[keep], crop.xyxy, h, w),
                "boxes": boxes[keep] + off,
                "iou": iou[keep],
                "points": pts[keep] + off[:2],
                "stab": stab[keep],
                "crop": torch.tensor([crop.xyxy] * len(keep), dtype=torch.int64).reshape(-1, 4),
            }
        )
    data = {k: torch.cat([c[k] for c in per_crop]) for k in per_crop[0]}
    if len(crops) > 1:
        keep = batched_nms(
            data["boxes"].float(),
            1 / box_area(data["crop"]),
            torch.zeros(len(data["iou"])),
            cfg.crop_nms_thresh,
        )
        data = {k: v[keep] for k, v in data.items()}
    return [
        {
            "mask": data["masks"][i].numpy(),
            "bbox": box_xyxy_to_xywh(data["boxes"][i]).tolist(),
            "predicted_iou": data["iou"][i].item(),
            "point_coords": [data["points"][i].tolist()],
            "stability_score": data["stab"][i].item(),
            "crop_box": box_xyxy_to_xywh(data["crop"][i]).tolist(),
        }
        for i in range(len(data["iou"]))
    ]


def assert_same_records(ours: list[dict], expected: list[dict]) -> None:
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected, strict=True):
        mask = a["segmentation"]
        assert (mask != b["mask"]).mean() <= 1e-3
        assert a["area"] == pytest.approx(b["mask"].sum(), rel=1e-3)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1)
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-5)
        assert a["point_coords"] == b["point_coords"]
        assert a["crop_box"] == b["crop_box"]


@pytest.mark.parametrize(
    "options",
    [
        {**LOOSE, "points_per_side": 5, "points_per_batch": 7, "box_nms_thresh": 1.0},
        {**FILTERS, "points_per_side": 6},
        {**FILTERS, "points_per_side": 3, "crop_n_layers": 1, "min_mask_region_area": 0},
    ],
    ids=["all-masks", "filters", "crops"],
)
def test_generator_matches_the_original_recipe(
    test_model: Sam, small_image: np.ndarray, options: dict
) -> None:
    cfg = AmgConfig(**options)
    ours = SamAutomaticMaskGenerator(test_model, config=cfg).generate(small_image)
    expected = naive_amg(test_model, small_image, cfg)
    assert len(expected) > 0
    assert_same_records(ours, expected)


@pytest.mark.parametrize(("input_hw", "crop_hw"), [((256, 256), (96, 96)), ((171, 256), (60, 90))])
def test_upscale_is_bit_identical_to_postprocess(
    test_model: Sam, input_hw: tuple[int, int], crop_hw: tuple[int, int]
) -> None:
    low_res = torch.randn(4, 64, 64, generator=torch.Generator().manual_seed(0)) * 5
    ours = upscale_logits(test_model, low_res, input_hw, crop_hw)
    ref = test_model.postprocess_masks(low_res[:, None], input_hw, crop_hw)[:, 0]
    assert torch.equal(ours, ref)
    # Chunking changes nothing either.
    assert torch.equal(upscale_logits(test_model, low_res[2:], input_hw, crop_hw), ref[2:])


def test_output_modes_agree(test_model: Sam, small_image: np.ndarray) -> None:
    opts = {**LOOSE, "points_per_side": 3, "box_nms_thresh": 1.0}
    outs = {
        mode: SamAutomaticMaskGenerator(test_model, output_mode=mode, **opts).generate(small_image)
        for mode in ("binary_mask", "uncompressed_rle", "coco_rle")
    }
    assert len(outs["coco_rle"]) == 27
    for b, u, c in zip(*outs.values(), strict=True):
        assert b["segmentation"].dtype == bool and b["segmentation"].shape == (96, 128)
        assert np.array_equal(uncompressed_rle_to_mask(u["segmentation"]), b["segmentation"])
        assert np.array_equal(decode_rle(c["segmentation"]), b["segmentation"])
        assert isinstance(c["segmentation"]["counts"], str)
        assert b["area"] == int(b["segmentation"].sum())
        x, y, bw, bh = b["bbox"]
        ys, xs = np.nonzero(b["segmentation"])
        assert (x, y, x + bw, y + bh) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_fast_mode_stays_close_to_exact(test_model: Sam, small_image: np.ndarray) -> None:
    opts = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    exact = SamAutomaticMaskGenerator(test_model, **opts).generate_records(small_image)
    fast = SamAutomaticMaskGenerator(test_model, mode="fast", **opts).generate_records(small_image)
    assert len(fast) > 0
    for f in fast:
        best = max(_mask_iou(f.mask(), e.mask()) for e in exact)
        assert best > 0.9


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_progress_reports_every_batch(test_model: Sam, small_image: np.ndarray) -> None:
    calls: list[tuple[int, int]] = []
    gen = SamAutomaticMaskGenerator(test_model, points_per_side=4, points_per_batch=5)
    gen.generate_records(small_image, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 4) for i in range(1, 5)]  # 16 points in batches of 5


def test_filter_stats_count_each_stage(test_model: Sam, small_image: np.ndarray) -> None:
    from anyseg.automatic import FilterStats

    open_gen = SamAutomaticMaskGenerator(
        test_model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    records = open_gen.generate_records(small_image)
    stats = open_gen.last_stats
    assert stats.proposed == 4 * 4 * 3 == stats.after_pred_iou == stats.after_stability
    assert stats.kept == len(records) > 0 and stats.hint(open_gen.config) is None
    # A predicted-IoU threshold above every prediction keeps nothing, and says why.
    closed = SamAutomaticMaskGenerator(
        test_model, points_per_side=4, pred_iou_thresh=stats.max_pred_iou + 1e-3
    )
    assert closed.generate_records(small_image) == []
    hint = closed.last_stats.hint(closed.config)
    assert closed.last_stats.after_pred_iou == 0 and hint is not None
    assert "--pred-iou-thresh" in hint and f"{stats.max_pred_iou:.2f}" in hint
    # Through the IoU filter, stopped by stability: the hint names the stability option.
    unstable = FilterStats(proposed=48, after_pred_iou=10, after_stability=0, kept=0)
    assert "--stability-score-thresh" in (unstable.hint(closed.config) or "")
