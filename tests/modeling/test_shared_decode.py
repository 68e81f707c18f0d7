"""The shared-image decoder (tokens first, masks for chosen prompts) equals the model's own
mask decoder."""

from __future__ import annotations

import torch

from anyseg.modeling import Sam
from anyseg.modeling.shared_decode import decode_low_res_masks, decode_tokens, prepare_image


def test_split_decoder_equals_the_model_decoder(test_model: Sam) -> None:
    torch.manual_seed(0)
    embedding = torch.randn(1, 32, 16, 16)
    points = torch.rand(5, 2, dtype=torch.float64) * 256
    with torch.inference_mode():
        image = prepare_image(test_model, embedding, test_model.mask_decoder)
        tokens = decode_tokens(test_model, image, points)
        low_res = decode_low_res_masks(test_model, tokens, torch.tensor([1, 3, 4]))
        sparse, dense = test_model.prompt_encoder(
            points=(points[:, None], torch.ones(5, 1, dtype=torch.int)), boxes=None, masks=None
        )
        ref_masks, ref_iou = test_model.mask_decoder(
            embedding, test_model.prompt_encoder.get_dense_pe(), sparse, dense, True
        )
    torch.testing.assert_close(tokens.iou_preds, ref_iou, atol=1e-6, rtol=0)
    torch.testing.assert_close(low_res, ref_masks[[1, 3, 4]], atol=1e-5, rtol=0)
