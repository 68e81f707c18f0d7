"""Writing an evaluation's files: the JSON report, per-mask scores, and the plots."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from anyseg.evaluation.plots import (
    plot_calibration,
    plot_interactive_curve,
    plot_iou_histograms,
    plot_samples,
    plot_text_histograms,
    plot_text_samples,
)
from anyseg.evaluation.report import write_report
from anyseg.evaluation.runner import EvalResult

REPORT_NAME = "report.json"
PER_MASK_NAME = "per_mask.jsonl"
CURVE_NAME = "interactive_curve.png"
HIST_NAME = "iou_hist.png"
SAMPLES_NAME = "samples.png"
CALIBRATION_NAME = "calibration.png"
PER_TEXT_NAME = "per_text.jsonl"
TEXT_HIST_NAME = "text_iou_hist.png"
TEXT_SAMPLES_NAME = "text_samples.png"


def write_outputs(result: EvalResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.json``, ``per_mask.jsonl`` (one JSON object per evaluated mask) and the PNGs
    (``interactive_curve.png`` when the interactive protocol ran, ``iou_hist.png``,
    ``calibration.png`` when the model predicted IoUs, and ``samples.png`` when samples were
    kept; for the text protocol ``per_text.jsonl``, ``text_iou_hist.png`` and
    ``text_samples.png``) into ``out_dir`` (created if needed).

    Returns:
        {file name: path written}.
    """
    from anyseg.io import atomic_write_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    lines = [json.dumps(asdict(m), separators=(",", ":")) for m in result.masks]
    atomic_write_bytes(out / PER_MASK_NAME, ("\n".join(lines) + "\n").encode("utf-8"))
    written[PER_MASK_NAME] = out / PER_MASK_NAME
    if result.report.interactive_curve:
        plot_interactive_curve(result.report, out / CURVE_NAME)
        written[CURVE_NAME] = out / CURVE_NAME
    if any(
        m.point is not None or m.box is not None or m.interactive or m.amg_best_iou is not None
        for m in result.masks
    ):
        plot_iou_histograms(result.masks, out / HIST_NAME)
        written[HIST_NAME] = out / HIST_NAME
    if result.text_queries:
        from anyseg.evaluation.text import text_iou_predictions

        rows = [json.dumps(asdict(q), separators=(",", ":")) for q in result.text_queries]
        atomic_write_bytes(out / PER_TEXT_NAME, ("\n".join(rows) + "\n").encode("utf-8"))
        written[PER_TEXT_NAME] = out / PER_TEXT_NAME
        plot_text_histograms(result.text_queries, out / TEXT_HIST_NAME)
        written[TEXT_HIST_NAME] = out / TEXT_HIST_NAME
    if result.text_samples:
        plot_text_samples(result.text_samples, out / TEXT_SAMPLES_NAME)
        written[TEXT_SAMPLES_NAME] = out / TEXT_SAMPLES_NAME
    if result.report.calibration is not None:
        text_pred = text_iou_predictions(result.text_queries) if result.text_queries else []
        plot_calibration(result.masks, result.report, out / CALIBRATION_NAME, text_pred)
        written[CALIBRATION_NAME] = out / CALIBRATION_NAME
    if result.samples and any(
        s.point_mask is not None or s.box_mask is not None or s.interactive_mask is not None
        for s in result.samples
    ):
        plot_samples(result.samples, out / SAMPLES_NAME)
        written[SAMPLES_NAME] = out / SAMPLES_NAME
    # The report last: its presence means the run finished.
    write_report(out / REPORT_NAME, result.report)
    written[REPORT_NAME] = out / REPORT_NAME
    return written
