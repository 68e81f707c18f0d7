"""Simulated interactive prompting (SAM paper appendix A, "Training algorithm").

For each ground-truth mask: a first prompt, with equal probability a foreground point sampled
uniformly from the mask or the mask's box jittered by Gaussian noise (std 10% of the side, each
offset clipped to 20 px); then, for each later pass, a point sampled uniformly from the error
region between the previous prediction and the ground truth — positive on a false negative,
negative on a false positive — with the previous low-res logits fed back as the mask prompt; and
two passes with no new point (one at a random place among the sampled points, one at the end).

Everything here is a pure tensor function of explicit random numbers, so the caller controls
determinism: the training step draws the numbers of each image from that image's own generator,
which makes a sample's prompts independent of how samples are batched or sharded across processes.

Frames: coordinates are (x, y) pixels of the model's input frame (the resized, padded image);
masks are (N, H, W) in the same frame, or a ``stride``-times coarser grid of it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Point labels of the prompt encoder.
POSITIVE, NEGATIVE, PADDING = 1, 0, -1


class PromptRandomness(NamedTuple):
    """Random numbers for the prompts of N masks over one step.

    Fields:
        box_choice: (N,) uniform [0, 1): the first prompt is a box when < ``box_prob``.
        first_point: (N,) uniform [0, 1): picks the first point among the mask's pixels.
        box_noise: (N, 4) standard normal: box jitter, XYXY order.
        iter_uniform: (P, N, 3) uniform [0, 1): per later pass, (pick, x offset, y offset) of the
            error-region point (offsets place it inside a coarse cell when ``stride > 1``).
    """

    box_choice: torch.Tensor
    first_point: torch.Tensor
    box_noise: torch.Tensor
    iter_uniform: torch.Tensor

    @staticmethod
    def draw(
        num_masks: int, num_later_passes: int, generator: torch.Generator, device: torch.device
    ) -> PromptRandomness:
        """Draw, in a fixed order, everything N masks need for one step."""
        g, d = generator, device
        return PromptRandomness(
            box_choice=torch.rand(num_masks, generator=g, device=d),
            first_point=torch.rand(num_masks, generator=g, device=d),
            box_noise=torch.randn(num_masks, 4, generator=g, device=d),
            iter_uniform=torch.rand(num_later_passes, num_masks, 3, generator=g, device=d),
        )

    @staticmethod
    def cat(parts: list[PromptRandomness]) -> PromptRandomness:
        """Concatenate along the mask dimension."""
        return PromptRandomness(
            box_choice=torch.cat([p.box_choice for p in parts]),
            first_point=torch.cat([p.first_point for p in parts]),
            box_noise=torch.cat([p.box_noise for p in parts]),
            iter_uniform=torch.cat([p.iter_uniform for p in parts], dim=1),
        )


def sample_uniform_pixels(
    region: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one pixel uniformly from each mask's region.

    The k-th pixel in raster order with k = floor(u * count), so a uniform ``u`` gives a uniform
    pixel.

    Args:
        region: (N, H, W) bool.
        u: (N,) uniform [0, 1).

    Returns:
        xy: (N, 2) long pixel (x, y) (0, 0 where the region is empty);
        found: (N,) bool, False where the region is empty.
    """
    n, h, w = region.shape
    flat = region.reshape(n, h * w)  # (N, H, W) -> (N, HW)
    counts = flat.sum(dim=1)  # (N,)
    k = (u.double() * counts.double()).floor().long().clamp(max=(counts - 1).clamp(min=0))
    cums = flat.long().cumsum(dim=1)  # (N, HW)
    idx = torch.searchsorted(cums, (k + 1)[:, None]).squeeze(1).clamp(max=h * w - 1)  # (N,)
    found = counts > 0
    idx = torch.where(found, idx, torch.zeros_like(idx))
    xy = torch.stack([idx % w, idx // w], dim=1)  # (N, 2)
    return xy, found


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of (N, H, W) bool masks (x1, y1 are the last covered column/row, as the
    original's mask-to-box); zeros for empty masks. Returns (N, 4) float."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, device=masks.device)
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    x0 = torch.where(cols, xs, w).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1)
    y0 = torch.where(rows, ys, h).amin(dim=1)
    y1 = torch.where(rows, ys, -1).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(masks.flatten(1).any(dim=1)[:, None], boxes, torch.zeros_like(boxes))


def jitter_boxes(
    boxes_xyxy: torch.Tensor,
    noise: torch.Tensor,
    fraction: float,
    max_px: float,
    bounds_hw: torch.Tensor,
) -> torch.Tensor:
    """Add the paper's box noise: per coordinate, ``noise × fraction × side`` (width for x,
    height for y), each offset clipped to ±``max_px``; then clipped to the image.

    Args:
        boxes_xyxy: (N, 4) float, input frame.
        noise: (N, 4) standard normal.
        fraction: std as a fraction of the box side (paper: 0.1).
        max_px: largest offset in pixels (paper: 20).
        bounds_hw: (N, 2) valid (unpadded) image size (h, w) of each box's image.

    Returns:
        (N, 4) float XYXY with x0 <= x1, y0 <= y1, inside [0, w - 1] x [0, h - 1].
    """
    w = boxes_xyxy[:, 2] - boxes_xyxy[:, 0]
    h = boxes_xyxy[:, 3] - boxes_xyxy[:, 1]
    std = fraction * torch.stack([w, h, w, h], dim=1)  # (N, 4)
    offset = (noise * std).clamp(-max_px, max_px)
    out = boxes_xyxy + offset
    hi = (bounds_hw.flip(1).float() - 1).repeat(1, 2)  # (N, 2) (h, w) -> (N, 4) (w, h, w, h)
    out = torch.minimum(out.clamp(min=0.0), hi)
    x0, x1 = torch.minimum(out[:, 0], out[:, 2]), torch.maximum(out[:, 0], out[:, 2])
    y0, y1 = torch.minimum(out[:, 1], out[:, 3]), torch.maximum(out[:, 1], out[:, 3])
    return torch.stack([x0, y0, x1, y1], dim=1)


def error_region_points(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    u: torch.Tensor,
    stride: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one corrective click per mask, uniformly from the error region.

    A false-negative pixel (in the ground truth, not predicted) gives a positive point (label 1),
    a false-positive pixel a negative one (label 0). Where there is no error the point is padding
    (label -1 at (0, 0)), which the prompt encoder treats as "not a point".

    Args:
        pred: (N, H, W) bool thresholded prediction.
        gt: (N, H, W) bool ground truth.
        valid: (N, H, W) bool pixels inside the image.
        u: (N, 3) uniform [0, 1): pick, x and y offset inside a cell.
        stride: input pixels per grid cell (1 at the input resolution; 4 for 4x coarser masks).

    Returns:
        points_xy: (N, 2) float, input-frame pixels; labels: (N,) long in {1, 0, -1}.
    """
    false_neg = gt & ~pred & valid
    false_pos = pred & ~gt & valid
    cell_xy, found = sample_uniform_pixels(false_neg | false_pos, u[:, 0])
    rows = torch.arange(pred.shape[0], device=pred.device)
    is_fn = false_neg[rows, cell_xy[:, 1], cell_xy[:, 0]]
    labels = torch.where(is_fn, POSITIVE, NEGATIVE)
    labels = torch.where(found, labels, torch.full_like(labels, PADDING))
    offset = (u[:, 1:] * stride).floor().clamp(max=stride - 1)  # (N, 2)
    points = (cell_xy.float() * stride + offset) * found[:, None]
    return points, labels


def pass_schedule(
    num_iterative_points: int, mask_only_iterations: int, generator: torch.Generator
) -> tuple[bool, ...]:
    """Which passes after the first add a new point (True) or only feed the mask back (False).

    With two mask-only passes, one is inserted at a uniformly random place among the sampled
    points (before the i-th, i in [0, num_iterative_points)) and the other is last (paper:
    8 points + 2 → 10 later passes, 11 in all). With one, it is last.
    """
    schedule = [True] * num_iterative_points
    if mask_only_iterations >= 2:
        slots = max(num_iterative_points, 1)
        at = int(torch.randint(slots, (1,), generator=generator).item())
        schedule.insert(at, False)
    if mask_only_iterations >= 1:
        schedule.append(False)
    return tuple(schedule)
