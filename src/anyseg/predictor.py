"""Interactive prediction: encode an image once, then decode many prompts cheaply (paper §3).

User-facing coordinates are (x, y) pixels of the original image and boxes are XYXY; masks come
back at the original resolution. ``predict_torch`` takes batched prompts already in the model
frame (see :mod:`anyseg.ops.transforms`).

Models with a text path also take text: ``predict(text="yellow star")`` embeds the phrase with
the predictor's CLIP (default: the bundled one; each distinct phrase once) and prompts with it,
alone or with points, a box and a mask; ``predict_torch(text_embeddings=...)`` takes batched,
L2-normalised CLIP embeddings.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol, cast, get_args

import numpy as np
import torch

from anyseg.config import Mode
from anyseg.errors import InvalidInputError
from anyseg.io import ImageLike, to_rgb_uint8
from anyseg.modeling import Sam
from anyseg.modeling.mask_decoder import MaskDecoder
from anyseg.modeling.shared_decode import decode_low_res_masks, decode_prompts, prepare_image
from anyseg.modeling.shared_transformer import ImageSide
from anyseg.ops import transforms
from anyseg.ops.prompts import validate_box, validate_points
from anyseg.ops.threads import FEW_TOKENS, one_thread
from anyseg.precision import FastModel, FastPath, choose_fast_path

if TYPE_CHECKING:
    from anyseg.clip import ClipOptions, LoadedClip
    from anyseg.clip.prompting import TextEmbedder


class PromptablePredictor(Protocol):
    """What prompt-driven code (evaluation, parity checks) needs of a predictor:
    :class:`SamPredictor` and ``anyseg.export.OnnxPredictor`` both have it."""

    def set_image(self, image: ImageLike, image_format: str = "RGB") -> None: ...

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class ImageFrame:
    """The state every predictor keeps for the current image, whatever computes the embedding:
    the embedding itself, the original (H, W) and model-frame (h, w) sizes, and the conversions
    of user prompts (original-image pixels) into the model frame.

    Subclasses provide :attr:`long_side` (the encoder input size) and :attr:`mask_input_size`
    (the low-res logits' (h, w)). SAM-HQ models also keep the image's :attr:`hq_features`.
    """

    features: Any
    hq_features: Any

    def __init__(self) -> None:
        self.is_image_set = False
        self.features = None
        self.hq_features = None  # (1, C/8, 4h, 4w), SAM-HQ models only
        self.original_size: tuple[int, int] | None = None  # (H, W) of the original image
        self.input_size: tuple[int, int] | None = None  # (h, w) in the model frame

    @property
    def long_side(self) -> int:
        raise NotImplementedError

    @property
    def mask_input_size(self) -> tuple[int, int]:
        raise NotImplementedError

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self.hq_features = None
        self.original_size = None
        self.input_size = None

    def get_image_embedding(self) -> Any:
        """The cached embedding, (1, C, h, w) (256×64×64 for the official models)."""
        if self.features is None:
            raise RuntimeError("no image is set: call set_image(...) first")
        return self.features

    def _set_frame(
        self, features: Any, original_size: tuple[int, int], input_size: tuple[int, int] | None
    ) -> None:
        """Cache ``features`` for an image of ``original_size`` (H, W); ``input_size`` defaults
        to its model-frame size."""
        h, w = int(original_size[0]), int(original_size[1])
        if h < 1 or w < 1:
            raise InvalidInputError(f"original_size must be positive (H, W), got {original_size}")
        self.reset_image()
        self.features = features
        self.original_size = (h, w)
        self.input_size = input_size or transforms.get_preprocess_shape(h, w, self.long_side)
        self.is_image_set = True

    def transform_coords(self, coords_xy: np.ndarray) -> np.ndarray:
        """Original-image xy pixels -> model frame."""
        return transforms.apply_coords(coords_xy, self._require_image(), self.long_side)

    def transform_boxes(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Original-image XYXY boxes -> model frame."""
        return transforms.apply_boxes(boxes_xyxy, self._require_image(), self.long_side)

    def _require_image(self) -> tuple[int, int]:
        if not self.is_image_set or self.original_size is None:
            raise RuntimeError("no image is set: call set_image(...) before predicting")
        return self.original_size

    def _validate_mask_input(self, mask_input: np.ndarray) -> np.ndarray:
        """(1, 4h, 4w) or (1, 1, 4h, 4w) low-res logits -> float32 (1, 4h, 4w)."""
        arr = np.asarray(mask_input, dtype=np.float32)
        size = self.mask_input_size
        if arr.shape == (1, 1, *size):
            arr = arr[0]
        if arr.shape != (1, *size):
            raise InvalidInputError(
                f"mask_input must be (1, {size[0]}, {size[1]}) low-res logits "
                f"(e.g. a previous low_res_logits[i][None]), got {arr.shape}"
            )
        return arr


class SamPredictor(ImageFrame):
    """Caches one image embedding and answers prompts against it.

    Works with every checkpoint family. For a SAM-HQ model it also caches the image's HQ
    features (:attr:`hq_features`), and each prompt gives one mask (see
    :class:`anyseg.modeling.MaskDecoderHQ`).

    Args:
        sam_model: the model (not modified).
        mode: ``"exact"`` (float32, the original implementation's numbers) or ``"fast"``
            (the cheaper arithmetic this machine does well, :mod:`anyseg.precision`; see
            :attr:`fast_path` for the one taken).
        fast_path: fast mode's path, instead of the one :func:`choose_fast_path` picks.

    Prompts without a mask prompt are decoded with the image side of the decoder shared by all
    prompts of the image (:mod:`anyseg.modeling.shared_decode`; computed once per image), so
    many prompts in one :meth:`predict_torch` call cost far less than one call each.
    """

    features: torch.Tensor | None
    hq_features: torch.Tensor | None

    def __init__(
        self,
        sam_model: Sam,
        mode: Mode = "exact",
        fast_path: FastPath | None = None,
        clip: LoadedClip | ClipOptions | str | os.PathLike[str] | None = None,
    ) -> None:
        """``clip``: the CLIP for text prompts (a loaded one, a file, or the ``--clip`` options);
        None: the bundled one, loaded at the first text prompt. Only models with a text path
        use it."""
        super().__init__()
        if mode not in get_args(Mode):
            raise InvalidInputError(f"mode must be one of {get_args(Mode)}, got {mode!r}")
        if fast_path is not None and mode != "fast":
            raise InvalidInputError("fast_path is for mode='fast'")
        self.model = sam_model
        self.mode: Mode = mode
        self.fast: FastModel | None = None
        if mode == "fast":
            path = fast_path or choose_fast_path(sam_model.device.type)
            self.fast = FastModel(sam_model, path)
        #: The mask decoder prompts are decoded with (fast mode: possibly a bfloat16 copy).
        self.decoder: MaskDecoder = (
            sam_model.mask_decoder if self.fast is None else self.fast.decoder
        )
        self._image_side: ImageSide | None = None
        self._clip_source = clip
        self._text_embedder: TextEmbedder | None = None

    @property
    def fast_path(self) -> FastPath | None:
        """The path fast mode takes on this machine (None in exact mode)."""
        return None if self.fast is None else self.fast.path

    def describe_mode(self) -> str:
        """One line saying how this predictor computes (for logs and command output)."""
        if self.fast is None:
            return "exact mode: float32, the original implementation's numbers"
        return self.fast.path.describe()

    # ------------------------------------------------------------------ text
    @property
    def clip(self) -> LoadedClip:
        """The CLIP of text prompts (loaded on first use, checked against the model)."""
        return self._embedder().clip

    def _embedder(self) -> TextEmbedder:
        from anyseg.clip import as_loaded_clip
        from anyseg.clip.prompting import NO_TEXT_PATH, TextEmbedder, check_clip_fits

        if not self.model.has_text:
            raise InvalidInputError(NO_TEXT_PATH)
        if self._text_embedder is None:
            clip = as_loaded_clip(self._clip_source, self.device)
            record = self.model.text_clip
            width = self.model.config.prompt_encoder.text_embed_dim
            check_clip_fits(clip, width, None if record is None else record.sha256)
            self._text_embedder = TextEmbedder(clip)
        return self._text_embedder

    def encode_text(self, text: str | list[str]) -> torch.Tensor:
        """L2-normalised CLIP embeddings (N, E) of phrases, for ``predict_torch``'s
        ``text_embeddings`` (each distinct phrase is encoded once and kept)."""
        return self._embedder()(text).to(self.device)

    # ------------------------------------------------------------------ image
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def long_side(self) -> int:
        return self.model.img_size

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return self.model.prompt_encoder.mask_input_size

    def set_image(self, image: ImageLike, image_format: str = "RGB") -> None:
        """Encode an image and cache its embedding.

        Args:
            image: (H, W, 3) uint8 array (also grayscale, RGBA, 16-bit, float in [0, 1]), a PIL
                image, or a path to an image file.
            image_format: channel order of an array input, "RGB" or "BGR".
        """
        if image_format not in ("RGB", "BGR"):
            raise InvalidInputError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        rgb = to_rgb_uint8(image)
        if image_format != self.model.image_format:
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        resized = transforms.resize_longest_side(rgb, self.long_side)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
        self.set_torch_image(tensor[None], rgb.shape[:2])  # (h, w, 3) -> (1, 3, h, w)

    @torch.inference_mode()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Encode a (1, 3, h, w) image already resized to the model frame (long side S)."""
        shape = tuple(transformed_image.shape)
        if len(shape) != 4 or shape[1] != 3 or max(shape[2:]) != self.long_side:
            raise InvalidInputError(
                f"set_torch_image expects (1, 3, h, w) with long side {self.long_side}, got {shape}"
            )
        self.reset_image()
        image = self.model.preprocess(transformed_image.to(self.device).float())
        encoding = self.model.encode(image) if self.fast is None else self.fast.encode(image)
        original = (int(original_image_size[0]), int(original_image_size[1]))
        self._set_frame(encoding.embedding, original, (int(shape[2]), int(shape[3])))
        self.hq_features = encoding.hq_features

    def set_embedding(
        self,
        features: torch.Tensor,
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
        hq_features: torch.Tensor | None = None,
    ) -> None:
        """Use a previously computed embedding (e.g. from a cache) for the image of
        ``original_size`` (H, W); ``input_size`` defaults to the model-frame size. A SAM-HQ model
        also needs the image's ``hq_features`` (:attr:`hq_features` after ``set_image``)."""
        grid = self.model.config.image_encoder.embedding_size
        dim = self.model.config.image_encoder.out_chans
        expected = (1, dim, grid, grid)
        if tuple(features.shape) != expected:
            raise InvalidInputError(
                f"embedding must have shape {expected}, got {tuple(features.shape)}"
            )
        if self.model.is_hq:
            expected_hq = (1, dim // 8, 4 * grid, 4 * grid)
            if hq_features is None or tuple(hq_features.shape) != expected_hq:
                got = None if hq_features is None else tuple(hq_features.shape)
                raise InvalidInputError(
                    f"a SAM-HQ model needs hq_features of shape {expected_hq} with the "
                    f"embedding, got {got}"
                )
        elif hq_features is not None:
            raise InvalidInputError("hq_features are for SAM-HQ models; this model has none")
        self._set_frame(features.to(self.device), original_size, input_size)
        self.hq_features = None if hq_features is None else hq_features.to(self.device)

    def reset_image(self) -> None:
        super().reset_image()
        self._image_side = None

    def image_side(self) -> ImageSide:
        """The decoder's image-side tensors of the current image without a mask prompt, shared
        by all its prompts (computed on first use, then cached with the embedding)."""
        if self._image_side is None:
            features = self.get_image_embedding()
            self._image_side = prepare_image(self.model, features, self.decoder)
        return self._image_side

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool | None = None,
        text: str | None = None,
        text_embedding: np.ndarray | torch.Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one prompt set on the current image.

        Args:
            point_coords: (N, 2) xy pixels of the original image.
            point_labels: (N,) 1 = foreground, 0 = background.
            box: (4,) or (1, 4) XYXY pixels of the original image.
            mask_input: (1, 4h, 4w) low-res logits from a previous call (256×256 for SAM).
            text: a phrase ("the yellow star"), for models with a text path; embedded by
                :attr:`clip`.
            text_embedding: (E,) or (1, E) L2-normalised CLIP embedding instead of ``text``
                (e.g. a CLIP image embedding of a crop: "things like this").
            multimask_output: three masks for an ambiguous prompt, else one (SAM-HQ: one mask
                either way, SAM's part the best of the three).
            return_logits: return logits instead of thresholded masks.
            hq_token_only: SAM-HQ models: the HQ mask alone (default: the model config's).

        Returns:
            masks (C, H, W) bool (float32 logits with ``return_logits``), iou_predictions (C,),
            low_res_logits (C, 4h, 4w); C is 3 or 1.
        """
        original_size = self._require_image()
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None or point_labels is not None:
            coords, labels = validate_points(point_coords, point_labels, original_size)
            if len(coords):  # an empty list of points is no points
                coords_t = torch.as_tensor(self.transform_coords(coords), dtype=torch.float)[None]
                labels_t = torch.as_tensor(labels, dtype=torch.int)[None]
        if box is not None:
            box_arr = validate_box(box, original_size)
            box_t = torch.as_tensor(self.transform_boxes(box_arr), dtype=torch.float)
        if mask_input is not None:
            mask_t = torch.as_tensor(self._validate_mask_input(mask_input), dtype=torch.float)[None]
        text_t = None
        if text is not None and text_embedding is not None:
            raise InvalidInputError("give text or text_embedding, not both")
        if text is not None:
            if not isinstance(text, str):
                raise InvalidInputError(f"text must be a string, got {type(text).__name__}")
            text_t = self.encode_text(text)  # (1, E)
        elif text_embedding is not None:
            text_t = torch.as_tensor(np.asarray(text_embedding, dtype=np.float32)).reshape(1, -1)
        masks, iou, low_res = self.predict_torch(
            _to(coords_t, self.device),
            _to(labels_t, self.device),
            _to(box_t, self.device),
            _to(mask_t, self.device),
            multimask_output=multimask_output,
            return_logits=return_logits,
            hq_token_only=hq_token_only,
            text_embeddings=_to(text_t, self.device),
        )
        return (
            masks[0].cpu().numpy(),
            iou[0].float().cpu().numpy(),
            low_res[0].float().cpu().numpy(),
        )

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool | None = None,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks for B prompt sets given in the model frame (options as :meth:`predict`).

        Args:
            point_coords: (B, N, 2) xy in the model frame, or None.
            point_labels: (B, N) in {1, 0, -1 (padding)}, or None.
            boxes: (B, 4) XYXY in the model frame, or None.
            mask_input: (B, 1, 4h, 4w) low-res logits, or None.
            text_embeddings: (B, E) L2-normalised CLIP embeddings (:meth:`encode_text`), for
                models with a text path, or None.

        Returns:
            masks (B, C, H, W) at the original size (bool, or logits), iou (B, C),
            low-res logits (B, C, 4h, 4w).

        Raises:
            InvalidInputError: malformed or non-finite prompts, or batch sizes that differ.

        Prompts are decoded in chunks of :meth:`prompts_per_chunk` (working memory about
        :attr:`CHUNK_BYTES` beyond the outputs, whatever B is); results do not depend on it.
        """
        self._require_image()
        batch = self._check_batched_prompts(
            point_coords, point_labels, boxes, mask_input, text_embeddings
        )
        if batch == 0:
            raise InvalidInputError("predict_torch needs at least one prompt")
        chunk = self.prompts_per_chunk(multimask_output)
        outputs = [
            self._predict_chunk(
                _rows(point_coords, start, chunk),
                _rows(point_labels, start, chunk),
                _rows(boxes, start, chunk),
                _rows(mask_input, start, chunk),
                multimask_output,
                return_logits,
                hq_token_only,
                _rows(text_embeddings, start, chunk),
            )
            for start in range(0, batch, chunk)
        ]
        if len(outputs) == 1:
            return outputs[0]
        masks, iou, low_res = zip(*outputs, strict=True)
        return torch.cat(masks), torch.cat(iou), torch.cat(low_res)

    #: Working memory one chunk of prompts may take in ``predict_torch``, besides the outputs
    #: (the decoder's activations and the float logits at the original size).
    CHUNK_BYTES = 256 * 1024 * 1024

    def prompts_per_chunk(self, multimask_output: bool) -> int:
        """How many prompts ``predict_torch`` decodes at once to stay within :attr:`CHUNK_BYTES`
        (results do not depend on it)."""
        h, w = self._require_image()
        grid = self.model.prompt_encoder.image_embedding_size
        c = self.model.prompt_encoder.embed_dim
        multi = self.model.mask_decoder.num_mask_tokens if not self.model.is_hq else 2
        n_masks = multi if multimask_output else 1
        s = self.model.img_size
        # Per prompt: the image-side activations of the two-way transformer (about ten
        # (h*w, C) float tensors live at once), the upscaled low-res masks, and the logits at
        # the padded input size and at the original size.
        per_prompt = 4 * (10 * grid[0] * grid[1] * c + n_masks * (s * s + h * w)) + n_masks * h * w
        return max(1, self.CHUNK_BYTES // per_prompt)

    def _check_batched_prompts(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> int:
        """Validate ``predict_torch``'s prompts; return the batch size B they agree on."""
        sizes: dict[str, int] = {}
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                raise InvalidInputError("point_coords and point_labels must be given together")
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2:
                raise InvalidInputError(
                    f"point_coords must be (B, N, 2), got {tuple(point_coords.shape)}"
                )
            if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
                raise InvalidInputError(
                    f"point_labels must be (B, N) = {tuple(point_coords.shape[:2])}, "
                    f"got {tuple(point_labels.shape)}"
                )
            if not torch.isfinite(point_coords).all():
                raise InvalidInputError("point_coords contain NaN or infinite values")
            bad = point_labels[(point_labels != 1) & (point_labels != 0) & (point_labels != -1)]
            if bad.numel():
                raise InvalidInputError(f"point labels must be 1, 0 or -1, got {bad.tolist()}")
            sizes["point_coords"] = point_coords.shape[0]
        if boxes is not None:
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise InvalidInputError(f"boxes must be (B, 4), got {tuple(boxes.shape)}")
            if not torch.isfinite(boxes).all():
                raise InvalidInputError("boxes contain NaN or infinite values")
            sizes["boxes"] = boxes.shape[0]
        if mask_input is not None:
            want = (1, *self.mask_input_size)
            if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != want:
                raise InvalidInputError(
                    f"mask_input must be (B, {', '.join(map(str, want))}), got "
                    f"{tuple(mask_input.shape)}"
                )
            if not torch.isfinite(mask_input).all():
                raise InvalidInputError("mask_input contains NaN or infinite values")
            sizes["mask_input"] = mask_input.shape[0]
        if text_embeddings is not None:
            from anyseg.clip.prompting import NO_TEXT_PATH

            if not self.model.has_text:
                raise InvalidInputError(NO_TEXT_PATH)
            width = self.model.config.prompt_encoder.text_embed_dim
            if text_embeddings.ndim != 2 or text_embeddings.shape[1] != width:
                raise InvalidInputError(
                    f"text_embeddings must be (B, {width}) CLIP embeddings, got "
                    f"{tuple(text_embeddings.shape)}"
                )
            if not torch.isfinite(text_embeddings).all():
                raise InvalidInputError("text_embeddings contain NaN or infinite values")
            sizes["text_embeddings"] = text_embeddings.shape[0]
        if not sizes:
            raise InvalidInputError(
                "give point_coords/point_labels, boxes, mask_input or text_embeddings"
            )
        if len(set(sizes.values())) != 1:
            raise InvalidInputError(f"the prompts' batch sizes differ: {sizes}")
        return next(iter(sizes.values()))

    def embed_prompts(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt encoder's (B, K, C) sparse and (B, C, h, w) dense embeddings of B prompts
        in the model frame (``predict_torch``'s inputs)."""
        points = None if point_coords is None else (point_coords, point_labels)
        prompts = next((len(t) for t in (point_coords, boxes, text_embeddings) if t is not None), 1)
        points_each = 0 if point_coords is None else point_coords.shape[1]
        per_prompt = points_each + 2 * (boxes is not None)
        # A few prompt tokens (and the padding or text token) are a few small ops: cheaper
        # without waking the worker threads.
        with one_thread(mask_input is None and prompts * (per_prompt + 1) <= FEW_TOKENS):
            return cast(
                tuple[torch.Tensor, torch.Tensor],
                self.model.prompt_encoder(
                    points=points, boxes=boxes, masks=mask_input, text=text_embeddings
                ),
            )

    def _predict_chunk(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
        hq_token_only: bool | None = None,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse, dense = self.embed_prompts(point_coords, point_labels, boxes, mask_input,
                                           text_embeddings)  # fmt: skip
        low_res, iou = self._decode(
            sparse, dense, mask_input is not None, multimask_output, hq_token_only
        )
        assert self.input_size is not None and self.original_size is not None  # set with features
        above = None if return_logits else self.model.mask_threshold
        masks = transforms.upscale_logits_separable(
            low_res, self.long_side, self.input_size, self.original_size, above
        )
        return masks, iou, low_res

    def _decode(
        self,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        has_mask_prompt: bool,
        multimask_output: bool,
        hq_token_only: bool | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits (B, C, 4h, 4w) and IoU (B, C) of B prompts' (B, K, C) sparse and
        dense embeddings. Without mask prompts the image side is the image's, shared."""
        assert self.features is not None  # _require_image
        if has_mask_prompt:  # the dense embedding differs per prompt: the model's own decoder
            return self.model.decode(
                self.features, sparse, dense, multimask_output, self.hq_features, hq_token_only
            )
        tokens = decode_prompts(
            self.model, self.image_side(), sparse, self.decoder, multimask_output
        )
        prompts = torch.arange(sparse.shape[0], device=sparse.device)
        low_res = decode_low_res_masks(
            self.model, tokens, prompts, self.decoder, self.hq_features, hq_token_only
        )
        return low_res, tokens.iou_preds


def _rows(t: torch.Tensor | None, start: int, count: int) -> torch.Tensor | None:
    return None if t is None else t[start : start + count]


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
