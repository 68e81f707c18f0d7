"""``OnnxPredictor``: the ``SamPredictor`` API on onnxruntime sessions (CPU provider).

Same inputs and outputs as :class:`anyseg.predictor.SamPredictor` (numpy arrays, (x, y) pixels
of the original image, XYXY boxes, masks at the original resolution), with the image encoder and
the prompt encoder + mask decoder running as ONNX graphs written by :mod:`anyseg.export`. Works
with decoders exported by the original release's script too (same graph contract); the
encoder is optional: without it, call :meth:`OnnxPredictor.set_embedding`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyseg.config import SamConfig
from anyseg.errors import InvalidInputError
from anyseg.export._deps import require
from anyseg.io import ImageLike, to_rgb_uint8
from anyseg.ops import transforms
from anyseg.ops.prompts import validate_box, validate_points
from anyseg.predictor import ImageFrame

DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)


def preprocess_image(
    rgb: np.ndarray, img_size: int, pixel_mean: Sequence[float], pixel_std: Sequence[float]
) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W, 3) uint8 RGB -> the encoder input (1, 3, S, S) float32 and the model-frame (h, w).

    Resize the long side to ``img_size`` (PIL bilinear, as ``SamPredictor``), normalise, and
    zero-pad at the bottom/right; the same float32 arithmetic as ``Sam.preprocess``.
    """
    resized = transforms.resize_longest_side(rgb, img_size)
    h, w = resized.shape[:2]
    mean = np.asarray(pixel_mean, dtype=np.float32)
    std = np.asarray(pixel_std, dtype=np.float32)
    normalised = (resized.astype(np.float32) - mean) / std  # (h, w, 3)
    image = np.zeros((1, 3, img_size, img_size), dtype=np.float32)
    image[0, :, :h, :w] = normalised.transpose(2, 0, 1)  # (h, w, 3) -> (3, h, w)
    return image, (h, w)


def decoder_feed(
    features: np.ndarray,
    original_size: tuple[int, int],
    img_size: int,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
    hq_features: np.ndarray | None = None,
    text_embedding: np.ndarray | None = None,
    text_width: int = 0,
) -> dict[str, np.ndarray]:
    """The decoder graph's inputs for one prompt set, as an application of the ONNX contract
    builds them: points then box corners (labels 2, 3), or the points plus one padding point
    (0, 0) with label -1 when there is no box (what the PyTorch prompt encoder does).

    Args:
        features: (1, C, h, w) image embedding.
        original_size: (H, W) of the original image in pixels.
        img_size: encoder input size S (the model frame's long side).
        point_coords: (N, 2) xy pixels of the original image; point_labels (N,) in {0, 1}.
        box: (4,) or (1, 4) XYXY pixels of the original image.
        mask_input: (1, 4h, 4w) low-res logits of an earlier prediction.
        hq_features: (1, C/8, 4h, 4w) SAM-HQ's per-image features (SAM-HQ graphs only).
        text_embedding: (E,) L2-normalised CLIP embedding of a text prompt, for graphs with a
            text path (``text_width`` E > 0: they always get ``text_embeddings``, (1, 0, E)
            without a text prompt).
    """
    if text_embedding is not None and not text_width:
        raise InvalidInputError(
            "this decoder graph has no text path (export a model trained with text prompts)"
        )
    coords_list: list[np.ndarray] = []
    labels_list: list[np.ndarray] = []
    if point_coords is not None or point_labels is not None:
        coords, labels = validate_points(point_coords, point_labels, original_size)
        if len(coords):  # an empty list of points is no points
            coords_list.append(transforms.apply_coords(coords, original_size, img_size))
            labels_list.append(labels.astype(np.float64))
    if box is not None:
        box_xyxy = transforms.apply_boxes(validate_box(box, original_size), original_size, img_size)
        coords_list.append(box_xyxy.reshape(2, 2))  # (1, 4) -> (2, 2) corners
        labels_list.append(np.array([2.0, 3.0]))
    elif coords_list:
        coords_list.append(np.zeros((1, 2)))
        labels_list.append(np.array([-1.0]))
    coords_all = np.concatenate(coords_list) if coords_list else np.zeros((0, 2))
    labels_all = np.concatenate(labels_list) if labels_list else np.zeros((0,))
    _, _, h, w = features.shape
    if mask_input is not None:
        mask = np.asarray(mask_input, dtype=np.float32).reshape(1, 1, 4 * h, 4 * w)
        has_mask = np.ones(1, dtype=np.float32)
    else:
        mask = np.zeros((1, 1, 4 * h, 4 * w), dtype=np.float32)
        has_mask = np.zeros(1, dtype=np.float32)
    feed = {
        "image_embeddings": np.asarray(features, dtype=np.float32),
        "point_coords": coords_all.astype(np.float32)[None],  # (N, 2) -> (1, N, 2)
        "point_labels": labels_all.astype(np.float32)[None],  # (N,) -> (1, N)
        "mask_input": mask,
        "has_mask_input": has_mask,
        "orig_im_size": np.asarray(original_size, dtype=np.float32),
    }
    if hq_features is not None:
        feed["hq_features"] = np.asarray(hq_features, dtype=np.float32)
    if text_width:
        text = np.zeros((1, 0, text_width), dtype=np.float32)
        if text_embedding is not None:
            text = np.asarray(text_embedding, dtype=np.float32).reshape(1, 1, -1)
            if text.shape[2] != text_width or not np.isfinite(text).all():
                raise InvalidInputError(
                    f"text_embedding must be {text_width} finite numbers, got shape "
                    f"{np.shape(text_embedding)}"
                )
        feed["text_embeddings"] = text
    return feed


