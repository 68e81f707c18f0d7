"""Model blocks on CPU with the tiny "test" preset: shapes, gradients, equivalences."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from anyseg.config import PRESETS
from anyseg.modeling import build_sam
from anyseg.modeling.image_encoder import (
    decomposed_rel_pos_bias,
    rel_pos_for,
    window_partition,
    window_unpartition,
)
from anyseg.modeling.prompt_encoder import PositionEmbeddingRandom


def _prompts(model, b: int = 3, n: int = 2):
    size = model.img_size
    coords = torch.rand(b, n, 2) * size
    labels = torch.randint(0, 2, (b, n))
    return coords, labels


def test_forward_shapes_and_backward(test_model) -> None:
    model = test_model.train()
    s = model.img_size
    image = torch.rand(1, 3, s, s - 40) * 255
    emb = model.image_encoder(model.preprocess(image))
    assert emb.shape == (1, 32, 16, 16)
    coords, labels = _prompts(model)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    assert sparse.shape == (3, 3, 32)  # 2 points + padding point
    assert dense.shape == (3, 32, 16, 16)
    logits, iou = model.mask_decoder(emb, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
    assert logits.shape == (3, 3, 64, 64) and iou.shape == (3, 3)
    (logits.mean() + iou.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # every parameter gets a gradient except those of prompts not given here: the mask
    # convs, the box-corner embeddings, and the single-mask token's hypernetwork
    unused = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()}
    allowed = (
        "prompt_encoder.mask_downscaling",
        "prompt_encoder.point_embeddings.2",
        "prompt_encoder.point_embeddings.3",
        "mask_decoder.output_hypernetworks_mlps.0",
    )
    assert unused and all(n.startswith(allowed) for n in unused), unused


def test_single_mask_output_is_token_zero(test_model) -> None:
    model = test_model
    emb = torch.randn(1, 32, 16, 16)
    coords, labels = _prompts(model, b=2)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    pe = model.prompt_encoder.get_dense_pe()
    all_masks, all_iou = model.mask_decoder.predict_masks(emb, pe, sparse, dense)
    multi, multi_iou = model.mask_decoder(emb, pe, sparse, dense, multimask_output=True)
    single, single_iou = model.mask_decoder(emb, pe, sparse, dense, multimask_output=False)
    torch.testing.assert_close(multi, all_masks[:, 1:])
    torch.testing.assert_close(single, all_masks[:, :1])
    torch.testing.assert_close(single_iou, all_iou[:, :1])
    torch.testing.assert_close(multi_iou, all_iou[:, 1:])


def test_shared_embedding_equals_per_prompt_copies(test_model) -> None:
    """A batch-1 embedding broadcast over prompts gives what explicit copies give."""
    model = test_model
    emb = torch.randn(1, 32, 16, 16)
    coords, labels = _prompts(model, b=4)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    pe = model.prompt_encoder.get_dense_pe()
    shared = model.mask_decoder(emb, pe, sparse, dense, True)
    copied = model.mask_decoder(
        emb.expand(4, -1, -1, -1).contiguous(), pe, sparse, dense.contiguous(), True
    )
    torch.testing.assert_close(shared[0], copied[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared[1], copied[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="must be 1 or match"):
        model.mask_decoder(torch.randn(2, 32, 16, 16), pe, sparse, dense, True)


def test_prompt_encoder_labels_boxes_and_masks(test_model) -> None:
    pe = test_model.prompt_encoder
    coords = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]])
    pad = torch.tensor([[-1, -1]])
    sparse, _ = pe(points=(coords, pad), boxes=None, masks=None)
    # padding points carry only the "not a point" embedding, wherever they are
    torch.testing.assert_close(sparse[0, 0], pe.not_a_point_embed.weight[0])
    torch.testing.assert_close(sparse[0, 2], pe.not_a_point_embed.weight[0])
    boxes = torch.tensor([[5.0, 6.0, 50.0, 60.0]])
    sparse, _ = pe(points=(coords, torch.tensor([[1, 0]])), boxes=boxes, masks=None)
    assert sparse.shape == (1, 4, 32)  # no padding point when a box is present
    masks = torch.randn(2, 1, 64, 64)
    _, dense = pe(points=None, boxes=None, masks=masks)
    assert dense.shape == (2, 32, 16, 16)
    _, dense = pe(points=None, boxes=None, masks=None)
    assert dense.shape == (1, 32, 16, 16)
    torch.testing.assert_close(dense[0, :, 3, 4], pe.no_mask_embed.weight[0])


def test_random_fourier_grid_matches_coordinate_encoding() -> None:
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(8)
    grid = pe((4, 6))  # (16, 4, 6)
    # cell (row 2, col 3) has its centre at pixel (3.5, 2.5) of a 6x4 image
    point = pe.forward_with_coords(torch.tensor([[[3.5, 2.5]]]), (4, 6))
    torch.testing.assert_close(grid[:, 2, 3], point[0, 0])
    assert grid.abs().max() <= 1.0


@pytest.mark.parametrize("hw", [(16, 16), (13, 17)])
def test_window_partition_round_trip(hw) -> None:
    x = torch.randn(2, *hw, 5)
    windows, padded = window_partition(x, 6)
    assert windows.shape[1:] == (6, 6, 5)
    assert padded == (math.ceil(hw[0] / 6) * 6, math.ceil(hw[1] / 6) * 6)
    torch.testing.assert_close(window_unpartition(windows, 6, padded, hw), x)


def test_rel_pos_table_lookup_and_interpolation() -> None:
    table = torch.arange(7 * 2, dtype=torch.float).reshape(7, 2)  # 2*4-1 entries
    out = rel_pos_for(4, 4, table)
    # entry (i, j) is row (i - j + 3) of the table
    for i in range(4):
        for j in range(4):
            torch.testing.assert_close(out[i, j], table[i - j + 3])
    resized = rel_pos_for(8, 8, table)  # a table trained at another size is interpolated
    assert resized.shape == (8, 8, 2)


def test_fused_attention_equals_explicit_form() -> None:
    torch.manual_seed(0)
    b, h, w, c = 2, 5, 7, 8
    q, k, v = (torch.randn(b, h * w, c) for _ in range(3))
    rel_h, rel_w = torch.randn(2 * h - 1, c), torch.randn(2 * w - 1, c)
    bias = decomposed_rel_pos_bias(q, rel_h, rel_w, (h, w), (h, w))
    scale = c**-0.5
    explicit = ((q * scale) @ k.transpose(-2, -1) + bias).softmax(-1) @ v
    fused = F.scaled_dot_product_attention(
        q[None], k[None], v[None], attn_mask=bias[None], scale=scale
    )[0]
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_drop_path_only_in_training() -> None:
    from dataclasses import replace

    cfg = PRESETS["test"]
    cfg = replace(cfg, image_encoder=replace(cfg.image_encoder, drop_path_rate=0.5))
    model = build_sam(cfg)
    x = torch.randn(2, 3, 256, 256)
    model.eval()
    torch.testing.assert_close(model.image_encoder(x), model.image_encoder(x))
    model.train()
    torch.manual_seed(0)
    a = model.image_encoder(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model.image_encoder(x))


def test_sam_forward_end_to_end(test_model) -> None:
    image = torch.randint(0, 255, (3, 256, 200)).float()
    out = test_model(
        [
            {
                "image": image,
                "original_size": (128, 100),
                "point_coords": torch.tensor([[[50.0, 60.0]]]),
                "point_labels": torch.tensor([[1]]),
            },
            {
                "image": image,
                "original_size": (128, 100),
                "boxes": torch.tensor([[1.0, 2, 90, 100]]),
            },
        ],
        multimask_output=True,
    )
    assert out[0]["masks"].shape == (1, 3, 128, 100) and out[0]["masks"].dtype == torch.bool
    assert out[1]["low_res_logits"].shape == (1, 3, 64, 64)


def test_prompt_localizing_init_ties_cross_attention(test_model) -> None:
    from anyseg.modeling.init import prompt_localizing_init

    before = {k: v.clone() for k, v in test_model.state_dict().items()}
    prompt_localizing_init(test_model, attention_gain=2.0, embedding_scale=0.1)
    attn = test_model.mask_decoder.transformer.layers[0].cross_attn_image_to_token
    assert torch.equal(attn.q_proj.weight, attn.k_proj.weight)
    w = attn.q_proj.weight  # (internal, C) with orthonormal rows scaled by the gain
    torch.testing.assert_close(w @ w.T, 4.0 * torch.eye(w.shape[0]), atol=1e-4, rtol=1e-4)
    assert torch.all(test_model.image_encoder.neck[3].weight == 0.1)
    # the self-attention and everything else keep their values and the layout is unchanged
    after = test_model.state_dict()
    assert set(after) == set(before)
    sa = "mask_decoder.transformer.layers.0.self_attn.q_proj.weight"
    assert torch.equal(after[sa], before[sa])


def test_point_normalisation_divides_in_the_input_precision() -> None:
    """float64 points are divided by the image size in float64 and only then cast, as the
    reference does; casting first gives other bits when the size is not a power of two."""
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(16)
    coords = torch.rand(2, 50, 2, dtype=torch.float64) * 1000
    h, w = 750, 1000
    reference = pe._encode(torch.stack([coords[..., 0] / w, coords[..., 1] / h], -1).float())
    assert torch.equal(pe.forward_with_coords(coords, (h, w)), reference)
    cast_first = coords.float()
    other = pe._encode(torch.stack([cast_first[..., 0] / w, cast_first[..., 1] / h], -1))
    assert not torch.equal(other, reference)  # the order matters, so the test can fail
    # float32 input: unchanged behaviour
    c32 = coords.float()
    expected = pe._encode(torch.stack([c32[..., 0] / w, c32[..., 1] / h], -1))
    assert torch.equal(pe.forward_with_coords(c32, (h, w)), expected)
