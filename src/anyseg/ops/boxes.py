"""Box operations: format conversion, area, IoU, (batched) non-maximum suppression, crop frames.

Boxes are ``(N, 4)`` tensors in pixels. ``XYXY`` is ``(x0, y0, x1, y1)`` with ``x1``/``y1``
exclusive for crop boxes and inclusive (last pixel) for mask boxes, exactly as in the original
SAM. ``XYWH`` is ``(x0, y0, width, height)`` (COCO / SA-1B ``bbox``).

Non-maximum suppression follows torchvision's CPU kernel to the bit, so that automatic mask
generation keeps the same masks in the same order as the original implementation:

- boxes are visited in order of decreasing score, ties broken by lower index first (stable sort);
- a visited box is kept unless an earlier kept box suppressed it;
- a kept box suppresses every later box whose IoU with it is *strictly* greater than the
  threshold, IoU computed in float32 as ``inter / (area_i + area_j - inter)`` (so two empty boxes
  give NaN and never suppress each other, and a threshold >= 1 keeps everything);
- the result lists kept indices in visiting order (decreasing score).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anyseg.errors import InvalidInputError


def _check_boxes(boxes: torch.Tensor, name: str = "boxes") -> None:
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise InvalidInputError(
            f"{name} must have a last dimension of 4, got shape {tuple(boxes.shape)}"
        )


def box_xyxy_to_xywh(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(..., 4) XYXY -> (..., 4) XYWH, same dtype; a new tensor."""
    _check_boxes(boxes_xyxy)
    x0, y0, x1, y1 = boxes_xyxy.unbind(-1)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1)


def box_xywh_to_xyxy(boxes_xywh: torch.Tensor) -> torch.Tensor:
    """(..., 4) XYWH -> (..., 4) XYXY, same dtype; a new tensor."""
    _check_boxes(boxes_xywh)
    x0, y0, w, h = boxes_xywh.unbind(-1)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=-1)


def box_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY -> (N,) areas ``(x1 - x0) * (y1 - y0)`` (ints as int64, halves as float32)."""
    _check_boxes(boxes_xyxy)
    b = _upcast(boxes_xyxy)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_iou(boxes1_xyxy: torch.Tensor, boxes2_xyxy: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU: (N, 4), (M, 4) XYXY -> (N, M) float (0 / 0 gives NaN, as torchvision)."""
    _check_boxes(boxes1_xyxy, "boxes1_xyxy")
    _check_boxes(boxes2_xyxy, "boxes2_xyxy")
    a = _upcast(boxes1_xyxy)
    b = _upcast(boxes2_xyxy)
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union