def _session(model: str | bytes, threads: int | None, providers: Sequence[str]) -> Any:
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3  # errors only: shape-inference notes are not user problems
    # Idle worker threads sleep instead of spinning: a predictor waits on the user between
    # calls, and spinning threads starve PyTorch (or anything else) running beside it.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        where = model if isinstance(model, str) else "the quantized decoder"
        raise InvalidInputError(f"cannot load ONNX model {where}: {exc}") from None


def _metadata(session: Any) -> dict[str, Any]:
    import json

    raw = session.get_modelmeta().custom_metadata_map
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("anyseg."):
            try:
                out[key[len("anyseg.") :]] = json.loads(value)
            except json.JSONDecodeError:
                out[key[len("anyseg.") :]] = value
    return out


class OnnxPredictor(ImageFrame):
    """Caches one image embedding and answers prompts with onnxruntime.

    Args:
        decoder: path to the decoder graph (``decoder.onnx``).
        encoder: path to the encoder graph (``encoder.onnx``); needed by :meth:`set_image`.
        quantize: dynamically int8-quantize the decoder at load time (the file on disk is
            not changed); smaller and faster, with a deviation that
            :func:`~anyseg.export.parity.compare_predictors` measures.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers.
    """

    def __init__(
        self,
        decoder: str | os.PathLike[str],
        encoder: str | os.PathLike[str] | None = None,
        *,
        quantize: bool = False,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        decoder_path = Path(decoder)
        if not decoder_path.is_file():
            raise InvalidInputError(f"decoder ONNX file not found: {decoder_path}")
        if encoder is not None and not Path(encoder).is_file():
            raise InvalidInputError(f"encoder ONNX file not found: {encoder}")
        self.decoder_path = decoder_path
        self.quantized = quantize
        if quantize:
            self.decoder_session = _session(_quantized_bytes(decoder_path), threads, providers)
        else:
            self.decoder_session = _session(str(decoder_path), threads, providers)
        self.encoder_session = (
            None if encoder is None else _session(str(encoder), threads, providers)
        )
        super().__init__()
        self._read_contract()

    @classmethod
    def from_export_dir(
        cls, directory: str | os.PathLike[str], quantized: bool = False, **kwargs: Any
    ) -> OnnxPredictor:
        """Open what ``anyseg export`` wrote: ``decoder.onnx`` (or ``decoder_int8.onnx`` with
        ``quantized``) and ``encoder.onnx`` when present."""
        d = Path(directory)
        decoder = d / ("decoder_int8.onnx" if quantized else "decoder.onnx")
        encoder = d / "encoder.onnx"
        return cls(decoder, encoder if encoder.is_file() else None, **kwargs)

    # ---------------------------------------------------------------- contract
    def _read_contract(self) -> None:
        dec = self.decoder_session
        inputs = {i.name: i for i in dec.get_inputs()}
        outputs = [o.name for o in dec.get_outputs()]
        missing = [n for n in DECODER_INPUTS if n not in inputs]
        missing += [n for n in DECODER_OUTPUTS if n not in outputs]
        if missing:
            raise InvalidInputError(
                f"{self.decoder_path} is not a SAM decoder graph: it lacks {missing} "
                f"(inputs {sorted(inputs)}, outputs {outputs})"
            )
        meta = _metadata(dec)
        emb_shape = inputs["image_embeddings"].shape
        mask_shape = inputs["mask_input"].shape
        if not all(isinstance(d, int) for d in (*emb_shape, *mask_shape)):
            raise InvalidInputError(
                f"{self.decoder_path}: image_embeddings {emb_shape} and mask_input {mask_shape} "
                "must have static shapes"
            )
        self.embedding_shape: tuple[int, ...] = tuple(emb_shape)  # (1, C, h, w)
        hq = inputs.get("hq_features")
        # SAM-HQ graphs: the image's HQ features are a second per-image input.
        self.hq_shape: tuple[int, ...] | None = None if hq is None else tuple(hq.shape)
        text = inputs.get("text_embeddings")  # graphs of models with a text path
        self.text_width = 0 if text is None else int(text.shape[2])
        self._mask_input_size: tuple[int, int] = (int(mask_shape[2]), int(mask_shape[3]))
        # The encoder input is 16x the embedding grid (= 4x the low-res mask side) in SAM.
        self.img_size = int(meta.get("img_size", 4 * self._mask_input_size[0]))
        self.mask_threshold = float(meta.get("mask_threshold", 0.0))
        n_points = inputs["point_coords"].shape[1]
        self.fixed_num_points: int | None = n_points if isinstance(n_points, int) else None
        m = dec.get_outputs()[outputs.index("iou_predictions")].shape[1]
        options = meta.get("options", {})
        self.single_mask = bool(options.get("return_single_mask", m == 1))
        self.metadata = meta
        self.pixel_mean: tuple[float, ...] = SamConfig().pixel_mean
        self.pixel_std: tuple[float, ...] = SamConfig().pixel_std
        if self.encoder_session is not None:
            enc_meta = _metadata(self.encoder_session)
            self.pixel_mean = tuple(enc_meta.get("pixel_mean", self.pixel_mean))
            self.pixel_std = tuple(enc_meta.get("pixel_std", self.pixel_std))
            enc_in = self.encoder_session.get_inputs()[0].shape
            if tuple(enc_in[-2:]) != (self.img_size, self.img_size):
                raise InvalidInputError(
                    f"encoder input {enc_in} does not match the decoder's image size "
                    f"{self.img_size}: the two graphs come from different models"
                )

    # ------------------------------------------------------------------- image
    @property
    def long_side(self) -> int:
        return self.img_size

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return self._mask_input_size

    def set_image(self, image: ImageLike, image_format: str = "RGB") -> None:
        """Encode an image with the encoder graph and cache its embedding.

        Args:
            image: (H, W, 3) uint8 array, a PIL image, or a path (as ``SamPredictor``).
            image_format: channel order of an array input, "RGB" or "BGR".
        """
        if self.encoder_session is None:
            raise InvalidInputError(
                "set_image needs the encoder graph: pass encoder=... (export it with "
                "`anyseg export --encoder`), or use set_embedding with a precomputed embedding"
            )
        if image_format not in ("RGB", "BGR"):
            raise InvalidInputError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        rgb = to_rgb_uint8(image)
        if image_format == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        tensor, input_size = preprocess_image(rgb, self.img_size, self.pixel_mean, self.pixel_std)
        name = self.encoder_session.get_inputs()[0].name
        outputs = self.encoder_session.run(None, {name: tensor})
        hq = outputs[1] if self.hq_shape is not None and len(outputs) > 1 else None
        self.set_embedding(outputs[0], (rgb.shape[0], rgb.shape[1]), input_size, hq)

    def set_embedding(
        self,
        features: np.ndarray,
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
        hq_features: np.ndarray | None = None,
    ) -> None:
        """Use an embedding (1, C, h, w) computed elsewhere (e.g. ``SamPredictor.features``)
        for an image of ``original_size`` (H, W); ``input_size`` defaults to its model frame.
        A SAM-HQ graph also needs the image's ``hq_features`` (``SamPredictor.hq_features``)."""
        arr = np.asarray(features, dtype=np.float32)
        if tuple(arr.shape) != self.embedding_shape:
            raise InvalidInputError(
                f"embedding must have shape {self.embedding_shape}, got {tuple(arr.shape)}"
            )
        hq = None if hq_features is None else np.asarray(hq_features, dtype=np.float32)
        if (None if hq is None else tuple(hq.shape)) != self.hq_shape:
            got = None if hq is None else tuple(hq.shape)
            raise InvalidInputError(
                f"this decoder graph takes hq_features of shape {self.hq_shape}, got {got}"
            )
        self._set_frame(np.ascontiguousarray(arr), original_size, input_size)
        self.hq_features = hq

    # ----------------------------------------------------------------- prompts
    def decoder_inputs(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        text_embedding: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The decoder graph's input feed for one prompt set on the current image (see
        :func:`decoder_feed`)."""
        original_size = self._require_image()
        if mask_input is not None:
            mask_input = self._validate_mask_input(mask_input)
        feed = decoder_feed(
            self.get_image_embedding(),
            original_size,
            self.img_size,
            point_coords,
            point_labels,
            box,
            mask_input,
            self.hq_features,
            text_embedding,
            self.text_width,
        )
        n = feed["point_coords"].shape[1]
        if self.fixed_num_points is not None and n != self.fixed_num_points:
            raise InvalidInputError(
                f"this decoder was exported for exactly {self.fixed_num_points} prompt points "
                f"(padding and box corners included), got {n}"
            )
        return feed

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        text_embedding: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one prompt set, as ``SamPredictor.predict`` (a text prompt as its
        CLIP embedding: ``SamPredictor.encode_text`` or :mod:`anyseg.clip` computes it).

        Args:
            point_coords: (N, 2) xy pixels of the original image.
            point_labels: (N,) 1 = foreground, 0 = background.
            box: (4,) or (1, 4) XYXY pixels of the original image.
            mask_input: (1, 4h, 4w) low-res logits from a previous call.
            multimask_output: three masks for an ambiguous prompt, else one (SAM-HQ graphs:
                one mask either way, as ``SamPredictor``). Ignored by a decoder exported with
                ``return_single_mask`` (it picks one mask itself).
            return_logits: return logits instead of thresholded masks.

        Returns:
            masks (C, H, W) bool (float32 logits with ``return_logits``), iou_predictions (C,),
            low_res_logits (C, 4h, 4w); C is 3 or 1.
        """
        feed = self.decoder_inputs(point_coords, point_labels, box, mask_input, text_embedding)
        masks, iou, low_res = self.decoder_session.run(list(DECODER_OUTPUTS), feed)
        if not self.single_mask:
            sl = slice(1, None) if multimask_output else slice(0, 1)
            masks, iou, low_res = masks[:, sl], iou[:, sl], low_res[:, sl]
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks[0], iou[0].astype(np.float32), low_res[0].astype(np.float32)


def _quantized_bytes(decoder: Path) -> bytes:
    """Dynamically quantize ``decoder`` in a temporary folder and return the model bytes."""
    from anyseg.export.quantize import quantize_decoder

    tmp_dir = Path(tempfile.mkdtemp(prefix="anyseg-int8-"))
    try:
        out = quantize_decoder(decoder, tmp_dir / "decoder_int8.onnx")
        return out.read_bytes()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
