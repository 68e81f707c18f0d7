"""The prompt encoder + mask decoder as one traceable module, and its ONNX export.

The graph has the input/output contract of the original release's ``SamOnnxModel``, so
applications written for it (e.g. its onnxruntime-web demo) run an anyseg export unchanged:

inputs
    ``image_embeddings`` (1, C, h, w) float32: the image encoder's output.
    ``point_coords`` (1, N, 2) float32: xy in the model frame (the resized image whose long
    side is the encoder input size), N dynamic.
    ``point_labels`` (1, N) float32: 1 foreground, 0 background, -1 padding (ignored point),
    2 box top-left corner, 3 box bottom-right corner. Without a box, the caller appends one
    padding point (0, 0) with label -1, as the PyTorch prompt encoder does.
    ``mask_input`` (1, 1, 4h, 4w) float32: low-resolution logits of an earlier prediction.
    ``has_mask_input`` (1,) float32: 1 to use ``mask_input``, 0 to ignore it.
    ``orig_im_size`` (2,) float32: (H, W) of the original image in pixels.

outputs
    ``masks`` (1, M, H, W) float32 logits at the original size, M = 4 (token 0 = the
    single-mask output, tokens 1..3 = the three ambiguity masks) or 1 with
    ``return_single_mask``; ``iou_predictions`` (1, M); ``low_res_masks`` (1, M, 4h, 4w).
    With ``return_extra_metrics``: ``masks, iou_predictions, stability_scores, areas,
    low_res_masks``.

SAM-HQ models (every encoder family) add one input, ``hq_features`` (1, C/8, 4h, 4w) float32
(the encoder graph's second output: the per-image fusion of early and final encoder features),
last; and give M = 2 outputs: SAM-HQ's mask for a single-mask request (SAM's token 0 plus the HQ
mask) and for a multimask one (SAM's most confident ambiguity mask plus the HQ mask), or the HQ
mask alone in both when the model's ``hq_token_only`` is set. ``return_single_mask`` picks between
the two by the same rule as for SAM.

Models with a text path add one input, ``text_embeddings`` (1, T, E) float32, last: T = 1 for a
text prompt (an L2-normalised CLIP embedding, :mod:`anyseg.clip`), T = 0 (an empty tensor) for
none, so a graph without text gives exactly the PyTorch model's answer to the other prompts. The
text token counts as a prompt point in ``return_single_mask``'s rule.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anyseg.export.config import DEFAULT_OPSET, DecoderExportOptions, check_opset
from anyseg.modeling import MaskDecoderHQ, Sam

STABILITY_SCORE_OFFSET = 1.0  # the original export's offset (and the AMG default)


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints, or names of dynamic axes) and element type of a graph input/output."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    doc: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "doc": self.doc}


class SamOnnxDecoder(nn.Module):
    """Prompt encoder, mask decoder and mask upscaling of ``Sam`` with tensor-only control flow.

    Reuses the model's weights (shared, not copied, unless ``gelu_approximate`` needs a
    modified copy); only the prompt handling is rewritten so that labels, the mask switch and
    the output size are graph inputs instead of Python branches.
    """

    def __init__(self, model: Sam, options: DecoderExportOptions | None = None) -> None:
        super().__init__()
        self.options = options or DecoderExportOptions()
        prompt_encoder, mask_decoder = model.prompt_encoder, model.mask_decoder
        if self.options.gelu_approximate:
            prompt_encoder = copy.deepcopy(prompt_encoder)
            mask_decoder = copy.deepcopy(mask_decoder)
            for module in (*prompt_encoder.modules(), *mask_decoder.modules()):
                if isinstance(module, nn.GELU):
                    module.approximate = "tanh"
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.img_size = model.img_size
        self.mask_threshold = float(model.mask_threshold)
        self.embed_dim = prompt_encoder.embed_dim
        self.embedding_hw = prompt_encoder.image_embedding_size
        self.hq = isinstance(mask_decoder, MaskDecoderHQ)
        self.text_width = prompt_encoder.text_embed_dim  # 0: no text path

    # ------------------------------------------------------------------ prompts
    def embed_points(self, point_coords: Tensor, point_labels: Tensor) -> Tensor:
        """(1, N, 2) model-frame xy and (1, N) labels in {-1, 0, 1, 2, 3} -> (1, N, C)."""
        pe = self.prompt_encoder
        coords = point_coords + 0.5  # pixel centres, as the prompt encoder
        emb = pe.pe_layer.forward_with_coords(coords, pe.input_image_size)
        labels = point_labels.unsqueeze(-1)  # (1, N) -> (1, N, 1)
        emb = torch.where(labels == -1, pe.not_a_point_embed.weight, emb)
        # Label i in 0..3 adds the learned type embedding i (2, 3: box corners).
        for i, type_embedding in enumerate(pe.point_embeddings):
            emb = emb + (labels == i) * cast(nn.Embedding, type_embedding).weight
        return emb

    def embed_text(self, text_embeddings: Tensor) -> Tensor:
        """(1, T, E) CLIP embeddings (T = 0 or 1) -> (1, T, C) text tokens."""
        return cast(Tensor, self.prompt_encoder.text_token(text_embeddings))

    def embed_mask(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """(1, 1, 4h, 4w) logits and the (1,) switch -> dense embedding (1, C, h, w)."""
        pe = self.prompt_encoder
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)  # (1, C) -> (1, C, 1, 1)
        return has_mask_input * pe.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask

    # ------------------------------------------------------------------ outputs
    def select_mask(
        self, masks: Tensor, scores: Tensor, num_points: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One mask per query without Python branches: token 0 when the prompt has more than
        two points (padding and box corners included), else the best-scoring ambiguity mask.

        masks (1, M, H, W), scores (1, M) -> (1, 1, H, W), (1, 1).
        """
        m = scores.shape[1]
        reweight = torch.zeros(1, m, dtype=scores.dtype, device=scores.device)
        reweight[0, 0] = 1000.0
        best = torch.argmax(scores + (num_points - 2.5) * reweight, dim=1)  # (1,)
        return torch.index_select(masks, 1, best), torch.index_select(scores, 1, best)

    def upscale(self, low_res: Tensor, orig_im_size: Tensor) -> Tensor:
        """Low-res logits (1, M, 4h, 4w) -> logits at the original (H, W), as
        ``Sam.postprocess_masks``: upscale to the padded input, crop the padding, resize."""
        masks = F.interpolate(
            low_res, (self.img_size, self.img_size), mode="bilinear", align_corners=False
        )
        size = orig_im_size.to(torch.float32)
        # Model-frame size of the image: long side = img_size, each side rounded half up.
        input_hw = torch.floor(self.img_size / torch.max(size) * size + 0.5).to(torch.int64)
        masks = masks[..., : input_hw[0], : input_hw[1]]
        out_hw = orig_im_size.to(torch.int64)
        return F.interpolate(
            masks,
            size=(out_hw[0], out_hw[1]),  # type: ignore[arg-type]  # traced as graph inputs
            mode="bilinear",
            align_corners=False,
        )

    def stability(self, logits: Tensor) -> Tensor:
        """Stability score (..., H, W) -> (...): IoU of the masks thresholded at +-offset."""
        high = (logits > self.mask_threshold + STABILITY_SCORE_OFFSET).to(torch.int64)
        low = (logits > self.mask_threshold - STABILITY_SCORE_OFFSET).to(torch.int64)
        return high.sum((-2, -1)).float() / low.sum((-2, -1)).float()

    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
        *optional: Tensor,
    ) -> tuple[Tensor, ...]:
        """See the module docstring for the shapes; ``optional`` holds ``hq_features`` (SAM-HQ)
        and then ``text_embeddings`` (text path), in that order. Returns (masks,
        iou_predictions, low_res_masks), or five outputs with ``return_extra_metrics``."""
        rest = list(optional)
        hq_features = rest.pop(0) if self.hq else None
        text_embeddings = rest.pop(0) if self.text_width else None
        sparse = self.embed_points(point_coords, point_labels)
        if text_embeddings is not None:
            sparse = torch.cat([sparse, self.embed_text(text_embeddings)], dim=1)
        dense = self.embed_mask(mask_input, has_mask_input)
        image_pe = self.prompt_encoder.get_dense_pe()
        if isinstance(self.mask_decoder, MaskDecoderHQ):
            every, iou = self.mask_decoder.predict_masks(
                image_embeddings, image_pe, sparse, dense, hq_features=hq_features
            )
            single = self.mask_decoder.select_outputs(every, iou, False, None)
            multi = self.mask_decoder.select_outputs(every, iou, True, None)
            low_res = torch.cat([single[0], multi[0]], dim=1)  # (1, 2, 4h, 4w)
            scores = torch.cat([single[1], multi[1]], dim=1)  # (1, 2)
        else:
            low_res, scores = self.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
        if self.options.use_stability_score:
            scores = self.stability(low_res)
        if self.options.return_single_mask:
            num_points = torch.ones_like(point_labels).sum(dim=1, keepdim=True)  # (1, 1)
            if text_embeddings is not None:  # the text token counts as a prompt
                num_points = num_points + text_embeddings.shape[1]
            low_res, scores = self.select_mask(low_res, scores, num_points)
        masks = self.upscale(low_res, orig_im_size)
        if self.options.return_extra_metrics:
            stability = self.stability(masks)
            areas = (masks > self.mask_threshold).to(torch.int64).sum((-2, -1))
            return masks, scores, stability, areas, low_res
        return masks, scores, low_res

    # ------------------------------------------------------------------ contract
    def example_inputs(self, num_points: int | None = None) -> tuple[Tensor, ...]:
        """Inputs for tracing: a random embedding, N points with labels 0..3, a mask."""
        n = self.options.num_points if num_points is None else num_points
        h, w = self.embedding_hw
        gen = torch.Generator().manual_seed(0)
        inputs: tuple[Tensor, ...] = (
            torch.randn(1, self.embed_dim, h, w, generator=gen),
            torch.randint(0, self.img_size, (1, n, 2), generator=gen).float(),
            torch.randint(0, 4, (1, n), generator=gen).float(),
            torch.randn(1, 1, 4 * h, 4 * w, generator=gen),
            torch.tensor([1.0]),
            torch.tensor([1500.0, 2250.0]),
        )
        if self.hq:
            inputs += (torch.randn(1, self.embed_dim // 8, 4 * h, 4 * w, generator=gen),)
        if self.text_width:
            text = torch.randn(1, 1, self.text_width, generator=gen)
            inputs += (text / text.norm(dim=-1, keepdim=True),)
        device = self.prompt_encoder.no_mask_embed.weight.device
        return tuple(t.to(device) for t in inputs)

    def input_specs(self) -> list[TensorSpec]:
        h, w = self.embedding_hw
        n: int | str = "num_points" if self.options.dynamic_points else self.options.num_points
        return (
            [
                TensorSpec(
                    "image_embeddings", (1, self.embed_dim, h, w), "float32", "image encoder output"
                ),
                TensorSpec("point_coords", (1, n, 2), "float32", "xy in the model frame"),
                TensorSpec(
                    "point_labels",
                    (1, n),
                    "float32",
                    "1 fg, 0 bg, -1 padding, 2/3 box corners; append (0,0)/-1 when there is no box",
                ),
                TensorSpec("mask_input", (1, 1, 4 * h, 4 * w), "float32", "low-res mask logits"),
                TensorSpec("has_mask_input", (1,), "float32", "1 uses mask_input, 0 ignores it"),
                TensorSpec("orig_im_size", (2,), "float32", "(H, W) of the original image"),
            ]
            + (
                [
                    TensorSpec(
                        "hq_features",
                        (1, self.embed_dim // 8, 4 * h, 4 * w),
                        "float32",
                        "SAM-HQ's per-image fusion of early and final encoder features",
                    )
                ]
                if self.hq
                else []
            )
            + (
                [
                    TensorSpec(
                        "text_embeddings",
                        (1, "num_text", self.text_width),
                        "float32",
                        "L2-normalised CLIP embedding of a text prompt (1, 1, E), or (1, 0, E) for "
                        "none",
                    )
                ]
                if self.text_width
                else []
            )
        )

    def output_specs(self) -> list[TensorSpec]:
        h, w = self.embedding_hw
        all_masks = 2 if self.hq else self.mask_decoder.num_mask_tokens
        m: int = 1 if self.options.return_single_mask else all_masks
        specs = [
            TensorSpec("masks", (1, m, "H", "W"), "float32", "mask logits at the original size"),
            TensorSpec("iou_predictions", (1, m), "float32", "predicted IoU (or stability)"),
        ]
        if self.options.return_extra_metrics:
            specs += [
                TensorSpec("stability_scores", (1, m), "float32", "stability of masks"),
                TensorSpec("areas", (1, m), "int64", "foreground pixels of masks"),
            ]
        specs.append(
            TensorSpec("low_res_masks", (1, m, 4 * h, 4 * w), "float32", "low-res mask logits")
        )
        return specs


def trace_to_onnx(
    module: nn.Module,
    inputs: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    """Export with the TorchScript-tracing exporter (no onnxscript needed) to ``path``.

    The module is traced in eval mode; the train/eval flags of its (shared) submodules are
    restored afterwards.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        _export(module, inputs, path, input_names, output_names, dynamic_axes, opset)
    finally:
        for m, training in modes:
            m.training = training


def _export(
    module: nn.Module,
    inputs: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # Shape reads traced as constants are intended (batch 1, fixed image size).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,  # type: ignore[arg-type]
        )


def export_decoder(
    model: Sam,
    path: str | os.PathLike[str],
    options: DecoderExportOptions | None = None,
    opset: int = DEFAULT_OPSET,
) -> SamOnnxDecoder:
    """Export the prompt encoder + mask decoder of ``model`` to an ONNX file at ``path``.

    The file is written atomically, with the model config and options as ONNX metadata
    (``anyseg.*`` keys). Returns the traced wrapper module (its ``input_specs()`` and
    ``output_specs()`` describe the graph).
    """
    from anyseg.export.onnx_io import write_onnx_atomically

    check_opset(opset)
    options = options or DecoderExportOptions()
    wrapper = SamOnnxDecoder(model, options)
    inputs = wrapper.example_inputs()
    dynamic_axes: dict[str, dict[int, str]] = {}
    if options.dynamic_points:
        dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    if wrapper.text_width:
        dynamic_axes["text_embeddings"] = {1: "num_text"}
    # The output image size follows orig_im_size (a value, not a shape): name those axes.
    for spec in wrapper.output_specs():
        named = {i: str(d) for i, d in enumerate(spec.shape) if isinstance(d, str)}
        if named:
            dynamic_axes[spec.name] = named

    metadata = {
        "anyseg.kind": "decoder",
        "anyseg.options": options,
        "anyseg.config": model.config.to_dict(),
        "anyseg.img_size": model.img_size,
        "anyseg.mask_threshold": float(model.mask_threshold),
    }
    if model.text_clip is not None:
        metadata["anyseg.text_clip"] = model.text_clip.to_dict()
    write_onnx_atomically(
        Path(path),
        lambda tmp: trace_to_onnx(
            wrapper,
            inputs,
            tmp,
            [s.name for s in wrapper.input_specs()],
            [s.name for s in wrapper.output_specs()],
            dynamic_axes,
            opset,
        ),
        metadata,
        {spec.name: spec.shape for spec in wrapper.output_specs()},
    )
    return wrapper
