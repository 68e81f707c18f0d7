"""Choose the automatic generator's thresholds for a model on held-out data and record them in
its checkpoint (the ``anyseg_amg_thresholds`` metadata; anyseg.evaluation.thresholds).

    python scripts/recommend_amg_thresholds.py CHECKPOINT DATA -o OUT.safetensors [--half]
        [--max-images N] [--json scores.json]

Prints the best pairs; writes OUT (weights unchanged, thresholds added) and, with --json, every
pair's scores. Commands then use the pair wherever --pred-iou-thresh / --stability-score-thresh
are not given.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from anyseg.checkpoint import load, save
from anyseg.evaluation.dataset import open_sa1b
from anyseg.evaluation.thresholds import (
    ThresholdSearchConfig,
    format_scores,
    recommend_thresholds,
    search_thresholds,
)
from anyseg.io import atomic_write_text, display_path, to_json
from anyseg.settings import add_arguments, from_arguments


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path, help="held-out SA-1B-format folder")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--half", action="store_true", help="store float16 tensors")
    p.add_argument("--json", type=Path, help="write every pair's scores here")
    add_arguments(p, ThresholdSearchConfig)
    args = p.parse_args()
    cfg = from_arguments(ThresholdSearchConfig, args)
    model = load(args.checkpoint, device="cpu")
    model.amg_thresholds = None  # search with the generator's other defaults, from scratch
    scores = search_thresholds(model, open_sa1b(args.data, cfg.max_images), config=cfg)
    print(format_scores(scores))
    record = recommend_thresholds(scores, f"{cfg.max_images} images of {args.data.name}")
    model.amg_thresholds = record
    save(model, args.output, half=args.half)
    print(
        f"recommended pred_iou_thresh {record.pred_iou_thresh}, stability_score_thresh "
        f"{record.stability_score_thresh} ({record.source}); wrote {display_path(args.output)}"
    )
    if args.json:
        rows = [dataclasses.asdict(s) | {"f1": s.f1} for s in scores]
        atomic_write_text(args.json, to_json({"recommended": record.to_dict(), "pairs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
