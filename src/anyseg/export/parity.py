"""Parity of the ONNX graphs with the PyTorch predictor: the same prompts through both, and
the largest differences of logits, IoU predictions and thresholded masks.

Prompts cover what the decoder graph has to get right: one point (multimask), several points
with a negative one, a box alone (single and multimask), a box with a point, a mask prompt from
an earlier prediction with points, and a mask prompt alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from anyseg.errors import InvalidInputError
from anyseg.predictor import PromptablePredictor

# Pixels whose reference logit is this close to the threshold may flip under float32 noise.
NEAR_THRESHOLD = 1e-3


PredictorLike = PromptablePredictor  # what SamPredictor and OnnxPredictor have in common


@dataclass(frozen=True)
class PromptCase:
    """One prompt set in original-image pixels; ``mask_from`` names an earlier case whose
    best low-res logits (by reference IoU) are the mask prompt."""

    name: str
    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None
    multimask_output: bool = False
    mask_from: str | None = None
    text_embedding: np.ndarray | None = None  # (E,) CLIP embedding (models with a text path)

    @property
    def num_tokens(self) -> int:
        """Prompts the decoder graph sees: the points plus two box corners or one padding,
        plus the text token."""
        n = 0 if self.point_coords is None else len(self.point_coords)
        text = 0 if self.text_embedding is None else 1
        if self.box is not None:
            return n + 2 + text
        return (n + 1 if n else 0) + text

    def prompts(self) -> dict[str, Any]:
        """The case's prompts as ``predict`` keywords (the text one only when set)."""
        out: dict[str, Any] = {
            "point_coords": self.point_coords,
            "point_labels": self.point_labels,
            "box": self.box,
        }
        if self.text_embedding is not None:
            out["text_embedding"] = self.text_embedding
        return out


@dataclass(frozen=True)
class CaseDeviation:
    """Largest differences for one prompt case (candidate minus reference)."""

    name: str
    max_abs_logits: float  # masks at the original size
    max_abs_low_res_logits: float
    max_abs_iou: float
    mismatched_pixels: int  # thresholded masks that differ anywhere
    mismatched_pixels_confident: int  # ... where |reference logit| >= NEAR_THRESHOLD
    pixels: int


@dataclass(frozen=True)
class ParityReport:
    """Deviation of a candidate predictor from the reference over all prompt cases."""

    cases: tuple[CaseDeviation, ...]

    @property
    def max_abs_logits(self) -> float:
        return max(c.max_abs_logits for c in self.cases)

    @property
    def max_abs_low_res_logits(self) -> float:
        return max(c.max_abs_low_res_logits for c in self.cases)

    @property
    def max_abs_iou(self) -> float:
        return max(c.max_abs_iou for c in self.cases)

    @property
    def mismatched_pixels(self) -> int:
        return sum(c.mismatched_pixels for c in self.cases)

    @property
    def mismatched_pixels_confident(self) -> int:
        return sum(c.mismatched_pixels_confident for c in self.cases)

    @property
    def mismatch_fraction(self) -> float:
        return self.mismatched_pixels / max(1, sum(c.pixels for c in self.cases))

    def passed(self, logits_atol: float = 1e-3, iou_atol: float = 1e-3) -> bool:
        """Float32 agreement: low-res logits and IoU within tolerance, upscaled logits within
        ten times it, and at most 1e-4 of the mask pixels flipped.

        The upscaled masks get more room because the final bilinear resize to the original
        size samples at float32 coordinates: at steep mask edges a coordinate rounding of
        ~1e-4 px moves the logit by ~1e-4 per unit of gradient. PyTorch's own float32 resize
        is as far from a float64 one as onnxruntime's is.
        """
        return (
            self.max_abs_low_res_logits <= logits_atol
            and self.max_abs_iou <= iou_atol
            and self.max_abs_logits <= 10 * logits_atol
            and self.mismatch_fraction <= 1e-4
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_logits": self.max_abs_logits,
            "max_abs_low_res_logits": self.max_abs_low_res_logits,
            "max_abs_iou": self.max_abs_iou,
            "mismatched_pixels": self.mismatched_pixels,
            "mismatched_pixels_confident": self.mismatched_pixels_confident,
            "mismatch_fraction": self.mismatch_fraction,
            "near_threshold": NEAR_THRESHOLD,
            "cases": [asdict(c) for c in self.cases],
        }


