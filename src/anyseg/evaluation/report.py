"""Typed evaluation results: per-mask scores, the JSON report, and the printed table.

The report is self-describing: checkpoint path and SHA-256, model size, dataset path and counts,
the full :class:`~anyseg.evaluation.config.EvalConfig`, per-protocol mIoU with counts and IoU
histograms, the interactive curve, automatic-generation recall, and timing. Everything but
``timing`` and ``environment`` is deterministic for a given model, dataset and config.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from anyseg.evaluation.config import EvalConfig

REPORT_FORMAT = 1

#: Scores of the point and box protocols, in table order.
#: ``point``: most confident of the 3 masks; ``point_oracle``: best of the 3;
#: ``point_single``: single-mask output; ``box``: tight box, single-mask output.
SCORE_NAMES: tuple[str, ...] = ("point", "point_oracle", "point_single", "box")
#: Scores of the text protocol (per phrase; see anyseg.evaluation.text).
TEXT_SCORE_NAMES: tuple[str, ...] = (
    "text",
    "text_oracle",
    "text_hit",
    "text_click",
    "text_image_oracle",
    "text_random_baseline",
)


@dataclass(frozen=True)
class MaskResult:
    """Scores of one ground-truth mask (None where the protocol did not run).

    Attributes:
        image_id: the image's id.
        annotation_id: the mask's id in its image record.
        area: mask pixels.
        point, point_oracle, point_single, box: IoU of the protocol's prediction (see SCORE_NAMES).
        interactive: IoU after 1, 2, ..., num_points clicks.
        amg_best_iou: IoU of the best automatically generated mask for this ground truth.
        level: ``"whole"``, ``"part"`` or ``"subpart"`` when the dataset records it, else None.
        iou_predictions: (protocol, predicted IoU, actual IoU) of every prediction the model
            scored itself: the 3 candidates of the point protocol ("point"), its single output
            ("point_single"), the box ("box") and every click ("interactive").
    """

    image_id: int
    annotation_id: int
    area: int
    point: float | None = None
    point_oracle: float | None = None
    point_single: float | None = None
    box: float | None = None
    interactive: tuple[float, ...] | None = None
    amg_best_iou: float | None = None
    level: str | None = None
    iou_predictions: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class ScoreSummary:
    """mIoU of one score over the evaluated masks, with the IoU histogram (10 bins over [0, 1])."""

    miou: float
    count: int
    histogram: tuple[int, ...]


@dataclass(frozen=True)
class GroupSummary:
    """mIoU of each score over one group of masks (e.g. the small ones).

    Attributes:
        count: masks in the group.
        miou: {score name (see SCORE_NAMES, plus "interactive" = last click): mIoU}.
    """

    count: int
    miou: dict[str, float]


@dataclass(frozen=True)
class AmgSummary:
    """Automatic generation: recall of the ground-truth masks at each IoU threshold.

    Attributes:
        recall: {threshold as text, e.g. "0.5": fraction of ground-truth masks with a generated
            mask at IoU >= threshold}.
        mean_best_iou: mean over ground-truth masks of the best generated mask's IoU.
        num_gt: ground-truth masks scored.
        num_generated: generated masks over all images.
    """

    recall: dict[str, float]
    mean_best_iou: float
    num_gt: int
    num_generated: int


@dataclass(frozen=True)
class CalibrationSummary:
    """How well the IoU head's predictions match the real IoUs of its masks.

    Attributes:
        mae: mean |predicted IoU - actual IoU|.
        pearson: correlation of predicted and actual IoU (NaN when either is constant).
        count: predictions scored.
        bins: the reliability diagram, (low, high, count, mean predicted, mean actual) per
            bin of predicted IoU.
    """

    mae: float
    pearson: float
    count: int
    bins: tuple[tuple[float, float, int, float, float], ...] = ()


@dataclass(frozen=True)
class Calibration:
    """Calibration over all of a run's IoU predictions, and per protocol."""

    mae: float
    pearson: float
    count: int
    by_protocol: dict[str, CalibrationSummary]
    bins: tuple[tuple[float, float, int, float, float], ...] = ()


