"""Frames: original-image pixels <-> the model frame, against slow, obvious transcriptions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from anyseg.ops import transforms

SIZES = [(512, 512), (300, 451), (451, 300), (1, 7), (1023, 1025), (17, 1000), (768, 1024)]


def slow_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """The rule written out: scale the long side to ``long_side``, round each side half up."""
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def slow_coords(points: list[tuple[float, float]], size_hw: tuple[int, int], long_side: int):
    new_h, new_w = slow_shape(*size_hw, long_side)
    return [(x * new_w / size_hw[1], y * new_h / size_hw[0]) for x, y in points]


@pytest.mark.parametrize("size_hw", SIZES)
@pytest.mark.parametrize("long_side", [1024, 256, 64])
def test_preprocess_shape(size_hw: tuple[int, int], long_side: int) -> None:
    h, w = transforms.get_preprocess_shape(*size_hw, long_side)
    assert (h, w) == slow_shape(*size_hw, long_side)
    assert max(h, w) == long_side


@pytest.mark.parametrize("size_hw", SIZES)
def test_coords_and_boxes_match_the_slow_reference(size_hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size_hw))
    h, w = size_hw
    points = rng.uniform(0, [w, h], size=(6, 2))
    expected = np.array(slow_coords([tuple(p) for p in points], size_hw, 1024))
    ours = transforms.apply_coords(points, size_hw, 1024)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)
    assert ours.dtype == np.float64

    # Torch: the same numbers in float32, batch dimensions kept.
    ours_t = transforms.apply_coords_torch(torch.from_numpy(points)[None], size_hw, 1024)
    assert ours_t.dtype == torch.float32 and ours_t.shape == (1, 6, 2)
    np.testing.assert_allclose(ours_t[0].numpy(), expected, rtol=1e-6, atol=1e-3)

    # A box is its two corners.
    boxes = np.concatenate([points[:3], points[3:]], axis=1)  # (3, 4) XYXY
    expected_boxes = np.concatenate([expected[:3], expected[3:]], axis=1)
    np.testing.assert_allclose(transforms.apply_boxes(boxes, size_hw, 1024), expected_boxes)
    ours_boxes_t = transforms.apply_boxes_torch(torch.from_numpy(boxes), size_hw, 1024)
    assert ours_boxes_t.shape == (3, 4)
    np.testing.assert_allclose(ours_boxes_t.numpy(), expected_boxes, rtol=1e-6, atol=1e-3)


def test_inputs_are_not_modified() -> None:
    points = np.array([[10.0, 20.0]])
    transforms.apply_coords(points, (100, 200), 1024)
    tensor = torch.tensor([[10.0, 20.0]])
    transforms.apply_coords_torch(tensor, (100, 200), 1024)
    assert points.tolist() == [[10.0, 20.0]] and tensor.tolist() == [[10.0, 20.0]]


@pytest.mark.parametrize("size_hw", [(300, 451), (64, 48), (5, 3)])
def test_resize_is_pil_bilinear_to_the_preprocess_shape(size_hw: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    out = transforms.resize_longest_side(image, 256)
    h, w = slow_shape(*size_hw, 256)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.writeable
    expected = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, expected)


def test_corners_map_to_the_resized_image_corners() -> None:
    # (W, H) of the original maps exactly onto (w, h) of the model frame.
    for size_hw in SIZES:
        h, w = slow_shape(*size_hw, 1024)
        corner = transforms.apply_coords(np.array([[size_hw[1], size_hw[0]]]), size_hw, 1024)
        np.testing.assert_allclose(corner, [[w, h]], atol=1e-9)


@pytest.mark.parametrize(
    "out_hw",
    [(512, 512), (600, 800), (37, 1500), (1500, 37), (200, 300), (1100, 900)],
)
@pytest.mark.parametrize("low", [256, 200])  # an integer scale (padding cells cropped) or not
def test_separable_upscale_equals_the_two_bilinear_steps(
    out_hw: tuple[int, int], low: int, lanes: int
) -> None:
    """The predictor's per-axis upscaling gives the original's post-processing (two bilinear
    steps) up to float32 rounding, for any image shape and batch layout, its passes split over
    lanes or not; with a threshold it gives the masks of those logits."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, low, low, generator=g) * 8  # (B, C, 4h, 4w), logits of ±30
    input_hw = transforms.get_preprocess_shape(*out_hw, long_side=1024)
    exact = transforms.upscale_logits(logits, 1024, input_hw, out_hw)
    with torch.inference_mode():  # the predictor's mode (lanes split only without gradients)
        separable = transforms.upscale_logits_separable(logits, 1024, input_hw, out_hw)
        masks = transforms.upscale_logits_separable(logits, 1024, input_hw, out_hw, above=0.5)
    assert masks.dtype == torch.bool
    assert torch.equal(masks, separable > 0.5)
    assert separable.shape == exact.shape == (2, 3, *out_hw)
    torch.testing.assert_close(separable, exact, atol=2e-5, rtol=0)
    # And both are the original's recipe: bilinear to (S, S), crop, bilinear to the image.
    full = torch.nn.functional.interpolate(logits, (1024, 1024), mode="bilinear")
    full = full[..., : input_hw[0], : input_hw[1]]
    ref = torch.nn.functional.interpolate(full, out_hw, mode="bilinear")
    torch.testing.assert_close(separable, ref, atol=2e-5, rtol=0)