def default_cases(original_size: tuple[int, int], text_width: int = 0) -> list[PromptCase]:
    """The standard prompt cases for an image of (H, W) pixels; with ``text_width`` > 0 also
    text prompts (a fixed unit vector of that width) alone and with a point."""
    h, w = original_size

    def pts(*xy: tuple[float, float]) -> np.ndarray:
        return np.array([[x * w, y * h] for x, y in xy], dtype=np.float64)

    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h])
    return [
        PromptCase("point_multimask", pts((0.45, 0.4)), np.array([1]), multimask_output=True),
        PromptCase("points_single", pts((0.45, 0.4), (0.6, 0.55), (0.2, 0.8)), np.array([1, 1, 0])),
        PromptCase("box", box=box),
        PromptCase("box_multimask", box=box, multimask_output=True),
        PromptCase("box_point", pts((0.3, 0.7)), np.array([0]), box=box),
        PromptCase(
            "mask_points",
            pts((0.45, 0.4), (0.55, 0.5)),
            np.array([1, 1]),
            mask_from="point_multimask",
        ),
        PromptCase("mask_only", mask_from="point_multimask"),
    ] + (_text_cases(pts, text_width) if text_width else [])


def _text_cases(pts: Any, width: int) -> list[PromptCase]:
    text = np.random.default_rng(0).normal(size=width)
    text /= np.linalg.norm(text)
    return [
        PromptCase("text_multimask", multimask_output=True, text_embedding=text),
        PromptCase("text_point", pts((0.45, 0.4)), np.array([1]), text_embedding=text),
    ]


def reference_predict(
    reference: PredictorLike,
    case: PromptCase,
    mask_input: np.ndarray | None,
    single_mask: bool = False,
    use_stability_score: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a decoder graph exported with the given options must return for ``case``:
    (logits (C, H, W), scores (C,), low-res logits (C, 4h, 4w)) from the PyTorch predictor.

    ``use_stability_score`` replaces the IoU by the low-res stability score (offset 1);
    ``single_mask`` picks token 0 when the graph sees more than two points, else the best of
    the three ambiguity masks (the original export's rule).
    """
    kwargs: dict[str, Any] = {**case.prompts(), "mask_input": mask_input, "return_logits": True}
    if not single_mask:
        masks, scores, low = reference.predict(multimask_output=case.multimask_output, **kwargs)
        if use_stability_score:
            scores = _stability(low)
        return masks, scores, low
    one = reference.predict(multimask_output=False, **kwargs)
    three = reference.predict(multimask_output=True, **kwargs)
    masks, scores, low = (np.concatenate([a, b]) for a, b in zip(one, three, strict=True))
    if use_stability_score:
        scores = _stability(low)
    bias = np.zeros_like(scores)
    bias[0] = 1000.0
    best = int(np.argmax(scores + (case.num_tokens - 2.5) * bias))
    return masks[best : best + 1], scores[best : best + 1], low[best : best + 1]


def _stability(low_res: np.ndarray) -> np.ndarray:
    import torch

    from anyseg.ops.masks import stability_score

    return stability_score(torch.from_numpy(low_res), 0.0, 1.0).numpy()


def compare_predictors(
    reference: PredictorLike,
    candidate: PredictorLike,
    cases: list[PromptCase],
    single_mask: bool = False,
    use_stability_score: bool = False,
) -> ParityReport:
    """Run every case through both predictors (same image set on both) and measure the
    candidate's deviation; options describe how the candidate's decoder graph was exported."""
    results: list[CaseDeviation] = []
    best_low_res: dict[str, np.ndarray] = {}
    for case in cases:
        mask_input = None if case.mask_from is None else best_low_res[case.mask_from]
        ref = reference_predict(reference, case, mask_input, single_mask, use_stability_score)
        got = candidate.predict(
            **case.prompts(),
            mask_input=mask_input,
            multimask_output=case.multimask_output,
            return_logits=True,
        )
        ref_logits, ref_iou, ref_low = (np.asarray(a, dtype=np.float32) for a in ref)
        got_logits, got_iou, got_low = (np.asarray(a, dtype=np.float32) for a in got)
        if got_logits.shape != ref_logits.shape or got_low.shape != ref_low.shape:
            raise InvalidInputError(
                f"case {case.name}: candidate masks {got_logits.shape} / {got_low.shape}, "
                f"reference {ref_logits.shape} / {ref_low.shape} (is single_mask right?)"
            )
        best_low_res[case.name] = ref_low[int(np.argmax(ref_iou))][None]
        flipped = (got_logits > 0) != (ref_logits > 0)
        results.append(
            CaseDeviation(
                name=case.name,
                max_abs_logits=_max_abs(got_logits, ref_logits),
                max_abs_low_res_logits=_max_abs(got_low, ref_low),
                max_abs_iou=_max_abs(got_iou, ref_iou),
                mismatched_pixels=int(flipped.sum()),
                mismatched_pixels_confident=int(
                    (flipped & (np.abs(ref_logits) >= NEAR_THRESHOLD)).sum()
                ),
                pixels=int(ref_logits.size),
            )
        )
    return ParityReport(tuple(results))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference; NaN-aware (NaN at the same place counts as equal)."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, diff)
    return float(np.max(diff)) if diff.size else 0.0
