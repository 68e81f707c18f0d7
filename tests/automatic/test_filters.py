"""Each filter of the generator, on masks with known shapes.

A random model predicts speckle that covers the whole image, which makes every box the full
image. Here the decoder is replaced by blobs around each prompt point (three radii for the three
multimask outputs, a small detached island on the first), so the crop-edge filter, NMS within and
across crops and small-region removal all act on masks with meaningful boxes.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from anyseg.automatic import SamAutomaticMaskGenerator, generator, to_image_record
from anyseg.modeling import Sam
from anyseg.modeling.shared_decode import TokenOutputs
from anyseg.ops.boxes import box_iou
from anyseg.ops.masks import stability_score

RADII = (6.0, 14.0, 40.0)  # model-frame pixels (the test model's input is 256 px)


def blob_iou(points_input: torch.Tensor) -> torch.Tensor:
    """(B, 2) -> (B, 3) deterministic 'predicted IoU' in (0.1, 0.9)."""
    x, y = points_input[:, 0].float(), points_input[:, 1].float()
    return torch.stack([0.5 + 0.4 * torch.sin(0.07 * x + 1.3 * k + 0.05 * y) for k in range(3)], 1)


def blob_logits(points_input: torch.Tensor) -> torch.Tensor:
    """(P, 2) model-frame points -> (P, 3, 64, 64) logits of discs, with a 2x2 island on mask 0."""
    centres = (torch.arange(64, dtype=torch.float32) + 0.5) * 4  # low-res pixel centres
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    pts = points_input.float()
    dist = torch.hypot(xx[None] - pts[:, 0, None, None], yy[None] - pts[:, 1, None, None])
    slope = 0.3 + (pts[:, 0] % 7)[:, None, None] / 10  # varies the stability score
    out = torch.stack([(r - dist) * slope for r in RADII], dim=1)
    iy = ((pts[:, 1] / 4).long() + 8) % 62
    ix = ((pts[:, 0] / 4).long() + 8) % 62
    for i in range(len(pts)):
        out[i, 0, iy[i] : iy[i] + 2, ix[i] : ix[i] + 2] = 3.0
    return out


@pytest.fixture()
def blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_tokens(model: Sam, image, points_input: torch.Tensor, decoder=None):
        b = len(points_input)
        return TokenOutputs(
            iou_preds=blob_iou(points_input),
            mask_tokens=points_input[:, None, :].expand(b, 4, 2),
            feature_chunks=(torch.zeros(b, 1, 1),),
            chunk=b,
            grid_hw=(16, 16),
        )

    def fake_masks(
        model: Sam, tokens: TokenOutputs, prompts: torch.Tensor, decoder=None, hq_features=None
    ):
        return blob_logits(tokens.mask_tokens[prompts, 0])

    monkeypatch.setattr(generator, "decode_tokens", fake_tokens)
    monkeypatch.setattr(generator, "decode_low_res_masks", fake_masks)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::2, ::2])  # 256 x 256


def boxes_xyxy(records: list) -> torch.Tensor:
    return torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r.bbox_xywh for r in records)])


OPEN = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


@pytest.mark.usefixtures("blobs")
def test_iou_filter(test_model: Sam, image: np.ndarray) -> None:
    opts = {**OPEN, "points_per_side": 4}
    everything = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    assert len(everything) == 48  # 16 points x 3 masks, nothing filtered
    opts["pred_iou_thresh"] = 0.6
    kept = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    assert 0 < len(kept) < 48
    assert len(kept) == sum(r.predicted_iou > 0.6 for r in everything)
    assert all(r.predicted_iou > 0.6 for r in kept)


@pytest.mark.usefixtures("blobs")
def test_stability_filter_and_scores(test_model: Sam, image: np.ndarray) -> None:
    opts = {**OPEN, "points_per_side": 4, "stability_score_offset": 0.5}
    everything = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    # The score is the full-resolution one: recompute it from the fake logits.
    for r in everything:
        point = torch.tensor([r.point_xy], dtype=torch.float64)  # 256 px image = model frame
        k = RADII.index(next(rad for rad in RADII if _disc_matches(r, point, rad)))
        logits = test_model.postprocess_masks(
            blob_logits(point)[:, k : k + 1], (256, 256), (256, 256)
        )
        assert r.stability_score == stability_score(logits[0, 0], 0.0, 0.5).item()
    cut = float(np.median([r.stability_score for r in everything]))
    opts["stability_score_thresh"] = cut
    kept = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    assert len(kept) == sum(r.stability_score >= cut for r in everything)
    assert 0 < len(kept) < len(everything)


def _disc_matches(record, point: torch.Tensor, radius: float) -> bool:
    logits = torch.nn.functional.interpolate(
        blob_logits(point)[:, RADII.index(radius)][None], (256, 256), mode="bilinear"
    )[0, 0]
    return int((logits > 0).sum()) == record.area


@pytest.mark.usefixtures("blobs")
def test_box_nms_within_a_crop(test_model: Sam, image: np.ndarray) -> None:
    opts = {**OPEN, "points_per_side": 6, "box_nms_thresh": 0.3}
    records = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    iou = box_iou(boxes_xyxy(records).float(), boxes_xyxy(records).float())
    iou.fill_diagonal_(0)
    assert len(records) > 3 and iou.max() <= 0.3
    scores = [r.predicted_iou for r in records]
    assert scores == sorted(scores, reverse=True)  # NMS order: best first


@pytest.mark.usefixtures("blobs")
def test_crop_edge_filter_and_nms_across_crops(test_model: Sam, image: np.ndarray) -> None:
    opts = {**OPEN, "points_per_side": 4, "crop_n_layers": 1, "crop_nms_thresh": 0.5}
    records = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    crops = [r.crop_box_xywh for r in records]
    assert len(set(crops)) > 2
    for r in records:
        cx, cy, cw, ch = r.crop_box_xywh
        x0, y0, x1, y1 = boxes_xyxy([r])[0].tolist()
        # No side within 20 px of a crop edge that is not an image edge.
        for side, edge, image_edge in (
            (x0, cx, 0),
            (y0, cy, 0),
            (x1, cx + cw, 256),
            (y1, cy + ch, 256),
        ):
            assert abs(side - edge) > 20 or abs(side - image_edge) <= 20
    iou = box_iou(boxes_xyxy(records).float(), boxes_xyxy(records).float())
    for i in range(len(records)):
        for j in range(len(records)):
            if crops[i] != crops[j]:
                assert iou[i, j] <= 0.5
    areas = [w * h for _, _, w, h in crops]
    assert areas == sorted(areas)  # smaller crops first: they win ties of duplicate masks
    assert areas[-1] == 256 * 256


@pytest.mark.usefixtures("blobs")
def test_small_region_removal(test_model: Sam, image: np.ndarray) -> None:
    opts = {**OPEN, "points_per_side": 3}
    raw = SamAutomaticMaskGenerator(test_model, **opts).generate_records(image)
    islands = [_components(r.mask())[1] for r in raw]
    assert any(len(s) > 1 and min(s) < 100 for s in islands)  # the fake's 8x8 px islands
    cleaned = SamAutomaticMaskGenerator(
        test_model, min_mask_region_area=100, **opts
    ).generate_records(image)
    assert len(cleaned) == len(raw)
    for r in cleaned:
        n, sizes = _components(r.mask())
        assert n == 1 or min(sizes) >= 100
        assert r.area == int(r.mask().sum())
        ys, xs = np.nonzero(r.mask())
        x, y, w, h = r.bbox_xywh
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max(), ys.max())
    # Masks that needed no change come first (NMS score 1 vs 0).
    changed = [len(s) > 1 and min(s) < 100 for s in islands]
    order = [
        next(
            i
            for i, r in enumerate(raw)
            if r.point_xy == c.point_xy and r.predicted_iou == c.predicted_iou
        )
        for c in cleaned
    ]
    flags = [changed[i] for i in order]
    assert flags == sorted(flags)


def _components(mask: np.ndarray) -> tuple[int, list[int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n - 1, stats[1:, cv2.CC_STAT_AREA].tolist()


@pytest.mark.usefixtures("blobs")
def test_empty_results_in_every_output_mode(test_model: Sam, image: np.ndarray) -> None:
    for mode in ("binary_mask", "uncompressed_rle", "coco_rle"):
        gen = SamAutomaticMaskGenerator(
            test_model, points_per_side=3, pred_iou_thresh=0.99, output_mode=mode
        )
        assert gen.generate(image) == []
    record = to_image_record([], 3, "x.png", image.shape[:2])
    assert record.annotations == () and record.width == 256
