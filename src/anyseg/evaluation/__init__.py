"""The paper's evaluation protocols (SAM §7.1, appendix D.1): metrics, prompt placement, the
runner, the JSON report and plots.

Typical use::

    from anyseg.evaluation import EvalConfig, evaluate, open_sa1b, write_outputs

    result = evaluate(SamPredictor(model), open_sa1b("data/val"), EvalConfig(max_images=50))
    write_outputs(result, "outputs/eval")
    print(result.report.scores["point"].miou, result.report.interactive_curve)
"""

from __future__ import annotations

from anyseg.evaluation.amg import MaskGenerator, build_mask_generator
from anyseg.evaluation.config import DEFAULT_PROTOCOLS, PROTOCOLS, EvalConfig
from anyseg.evaluation.dataset import EvalDataset, EvalImage, open_coco, open_sa1b
from anyseg.evaluation.metrics import (
    best_match_iou,
    iou_matrix,
    mask_iou,
    recall_at,
    rle_iou_matrix,
)
from anyseg.evaluation.outputs import write_outputs
from anyseg.evaluation.prompts import (
    ClickPoint,
    boundary_distance,
    center_point,
    next_click,
    random_point,
    region_center,
    tight_box,
)
from anyseg.evaluation.report import (
    AmgSummary,
    CheckpointInfo,
    DatasetInfo,
    EvalReport,
    GroupSummary,
    MaskResult,
    ModelInfo,
    ScoreSummary,
    Timing,
    format_table,
    read_report,
    write_report,
)
from anyseg.evaluation.runner import EvalResult, SampleView, evaluate, select_masks
from anyseg.evaluation.summary import SIZE_BUCKETS, breakdown, interactive_curve, summarize_scores
from anyseg.evaluation.text import TEXT_SCORES, TextQueryResult, summarize_text

__all__ = [
    "DEFAULT_PROTOCOLS",
    "PROTOCOLS",
    "SIZE_BUCKETS",
    "TEXT_SCORES",
    "AmgSummary",
    "CheckpointInfo",
    "ClickPoint",
    "DatasetInfo",
    "EvalConfig",
    "EvalDataset",
    "EvalImage",
    "EvalReport",
    "EvalResult",
    "GroupSummary",
    "MaskGenerator",
    "MaskResult",
    "ModelInfo",
    "SampleView",
    "ScoreSummary",
    "TextQueryResult",
    "Timing",
    "best_match_iou",
    "boundary_distance",
    "breakdown",
    "build_mask_generator",
    "center_point",
    "evaluate",
    "format_table",
    "interactive_curve",
    "iou_matrix",
    "mask_iou",
    "next_click",
    "open_coco",
    "open_sa1b",
    "random_point",
    "read_report",
    "recall_at",
    "region_center",
    "rle_iou_matrix",
    "select_masks",
    "summarize_scores",
    "summarize_text",
    "tight_box",
    "write_outputs",
    "write_report",
]
