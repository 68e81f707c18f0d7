"""The evaluation runner: every protocol of the paper (§7.1) on every selected mask of a dataset.

One ``set_image`` per image; then, for each selected ground-truth mask of that image:

- ``point``: one positive click at the mask centre, ``multimask_output=True``; scored for the most
  confident of the 3 masks (``point``) and the best of the 3 (``point_oracle``); the same click
  with ``multimask_output=False`` gives ``point_single``.
- ``box``: the tight box of the mask, ``multimask_output=False``.
- ``interactive``: click 1 as above (its most confident mask by default), then clicks 2..N each at
  the centre of the deepest error region of the previous prediction (see
  :func:`~anyseg.evaluation.prompts.next_click`), with all clicks so far, the previous
  low-resolution logits as ``mask_input`` and ``multimask_output=False``. A prediction that equals
  the ground truth ends the clicking; its IoU (1.0) stands for the remaining clicks.
- ``amg``: once per image, the automatic generator's masks against the selected ground truth.
- ``text``: phrases that name exactly one mask of the image (:mod:`anyseg.evaluation.text`).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyseg.automatic import AmgConfig
from anyseg.data.sa1b import ImageRecord
from anyseg.errors import InvalidInputError
from anyseg.evaluation import metrics
from anyseg.evaluation.amg import (
    MaskGenerator,
    best_generated_ious,
    default_mask_generator,
    summarize_amg,
)
from anyseg.evaluation.config import EvalConfig
from anyseg.evaluation.dataset import EvalDataset
from anyseg.evaluation.prompts import ClickPoint, center_point, next_click, random_point, tight_box
from anyseg.evaluation.report import (
    CheckpointInfo,
    DatasetInfo,
    EvalReport,
    MaskResult,
    ModelInfo,
    Timing,
)
from anyseg.evaluation.summary import (
    breakdown,
    interactive_curve,
    summarize_calibration,
    summarize_scores,
)
from anyseg.evaluation.text import (
    TextQueryResult,
    TextSample,
    check_text_predictor,
    evaluate_text_queries,
    select_queries,
    summarize_text,
    text_iou_predictions,
)
from anyseg.ops.rle import encode_mask, rle_area
from anyseg.predictor import PromptablePredictor

#: The protocols that prompt the predictor (they need its ``set_image``).
PROMPT_PROTOCOLS: frozenset[str] = frozenset({"point", "box", "interactive", "text"})


# What the runner needs of a predictor: SamPredictor and OnnxPredictor both qualify.
Predictor = PromptablePredictor


@dataclass(frozen=True)
class SampleView:
    """One evaluated mask kept for ``samples.png``: the prompts and what the model returned.

    Masks are bool (H, W) in image pixels; clicks and boxes are in image pixels (box XYXY).
    """

    image: np.ndarray
    gt: np.ndarray
    image_id: int
    annotation_id: int
    point: ClickPoint | None = None
    point_mask: np.ndarray | None = None
    point_iou: float | None = None
    box: np.ndarray | None = None
    box_mask: np.ndarray | None = None
    box_iou: float | None = None
    clicks: tuple[ClickPoint, ...] | None = None
    interactive_mask: np.ndarray | None = None
    interactive_iou: float | None = None


@dataclass(frozen=True)
class EvalResult:
    """The report, the per-mask (and per-phrase) scores behind it, and the samples to draw."""

    report: EvalReport
    masks: tuple[MaskResult, ...]
    samples: tuple[SampleView, ...]
    text_queries: tuple[TextQueryResult, ...] = ()
    text_samples: tuple[TextSample, ...] = ()


def evaluate(
    predictor: Predictor,
    dataset: EvalDataset,
    config: EvalConfig,
    *,
    mask_generator: MaskGenerator | None = None,
    checkpoint: CheckpointInfo | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run the protocols of ``config`` over ``dataset`` with ``predictor``.

    Args:
        predictor: a :class:`Predictor`; when it has a ``model`` (a ``Sam``), the report records
            its size and the ``amg`` protocol builds its generator from it.
        dataset: from :func:`~anyseg.evaluation.dataset.open_sa1b` or ``open_coco``; only its
            first ``config.max_images`` images are evaluated.
        config: protocols and options.
        mask_generator: the generator for ``amg``; default: built from ``predictor.model`` with
            the config's ``amg`` settings (skipped with a note when unavailable).
        checkpoint: identity of the weights, for the report.
        progress: show a progress bar (on a terminal).

    Raises:
        InvalidInputError: no mask of the dataset passes the filters.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    notes: list[str] = list(dataset.skipped)
    protocols = set(config.protocols)
    if "text" in protocols:
        check_text_predictor(predictor)
        clip = predictor.clip  # type: ignore[attr-defined]  # checked just above
        notes.append(f"text prompts embedded by the CLIP {clip.source} (SHA-256 {clip.sha256})")
    if "amg" in protocols and mask_generator is None:
        mask_generator, note = default_mask_generator(predictor, config)
        if note:
            notes.append(note)
    resolved = getattr(mask_generator, "config", None)
    if "amg" in protocols and isinstance(resolved, AmgConfig):
        # The report records the thresholds used (a model's own recommendation fills unset ones).
        config = dataclasses.replace(config, amg=resolved)
    timer = _Timer(predictor)
    images = dataset.images[: config.max_images] if config.max_images else dataset.images
    results: list[MaskResult] = []
    samples: list[SampleView] = []
    text_results: list[TextQueryResult] = []
    text_samples: list[TextSample] = []
    # Spread the drawn samples over the images: at most this many from one image.
    samples_per_image = -(-config.num_samples // max(len(images), 1))
    num_masks_total = 0
    amg_generated = 0
    with _no_grad():
        for image_index, item in enumerate(
            tqdm(images, desc="eval", unit="img", disable=None if progress else True)
        ):
            record = item.record
            num_masks_total += len(record.annotations)
            chosen = select_masks(record, config, image_index) if protocols - {"text"} else []
            queries = select_queries(record, config, image_index) if "text" in protocols else []
            if not chosen and not queries:
                continue
            image = item.load_image()
            if protocols & PROMPT_PROTOCOLS:  # "amg" alone encodes inside its generator
                t0 = time.perf_counter()
                predictor.set_image(image)
                timer.set_image_s += time.perf_counter() - t0
            amg_best: list[float | None] = [None] * len(chosen)
            if "amg" in protocols and mask_generator is not None:
                t0 = time.perf_counter()
                gt_rles = [record.annotations[i].segmentation for i in chosen]
                best, n_gen = best_generated_ious(mask_generator, image, gt_rles)
                timer.amg_s += time.perf_counter() - t0
                amg_best = [float(v) for v in best]
                amg_generated += n_gen
            image_rles = [a.segmentation for a in record.annotations]
            for k, ann_index in enumerate(chosen):
                gt = record.annotations[ann_index].decode()  # one at a time: large images
                rng = np.random.default_rng([config.seed, image_index, ann_index])
                want_sample = len(samples) < config.num_samples and k < samples_per_image
                row, sample = _evaluate_mask(timer, gt, config, rng, want_sample, image_rles)
                ann = record.annotations[ann_index]
                results.append(
                    dataclasses.replace(
                        row,
                        image_id=record.image_id,
                        annotation_id=ann.id,
                        level=ann.level,
                        amg_best_iou=amg_best[k],
                    )
                )
                if sample is not None:
                    samples.append(
                        dataclasses.replace(
                            sample, image=image, image_id=record.image_id, annotation_id=ann.id
                        )
                    )
            if queries:
                t0 = time.perf_counter()
                want = min(samples_per_image, config.num_samples - len(text_samples))
                rows, views = evaluate_text_queries(predictor, image, record, queries, want)
                timer.predict_s += time.perf_counter() - t0
                text_results += rows
                text_samples += views
    if not results and not text_results:
        what = (
            "no referring phrase names exactly one mask (the text protocol needs masks with "
            "attributes, as `anyseg synth` writes)"
            if protocols == {"text"}
            else f"no mask has area >= min_mask_area ({config.min_mask_area})"
        )
        raise InvalidInputError(
            f"nothing to evaluate in the {len(images)} image(s) of {dataset.path}: {what}"
        )
    report = EvalReport(
        checkpoint=checkpoint or CheckpointInfo(None, None, "in-memory model"),
        model=_model_info(predictor),
        dataset=DatasetInfo(
            path=str(dataset.path),
            format=dataset.format,
            images_dir=None if dataset.images_dir is None else str(dataset.images_dir),
            num_images_total=dataset.num_images_total,
            num_images=len(images),
            num_masks_total=num_masks_total,
            num_masks=len(results),
            num_crowd_skipped=dataset.num_crowd_skipped,
        ),
        config=config,
        scores={**summarize_scores(results), **summarize_text(text_results)},
        interactive_curve=interactive_curve(results),
        breakdown=breakdown(results),
        amg=summarize_amg(results, config, amg_generated),
        calibration=summarize_calibration(results, text_iou_predictions(text_results)),
        timing=Timing(
            total_s=time.perf_counter() - t_start,
            set_image_s=timer.set_image_s,
            predict_s=timer.predict_s,
            num_predict_calls=timer.calls,
            amg_s=timer.amg_s,
        ),
        environment=_environment(predictor),
        notes=tuple(notes),
    )
    return EvalResult(
        report, tuple(results), tuple(samples), tuple(text_results), tuple(text_samples)
    )


def select_masks(record: ImageRecord, config: EvalConfig, image_index: int) -> list[int]:
    """Indices of the annotations of ``record`` to evaluate, in file order.

    Masks below ``config.min_mask_area`` pixels are dropped; of the rest, at most
    ``config.max_masks_per_image`` are kept, chosen at random with a generator seeded by
    ``(config.seed, image_index)`` (the same subset on every run).
    """
    eligible = [
        i
        for i, a in enumerate(record.annotations)
        if rle_area(a.segmentation) >= config.min_mask_area
    ]
    cap = config.max_masks_per_image
    if cap is None or len(eligible) <= cap:
        return eligible
    rng = np.random.default_rng([config.seed, image_index])
    picked = rng.choice(len(eligible), size=cap, replace=False)
    return [eligible[i] for i in sorted(picked.tolist())]


# ---------------------------------------------------------------------------------------------
# One mask


class _Timer:
    """Wraps ``predictor.predict`` to count calls and time them."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.set_image_s = 0.0
        self.predict_s = 0.0
        self.amg_s = 0.0
        self.calls = 0

    def predict(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        masks, scores, logits = self.predictor.predict(**kwargs)
        self.predict_s += time.perf_counter() - t0
        self.calls += 1
        return np.asarray(masks).astype(bool), np.asarray(scores), np.asarray(logits)


def _evaluate_mask(
    timer: _Timer,
    gt: np.ndarray,
    config: EvalConfig,
    rng: np.random.Generator,
    want_sample: bool,
    image_rles: list[dict[str, Any]] | None = None,
) -> tuple[MaskResult, SampleView | None]:
    """Score one ground-truth mask with the configured protocols.

    The IoU head is scored (``iou_predictions``) against the mask each prediction covers: for
    the first prompt of a mask (a point's 3 candidates and single output, the box), its
    best-matching ground-truth mask of the image (``image_rles``; a click on an emblem also
    selects its panel and its object, and the IoU head rates a candidate by the object it
    covers, as the automatic generator's threshold assumes); for later clicks, which have
    disambiguated the prompt, the prompted mask.
    """

    def covered(masks: np.ndarray, prompted: np.ndarray) -> np.ndarray:
        if not image_rles:
            return prompted
        best = metrics.rle_iou_matrix(image_rles, [encode_mask(m) for m in masks]).max(axis=0)
        return np.maximum(best, prompted)

    protocols = set(config.protocols)
    values: dict[str, Any] = {}
    view: dict[str, Any] = {}
    predicted: list[tuple[str, float, float]] = []  # (protocol, predicted IoU, actual IoU)
    if protocols & {"point", "interactive"}:
        click = center_point(gt) if config.first_point == "center" else random_point(gt, rng)
        coords = np.array([[click.x, click.y]], dtype=np.float64)
        labels = np.array([1])
        masks3, scores3, logits3 = timer.predict(
            point_coords=coords, point_labels=labels, multimask_output=True
        )
        ious3 = metrics.mask_iou(masks3, np.broadcast_to(gt, masks3.shape))
        top = int(np.argmax(scores3))
        single = None
        if "point" in protocols or not config.first_point_multimask:
            single = timer.predict(point_coords=coords, point_labels=labels, multimask_output=False)
        if "point" in protocols and single is not None:
            values["point"] = float(ious3[top])
            values["point_oracle"] = float(ious3.max())
            values["point_single"] = float(metrics.mask_iou(single[0][0], gt))
            actual3 = covered(masks3, ious3)
            predicted += [
                ("point", float(p), float(a)) for p, a in zip(scores3, actual3, strict=True)
            ]
            actual1 = covered(single[0][:1], np.array([values["point_single"]]))
            predicted.append(("point_single", float(single[1][0]), float(actual1[0])))
            view.update(point=click, point_mask=masks3[top], point_iou=values["point"])
        if "interactive" in protocols:
            if config.first_point_multimask or single is None:
                first_mask, first_logits = masks3[top], logits3[top]
            else:
                first_mask, first_logits = single[0][0], single[2][0]
            first_score = float(scores3[top] if single is None or config.first_point_multimask
                                else single[1][0])  # fmt: skip
            curve, clicks, last, scores = _interactive(
                timer, gt, click, first_mask, first_logits, first_score, config
            )
            values["interactive"] = curve
            predicted += [
                ("interactive", s, a) for s, a in zip(scores, curve, strict=True) if s == s
            ]
            view.update(clicks=clicks, interactive_mask=last, interactive_iou=curve[-1])
    if "box" in protocols:
        box = tight_box(gt)
        masks, box_scores, _ = timer.predict(box=box, multimask_output=False)
        values["box"] = float(metrics.mask_iou(masks[0], gt))
        actual_box = covered(masks[:1], np.array([values["box"]]))
        predicted.append(("box", float(box_scores[0]), float(actual_box[0])))
        view.update(box=box, box_mask=masks[0], box_iou=values["box"])
    row = MaskResult(
        image_id=0,
        annotation_id=0,
        area=int(gt.sum()),
        iou_predictions=tuple(predicted),
        **values,
    )
    sample = (
        SampleView(image=np.zeros((0, 0, 3), np.uint8), gt=gt, image_id=0, annotation_id=0, **view)
        if want_sample
        else None
    )
    return row, sample


def _interactive(
    timer: _Timer,
    gt: np.ndarray,
    first: ClickPoint,
    mask: np.ndarray,
    logits: np.ndarray,
    score: float,
    config: EvalConfig,
) -> tuple[tuple[float, ...], tuple[ClickPoint, ...], np.ndarray, tuple[float, ...]]:
    """Clicks 2..N of the interactive protocol; returns (IoU per click, clicks, last mask,
    predicted IoU per click: NaN where no new prediction was made)."""
    clicks = [first]
    curve = [float(metrics.mask_iou(mask, gt))]
    scores = [score]
    for _ in range(1, config.num_points):
        click = next_click(mask, gt)
        if click is None:  # perfect prediction: nothing left to click on
            curve.append(curve[-1])
            scores.append(float("nan"))
            continue
        clicks.append(click)
        coords = np.array([[c.x, c.y] for c in clicks], dtype=np.float64)
        labels = np.array([c.label for c in clicks])
        masks, predicted_iou, low = timer.predict(
            point_coords=coords,
            point_labels=labels,
            mask_input=logits[None] if config.feed_mask_input else None,  # (h, w) -> (1, h, w)
            multimask_output=False,
        )
        mask, logits = masks[0], low[0]
        curve.append(float(metrics.mask_iou(mask, gt)))
        scores.append(float(predicted_iou[0]))
    return tuple(curve), tuple(clicks), mask, tuple(scores)


# ---------------------------------------------------------------------------------------------
# Identity of what was evaluated


def _model_info(predictor: Predictor) -> ModelInfo:
    model = getattr(predictor, "model", None)
    if model is None:
        return ModelInfo(None, None, None)
    encoder = getattr(model, "image_encoder", None)
    image_size = getattr(encoder, "img_size", None)
    try:
        num_params = int(sum(p.numel() for p in model.parameters()))
    except AttributeError:
        num_params = None
    cfg = getattr(model, "config", None)
    cfg_dict = (
        dataclasses.asdict(cfg)
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
        else None
    )
    return ModelInfo(None if image_size is None else int(image_size), num_params, cfg_dict)


def _environment(predictor: Predictor) -> dict[str, str]:
    from anyseg._version import __version__

    env = {"anyseg": __version__, "python": platform.python_version()}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    model = getattr(predictor, "model", None)
    device = getattr(model, "device", None)
    if device is not None:
        env["device"] = str(device)
    describe = getattr(predictor, "describe_mode", None)
    if callable(describe):
        env["mode"] = str(describe())
    return env


def _no_grad() -> AbstractContextManager[Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return nullcontext()
    return torch.no_grad()
