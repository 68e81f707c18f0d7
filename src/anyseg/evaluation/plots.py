"""Plots of an evaluation: the interactive curve, IoU histograms, the IoU head's reliability
diagram, and a grid of samples (PNG).

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no
display needed) and written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from anyseg.evaluation.report import EvalReport, MaskResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from anyseg.evaluation.runner import SampleView
    from anyseg.evaluation.text import TextQueryResult, TextSample

_SCORE_TITLES = {
    "point": "1 point, most confident",
    "point_oracle": "1 point, oracle (best of 3)",
    "point_single": "1 point, single output",
    "box": "box",
    "interactive": "interactive, last click",
    "amg_best_iou": "automatic, best match",
}


def plot_interactive_curve(report: EvalReport, path: str | os.PathLike[str]) -> None:
    """mIoU against the number of clicks (the paper's Fig. 9 style), with the 1-point oracle and
    box mIoU as dashed references when evaluated.

    Raises:
        ValueError: the report has no interactive curve.
    """
    if not report.interactive_curve:
        raise ValueError("the report has no interactive curve (protocol 'interactive' not run)")
    fig = _figure((5.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    curve = report.interactive_curve
    clicks = np.arange(1, len(curve) + 1)
    ax.plot(clicks, curve, marker="o", color="tab:blue", label="interactive (centre of error)")
    for name, color in (("point_oracle", "tab:orange"), ("box", "tab:green")):
        if name in report.scores:
            ax.axhline(
                report.scores[name].miou, ls="--", lw=1, color=color, label=_SCORE_TITLES[name]
            )
    ax.set_xlabel("number of points")
    ax.set_ylabel("mIoU")
    ax.set_xticks(clicks)
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"{report.dataset.num_masks} masks, {report.dataset.num_images} images", fontsize=9
    )
    _save(fig, path)


def plot_calibration(
    results: Sequence[MaskResult],
    report: EvalReport,
    path: str | os.PathLike[str],
    text_predictions: Sequence[tuple[str, float, float]] = (),
) -> None:
    """Reliability diagram of the IoU head: predicted against actual IoU of every prediction
    (points, per protocol), the per-bin means, and the diagonal of perfect calibration.

    Raises:
        ValueError: no prediction carried an IoU estimate.
    """
    if report.calibration is None:
        raise ValueError("no IoU predictions to plot (no prompt protocol was run)")
    fig = _figure((5.2, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    colors = {"point": "tab:blue", "point_single": "tab:purple", "box": "tab:green",
              "text": "tab:red"}  # fmt: skip
    extra = list(text_predictions)
    for name in report.calibration.by_protocol:
        pairs = [(p, a) for r in results for n, p, a in r.iou_predictions if n == name]
        pairs += [(p, a) for n, p, a in extra if n == name]
        if pairs:
            pred, actual = np.asarray(pairs, dtype=np.float64).T
            ax.scatter(pred, actual, s=4, alpha=0.25, color=colors.get(name, "tab:orange"),
                       label=name)  # fmt: skip
    bins = [(p, a) for _, _, n, p, a in report.calibration.bins if n]
    if bins:
        mp, ma = np.asarray(bins).T
        ax.plot(mp, ma, marker="s", color="black", lw=1.5, label="mean per bin")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    c = report.calibration
    ax.set_title(
        f"IoU head: mean |pred - actual| {c.mae:.3f}, r {c.pearson:.2f} ({c.count} predictions)",
        fontsize=9,
    )
    ax.set_xlabel("predicted IoU")
    ax.set_ylabel("actual IoU")
    ax.set_xlim(min(0.0, float(np.nanmin([b[3] for b in c.bins if b[2]] or [0]))), 1.05)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, markerscale=3)
    _save(fig, path)


def plot_iou_histograms(results: Sequence[MaskResult], path: str | os.PathLike[str]) -> None:
    """One histogram of per-mask IoU (20 bins over [0, 1]) per evaluated score.

    Raises:
        ValueError: no score to plot.
    """
    columns: dict[str, list[float]] = {}
    for name in _SCORE_TITLES:
        if name == "interactive":
            values = [r.interactive[-1] for r in results if r.interactive]
        else:
            values = [v for r in results if (v := getattr(r, name)) is not None]
        if values:
            columns[name] = values
    if not columns:
        raise ValueError("no per-mask IoU to plot")
    _histogram_row({_SCORE_TITLES[n]: v for n, v in columns.items()}, "masks", "tab:blue", path)


def _histogram_row(
    columns: dict[str, list[float]], unit: str, color: str, path: str | os.PathLike[str]
) -> None:
    """One 20-bin IoU histogram per {title: values}, side by side."""
    fig = _figure((3.1 * len(columns), 2.8))
    for k, (title, values) in enumerate(columns.items()):
        ax = fig.add_subplot(1, len(columns), k + 1)
        ax.hist(values, bins=20, range=(0.0, 1.0), color=color, edgecolor="white")
        ax.set_title(f"{title}\nmIoU {np.mean(values):.3f}", fontsize=9)
        ax.set_xlabel("IoU")
        ax.set_xlim(0.0, 1.0)
        if k == 0:
            ax.set_ylabel(unit)
    _save(fig, path)


def plot_samples(samples: Sequence[SampleView], path: str | os.PathLike[str]) -> None:
    """A grid: one row per sample, one column per protocol (point, box, interactive).

    Each panel shows the image, the ground truth outline (green), the prediction (magenta) and the
    prompts: positive clicks as green stars, negative as red crosses, the box in yellow.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("no samples to plot")
    kinds = [
        k
        for k in ("point", "box", "interactive")
        if any(getattr(s, f"{k}_mask") is not None for s in samples)
    ]
    if not kinds:
        raise ValueError("the samples hold no prediction to plot")
    fig = _figure((3.0 * len(kinds), 3.0 * len(samples)))
    for row, sample in enumerate(samples):
        for col, kind in enumerate(kinds):
            ax = fig.add_subplot(len(samples), len(kinds), row * len(kinds) + col + 1)
            _draw_sample(ax, sample, kind)
    fig.suptitle(
        "green outline: ground truth, magenta: prediction\n"
        "green star / red cross: positive / negative click, yellow: box",
        fontsize=8,
    )
    _save(fig, path)


_TEXT_TITLES = {
    "text": "text, most confident",
    "text_oracle": "text, best of 3",
    "text_click": "text + 1 click",
    "text_image_oracle": "referent's crop (upper bound)",
    "text_random_baseline": "random mask (baseline)",
}


def plot_text_histograms(results: Sequence[TextQueryResult], path: str | os.PathLike[str]) -> None:
    """One histogram of per-phrase IoU per text score (the text protocol's ``iou_hist.png``).

    Raises:
        ValueError: no phrase was scored.
    """
    if not results:
        raise ValueError("no text queries to plot")
    columns = {t: [r.scores()[n] for r in results] for n, t in _TEXT_TITLES.items()}
    _histogram_row(columns, "phrases", "tab:purple", path)


def plot_text_samples(samples: Sequence[TextSample], path: str | os.PathLike[str]) -> None:
    """A grid of phrases: each panel the image, the referent's outline (green) and the most
    confident answer (magenta), titled with the phrase and the IoU.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("no text samples to plot")
    cols = min(3, len(samples))
    rows = -(-len(samples) // cols)
    fig = _figure((3.0 * cols, 3.1 * rows))
    for k, s in enumerate(samples):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.set_axis_off()
        ax.imshow(s.image)
        overlay = np.zeros((*s.mask.shape, 4), dtype=np.float32)
        overlay[s.mask] = (1.0, 0.1, 0.6, 0.45)
        ax.imshow(overlay)
        ax.contour(s.gt.astype(np.float32), levels=[0.5], colors=["lime"], linewidths=1.0)
        ax.set_title(f'"{s.query}"\nIoU {s.iou:.3f}', fontsize=8)
    fig.suptitle("green outline: the phrase's referent, magenta: the answer", fontsize=8)
    _save(fig, path)


def _draw_sample(ax: Axes, s: SampleView, kind: str) -> None:
    mask = getattr(s, f"{kind}_mask")
    ax.set_axis_off()
    ax.imshow(s.image)
    if mask is None:
        return
    overlay = np.zeros((*mask.shape, 4), dtype=np.float32)
    overlay[mask] = (1.0, 0.1, 0.6, 0.45)  # magenta: apart from the green outline and clicks
    ax.imshow(overlay)
    ax.contour(s.gt.astype(np.float32), levels=[0.5], colors=["lime"], linewidths=1.0)
    clicks: Sequence[Any] = ()
    if kind == "point" and s.point is not None:
        clicks = (s.point,)
    elif kind == "interactive" and s.clicks is not None:
        clicks = s.clicks
    for c in clicks:
        if c.label == 1:
            ax.plot(c.x, c.y, marker="*", ms=12, color="lime", mec="black", mew=0.8)
        else:
            ax.plot(c.x, c.y, marker="X", ms=9, color="red", mec="black", mew=0.8)
    if kind == "box" and s.box is not None:
        x0, y0, x1, y1 = (float(v) for v in s.box)
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="yellow", lw=1.5)
    iou = getattr(s, f"{kind}_iou")
    extra = f", {len(clicks)} clicks" if kind == "interactive" else ""
    ax.set_title(
        f"img {s.image_id} mask {s.annotation_id}: {kind}\nIoU {iou:.3f}{extra}", fontsize=8
    )


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    from anyseg.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
