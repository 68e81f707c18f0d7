"""The ``text`` protocol: referring phrases that name exactly one mask of an image.

SAM's paper shows text prompts qualitatively (§7.5); this protocol measures them on data whose
masks carry ``attributes`` (``anyseg synth`` writes them). For each image, the queries are the
captions that name exactly one of its masks (:func:`anyseg.data.captions.referring_queries`:
unique referent, colour-margin and visible-fraction filters, the forms of ``text_forms``). Each
query is scored by:

- ``text``: IoU of the most confident of the 3 masks the phrase alone gives;
- ``text_oracle``: the best of the 3;
- ``text_hit``: whether ``text`` is at least 0.5 (its mean is the fraction of hits);
- ``text_click``: IoU after one corrective click (at the centre of the deepest error region of
  the first answer, with the phrase and the first answer's logits kept), single-mask output;
- ``text_image_oracle``: the phrase replaced by the CLIP *image* embedding of the referent's own
  crop (box enlarged 1.5x, background kept, the class token masked to the referent): what the
  text path was trained on, the upper bound of the path;
- ``text_random_baseline``: the IoU a uniformly random mask of the image has with the referent
  (its expectation over all the image's masks): what guessing scores.

The predictor must take ``text=`` and ``text_embedding=`` and have a ``clip``
(:class:`anyseg.predictor.SamPredictor` of a model with a text path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from anyseg.data.attributes import record_attributes
from anyseg.data.captions import CaptionForm, NamingConfig, referring_queries
from anyseg.data.sa1b import ImageRecord
from anyseg.errors import InvalidInputError
from anyseg.evaluation import metrics
from anyseg.evaluation.config import EvalConfig
from anyseg.evaluation.prompts import next_click
from anyseg.evaluation.report import TEXT_SCORE_NAMES, ScoreSummary
from anyseg.ops.rle import rle_area

#: Scores of the text protocol, in table order.
TEXT_SCORES = TEXT_SCORE_NAMES
#: Box enlargement of the image-oracle crop (the middle of training's [1, 2]).
ORACLE_CROP_SCALE = 1.5
#: A phrase "hits" when its most confident mask has at least this IoU.
HIT_IOU = 0.5


@dataclass(frozen=True)
class TextQueryResult:
    """Scores of one referring phrase (see the module docstring).

    Attributes:
        image_id, annotation_id: the referent.
        query: the phrase; form: its caption form ("full", "short", "relational").
        area: referent pixels.
        iou, oracle_iou, click_iou, image_oracle_iou, random_iou: the scores.
        predicted_iou: the IoU head's estimate for the most confident mask.
        image_predicted_iou: its estimate for the image-oracle answer.
    """

    image_id: int
    annotation_id: int
    query: str
    form: str
    area: int
    iou: float
    oracle_iou: float
    click_iou: float
    image_oracle_iou: float
    random_iou: float
    predicted_iou: float
    image_predicted_iou: float

    def scores(self) -> dict[str, float]:
        """{score name of :data:`TEXT_SCORES`: value}."""
        return {
            "text": self.iou,
            "text_oracle": self.oracle_iou,
            "text_hit": float(self.iou >= HIT_IOU),
            "text_click": self.click_iou,
            "text_image_oracle": self.image_oracle_iou,
            "text_random_baseline": self.random_iou,
        }


@dataclass(frozen=True)
class TextSample:
    """One query kept for ``text_samples.png``: the image, the referent, the answer."""

    image: np.ndarray
    gt: np.ndarray
    mask: np.ndarray
    query: str
    iou: float


def check_text_predictor(predictor: Any) -> None:
    """Raise a clear error unless ``predictor`` can answer text prompts."""
    model = getattr(predictor, "model", None)
    if model is None or not hasattr(predictor, "clip"):
        raise InvalidInputError(
            "the text protocol needs a SamPredictor (text prompts are not exported to this "
            "predictor)"
        )
    if not getattr(model, "has_text", False):
        from anyseg.clip.prompting import NO_TEXT_PATH

        raise InvalidInputError(NO_TEXT_PATH)
    predictor.clip  # noqa: B018 - loads the CLIP now: a width mismatch fails before any image


def select_queries(
    record: ImageRecord, config: EvalConfig, image_index: int
) -> list[tuple[int, str, str]]:
    """The referring queries of ``record``: ``(annotation index, phrase, form)``, referents of
    at least ``min_mask_area`` pixels; at most ``max_masks_per_image`` referents (a seeded
    subset, all of their forms kept)."""
    attrs, parents = record_attributes(record.annotations, f"image {record.image_id} mask")
    if not any(a is not None for a in attrs):
        return []
    forms = cast(Sequence[CaptionForm], config.text_forms)  # checked by EvalConfig
    queries = referring_queries(attrs, parents, NamingConfig(), forms=forms)
    queries = [
        q
        for q in queries
        if rle_area(record.annotations[q[0]].segmentation) >= config.min_mask_area
    ]
    referents = sorted({i for i, _, _ in queries})
    cap = config.max_masks_per_image
    if cap is not None and len(referents) > cap:
        rng = np.random.default_rng([config.seed, image_index, 1])
        keep = {referents[k] for k in rng.choice(len(referents), size=cap, replace=False)}
        queries = [q for q in queries if q[0] in keep]
    return [(i, text, str(form)) for i, text, form in queries]


def evaluate_text_queries(
    predictor: Any,
    image: np.ndarray,
    record: ImageRecord,
    queries: Sequence[tuple[int, str, str]],
    want_samples: int = 0,
) -> tuple[list[TextQueryResult], list[TextSample]]:
    """Score the ``queries`` of one image whose embedding ``predictor`` holds."""
    from anyseg.clip import mask_crop

    clip = predictor.clip
    anns = record.annotations
    random_iou: dict[int, float] = {}
    oracle: dict[int, tuple[float, float]] = {}
    results: list[TextQueryResult] = []
    samples: list[TextSample] = []
    all_rles = [a.segmentation for a in anns]
    for i, text, form in queries:
        gt = anns[i].decode()
        masks3, scores3, logits3 = predictor.predict(text=text, multimask_output=True)
        ious3 = metrics.mask_iou(masks3, np.broadcast_to(gt, masks3.shape))
        top = int(np.argmax(scores3))
        click = next_click(masks3[top], gt)
        click_iou = float(ious3[top])
        if click is not None:
            masks, _, _ = predictor.predict(
                point_coords=np.array([[click.x, click.y]], dtype=np.float64),
                point_labels=np.array([click.label]),
                mask_input=logits3[top][None],  # (h, w) -> (1, h, w)
                text=text,
                multimask_output=False,
            )
            click_iou = float(metrics.mask_iou(masks[0], gt))
        if i not in oracle:
            crop = mask_crop(image, gt, clip.image_size, scale=ORACLE_CROP_SCALE)
            emb = clip.encode_image(crop.image[None], crop.mask[None], normalize=True)
            masks_o, scores_o, _ = predictor.predict(
                text_embedding=emb[0].cpu().numpy(), multimask_output=True
            )
            best = int(np.argmax(scores_o))
            oracle[i] = (float(metrics.mask_iou(masks_o[best], gt)), float(scores_o[best]))
            ious = metrics.rle_iou_matrix([anns[i].segmentation], all_rles)[0]
            random_iou[i] = float(ious.mean())
        results.append(
            TextQueryResult(
                image_id=record.image_id,
                annotation_id=anns[i].id,
                query=text,
                form=form,
                area=int(gt.sum()),
                iou=float(ious3[top]),
                oracle_iou=float(ious3.max()),
                click_iou=click_iou,
                image_oracle_iou=oracle[i][0],
                random_iou=random_iou[i],
                predicted_iou=float(scores3[top]),
                image_predicted_iou=oracle[i][1],
            )
        )
        if len(samples) < want_samples:
            samples.append(TextSample(image, gt, masks3[top], text, float(ious3[top])))
    return results, samples


def summarize_text(results: Sequence[TextQueryResult]) -> dict[str, ScoreSummary]:
    """mIoU (for ``text_hit``: the fraction of hits), count and histogram of every text score;
    empty when nothing was queried."""
    if not results:
        return {}
    out = {}
    for name in TEXT_SCORES:
        values = [r.scores()[name] for r in results]
        out[name] = ScoreSummary(
            metrics.mean_or_nan(values), len(values), tuple(metrics.histogram(values))
        )
    return out


def text_iou_predictions(results: Sequence[TextQueryResult]) -> list[tuple[str, float, float]]:
    """(protocol, predicted IoU, actual IoU) of the text answers, for the calibration report."""
    return [("text", r.predicted_iou, r.iou) for r in results]