@dataclass(frozen=True)
class CheckpointInfo:
    """Which weights were evaluated: the file and its SHA-256 (None for in-memory models)."""

    path: str | None
    sha256: str | None
    description: str


@dataclass(frozen=True)
class ModelInfo:
    """Model size: encoder input side, parameter count, and its config when known."""

    image_size: int | None
    num_parameters: int | None
    config: dict[str, Any] | None


@dataclass(frozen=True)
class DatasetInfo:
    """Which data was evaluated.

    Attributes:
        path: dataset folder (SA-1B format) or annotations file (COCO).
        format: ``"sa1b"`` or ``"coco"``.
        images_dir: COCO images folder, else None.
        num_images_total: images in the dataset.
        num_images: images evaluated.
        num_masks_total: ground-truth masks in the evaluated images.
        num_masks: masks evaluated (after the area filter and the per-image cap).
        num_crowd_skipped: COCO crowd annotations left out.
    """

    path: str
    format: str
    images_dir: str | None
    num_images_total: int
    num_images: int
    num_masks_total: int
    num_masks: int
    num_crowd_skipped: int = 0


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds (not deterministic; left out of :meth:`EvalReport.metrics`)."""

    total_s: float
    set_image_s: float
    predict_s: float
    num_predict_calls: int
    amg_s: float


@dataclass(frozen=True)
class EvalReport:
    """The result of one ``evaluate`` run (written as ``report.json``)."""

    checkpoint: CheckpointInfo
    model: ModelInfo
    dataset: DatasetInfo
    config: EvalConfig
    scores: dict[str, ScoreSummary]
    interactive_curve: tuple[float, ...] | None
    amg: AmgSummary | None
    timing: Timing
    calibration: Calibration | None = None
    breakdown: dict[str, dict[str, GroupSummary]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    format_version: int = REPORT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN, for a score with nothing evaluated, becomes null)."""
        out = asdict(self)
        out["config"] = self.config.to_dict()
        return _json_safe(out)

    def metrics(self) -> dict[str, Any]:
        """The deterministic part of the report (everything but timing and environment)."""
        out = self.to_dict()
        out.pop("timing")
        out.pop("environment")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. a ``report.json``)."""
        amg = data.get("amg")
        curve = data.get("interactive_curve")
        return cls(
            checkpoint=CheckpointInfo(**data["checkpoint"]),
            model=ModelInfo(**data["model"]),
            dataset=DatasetInfo(**data["dataset"]),
            config=EvalConfig.from_dict(data["config"]),
            scores={
                k: ScoreSummary(_nan(v["miou"]), int(v["count"]), tuple(v["histogram"]))
                for k, v in data["scores"].items()
            },
            interactive_curve=None if curve is None else tuple(_nan(v) for v in curve),
            amg=None
            if amg is None
            else AmgSummary(**{**amg, "mean_best_iou": _nan(amg["mean_best_iou"])}),
            timing=Timing(**data["timing"]),
            calibration=_calibration(data.get("calibration")),
            breakdown={
                kind: {
                    name: GroupSummary(int(g["count"]), {k: _nan(v) for k, v in g["miou"].items()})
                    for name, g in groups.items()
                }
                for kind, groups in data.get("breakdown", {}).items()
            },
            environment=dict(data.get("environment", {})),
            notes=tuple(data.get("notes", ())),
            format_version=int(data.get("format_version", REPORT_FORMAT)),
        )


def write_report(path: str | os.PathLike[str], report: EvalReport) -> None:
    """Write ``report`` as indented JSON, atomically."""
    from anyseg.io import atomic_write_bytes

    text = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_report(path: str | os.PathLike[str]) -> EvalReport:
    """Read a ``report.json`` written by :func:`write_report`."""
    with open(path, encoding="utf-8") as f:
        return EvalReport.from_dict(json.load(f))


def format_table(report: EvalReport) -> str:
    """A short plain-text table of the results (what ``anyseg eval`` prints)."""
    d = report.dataset
    lines = [
        f"checkpoint: {report.checkpoint.description}"
        + (f" (sha256 {report.checkpoint.sha256[:12]})" if report.checkpoint.sha256 else ""),
        f"dataset:    {d.path} ({d.format}): {d.num_images} images, {d.num_masks} masks evaluated",
        "",
        f"{'protocol':<34}{'mIoU':>8}{'masks':>8}",
    ]
    labels = {
        "point": "1 point, most confident of 3",
        "point_oracle": "1 point, best of 3 (oracle)",
        "point_single": "1 point, single-mask output",
        "box": "box (tight), single-mask output",
    }
    labels.update(
        text="text, most confident of 3",
        text_oracle="text, best of 3 (oracle)",
        text_hit="text, hit rate (IoU >= 0.5)",
        text_click="text + 1 corrective click",
        text_image_oracle="referent's own crop (upper bound)",
        text_random_baseline="random mask of the image",
    )
    for name in (*SCORE_NAMES, *TEXT_SCORE_NAMES):
        if name in report.scores:
            s = report.scores[name]
            count_label = "phrases" if name in TEXT_SCORE_NAMES else ""
            lines.append(f"{labels[name]:<34}{_fmt(s.miou):>8}{s.count:>8} {count_label}".rstrip())
    for kind, groups in report.breakdown.items():
        names = [n for n in ("point", "point_oracle", "box", "interactive") if n in report.scores]
        if not names or not groups:
            continue
        lines.append("")
        heads = {"point_oracle": "oracle", "interactive": f"{report.config.num_points} clicks"}
        lines.append(
            f"{'by ' + kind:<16}{'masks':>7}" + "".join(f"{heads.get(n, n):>10}" for n in names)
        )
        for group, g in groups.items():
            row = "".join(f"{_fmt(g.miou.get(n, float('nan'))):>10}" for n in names)
            lines.append(f"{group:<16}{g.count:>7}{row}")
    if report.interactive_curve:
        curve = report.interactive_curve
        lines.append("")
        lines.append("interactive mIoU by clicks: " + " ".join(_fmt(v) for v in curve))
    if report.amg is not None:
        recall = ", ".join(f"@{t}: {_fmt(v)}" for t, v in report.amg.recall.items())
        lines.append("")
        lines.append(
            f"automatic generation recall {recall} (mean best IoU {_fmt(report.amg.mean_best_iou)},"
            f" {report.amg.num_generated} masks generated)"
        )
    if report.calibration is not None:
        c = report.calibration
        per = ", ".join(f"{name} {_fmt(s.mae)}" for name, s in c.by_protocol.items() if s.count)
        lines.append("")
        lines.append(
            f"IoU-head calibration: mean |predicted - actual| {_fmt(c.mae)}, Pearson r "
            f"{_fmt(c.pearson)} over {c.count} predictions ({per})"
        )
    for note in report.notes:
        lines.append(f"note: {note}")
    t = report.timing
    lines.append("")
    lines.append(
        f"time: {t.total_s:.1f} s (set_image {t.set_image_s:.1f} s, {t.num_predict_calls} predict "
        f"calls {t.predict_s:.1f} s, automatic {t.amg_s:.1f} s)"
    )
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _calibration(data: Any) -> Calibration | None:
    if data is None:
        return None

    def bins(rows: Any) -> tuple[tuple[float, float, int, float, float], ...]:
        return tuple(
            (float(lo), float(hi), int(n), _nan(p), _nan(a)) for lo, hi, n, p, a in rows or ()
        )

    return Calibration(
        mae=_nan(data["mae"]),
        pearson=_nan(data["pearson"]),
        count=int(data["count"]),
        by_protocol={
            k: CalibrationSummary(
                _nan(v["mae"]), _nan(v["pearson"]), int(v["count"]), bins(v.get("bins"))
            )
            for k, v in data.get("by_protocol", {}).items()
        },
        bins=bins(data.get("bins")),
    )


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