def _upcast(t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.long()


def nms(boxes_xyxy: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with torchvision's semantics (see the module docstring).

    Args:
        boxes_xyxy: (N, 4) boxes, computed in float32 (as torchvision after ``.float()``).
        scores: (N,) scores, higher is better.
        iou_threshold: a box is suppressed by a kept box when their IoU is > this value.

    Returns:
        (K,) int64 indices into ``boxes_xyxy`` of the kept boxes, by decreasing score.
    """
    _check_boxes(boxes_xyxy)
    if boxes_xyxy.ndim != 2 or scores.ndim != 1 or scores.shape[0] != boxes_xyxy.shape[0]:
        raise InvalidInputError(
            f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes_xyxy.shape)} and "
            f"{tuple(scores.shape)}"
        )
    n = boxes_xyxy.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes_xyxy.device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    b = boxes_xyxy.detach().to(device="cpu", dtype=torch.float32)[order.cpu()].numpy()
    kept_sorted = _greedy_suppress(b, float(iou_threshold))
    return order[torch.from_numpy(kept_sorted).to(order.device)]


def _greedy_suppress(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Positions kept by greedy NMS over boxes (N, 4) float32 already sorted by decreasing score.

    IoUs are float32; the comparison with the threshold is in float64, as in torchvision.
    """
    thr = np.float64(iou_threshold)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x1 - x0) * (y1 - y0)
    n = boxes.shape[0]
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = slice(i + 1, n)
            # Same float32 expression order as torchvision's kernel: bit-identical IoUs.
            w = np.maximum(np.float32(0), np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
            h = np.maximum(np.float32(0), np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest] |= iou > thr  # float32 vs float64 scalar -> float64
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes_xyxy: torch.Tensor, scores: torch.Tensor, categories: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS applied independently per category (boxes of different categories never suppress
    each other), with torchvision's ``batched_nms`` semantics and output order.

    The kept set is the union of :func:`nms` per category. The order follows torchvision: up to
    1000 boxes on CPU (4000 numbers; 5000 boxes elsewhere) it is decreasing score with ties by
    lower index; above that torchvision sorts the kept indices with torch's default
    (non-stable) sort, and so does this function, so ties come out in the same order as there.

    Args:
        boxes_xyxy: (N, 4) boxes.
        scores: (N,) scores.
        categories: (N,) integer category of each box.
        iou_threshold: suppression threshold (IoU strictly greater suppresses).

    Returns:
        (K,) int64 indices of the kept boxes.
    """
    if categories.shape != scores.shape:
        raise InvalidInputError(
            f"categories must have the shape of scores {tuple(scores.shape)}, got "
            f"{tuple(categories.shape)}"
        )
    if boxes_xyxy.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes_xyxy.device)
    keep_mask = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    for category in torch.unique(categories):
        idx = torch.nonzero(categories == category).flatten()
        keep_mask[idx[nms(boxes_xyxy[idx], scores[idx], iou_threshold)]] = True
    kept = torch.nonzero(keep_mask).flatten()
    large = boxes_xyxy.numel() > (4000 if boxes_xyxy.device.type == "cpu" else 20000)
    return kept[torch.sort(scores[kept], descending=True, stable=not large).indices]


def is_box_near_crop_edge(
    boxes_xyxy_crop: torch.Tensor,
    crop_box_xyxy: Sequence[int],
    orig_box_xyxy: Sequence[int],
    atol: float = 20.0,
) -> torch.Tensor:
    """Which boxes touch an edge of their crop that is not also an edge of the image.

    Args:
        boxes_xyxy_crop: (N, 4) mask boxes in the crop's frame (pixels from the crop's top left).
        crop_box_xyxy: the crop in image pixels ``(x0, y0, x1, y1)``.
        orig_box_xyxy: the whole image ``(0, 0, W, H)``.
        atol: distance in pixels within which a box side counts as touching.

    Returns:
        (N,) bool, True for boxes to drop.
    """
    _check_boxes(boxes_xyxy_crop)
    crop = torch.as_tensor(crop_box_xyxy, dtype=torch.float32, device=boxes_xyxy_crop.device)
    orig = torch.as_tensor(orig_box_xyxy, dtype=torch.float32, device=boxes_xyxy_crop.device)
    boxes = uncrop_boxes_xyxy(boxes_xyxy_crop, crop_box_xyxy).float()
    near_crop = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=-1)


def uncrop_boxes_xyxy(boxes_xyxy_crop: torch.Tensor, crop_box_xyxy: Sequence[int]) -> torch.Tensor:
    """(..., 4) XYXY boxes in a crop's frame -> image frame (adds the crop's top-left corner)."""
    _check_boxes(boxes_xyxy_crop)
    x0, y0 = int(crop_box_xyxy[0]), int(crop_box_xyxy[1])
    offset = torch.tensor([x0, y0, x0, y0], device=boxes_xyxy_crop.device)
    return boxes_xyxy_crop + offset


def uncrop_points(points_xy_crop: torch.Tensor, crop_box_xyxy: Sequence[int]) -> torch.Tensor:
    """(..., 2) XY points in a crop's frame -> image frame."""
    if points_xy_crop.ndim < 1 or points_xy_crop.shape[-1] != 2:
        raise InvalidInputError(
            f"points must have a last dimension of 2, got shape {tuple(points_xy_crop.shape)}"
        )
    offset = torch.tensor(
        [int(crop_box_xyxy[0]), int(crop_box_xyxy[1])], device=points_xy_crop.device
    )
    return points_xy_crop + offset


def uncrop_masks(
    masks_crop: torch.Tensor, crop_box_xyxy: Sequence[int], orig_h: int, orig_w: int
) -> torch.Tensor:
    """(..., h, w) masks of a crop -> (..., orig_h, orig_w), zero outside the crop.

    Returns the input itself when the crop is the whole image.
    """
    x0, y0, x1, y1 = (int(v) for v in crop_box_xyxy)
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks_crop
    if masks_crop.shape[-2:] != (y1 - y0, x1 - x0):
        raise InvalidInputError(
            f"masks of crop {list(crop_box_xyxy)} must be (..., {y1 - y0}, {x1 - x0}), got "
            f"{tuple(masks_crop.shape)}"
        )
    pad = (x0, orig_w - x1, y0, orig_h - y1)  # (left, right, top, bottom)
    return torch.nn.functional.pad(masks_crop, pad, value=0)
