"""Write src/anyseg/weights/MODEL_CARD.md from a training run and its `anyseg eval` reports.

    python scripts/write_model_card.py --run runs/default_model \
        --eval runs/default_model/eval --eval-amg runs/default_model/eval_amg \
        --data data/synth_train --weights src/anyseg/weights/default.safetensors

Every number in the card is read from those files; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import tomllib

from anyseg.checkpoint import load, sha256_file

TARGETS = {"point_oracle": 0.85, "point": 0.70, "box": 0.90, "interactive@5": 0.90}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--eval-amg")
    parser.add_argument("--data", required=True, help="the training data folder (its dataset.json)")
    parser.add_argument("--weights", required=True)
    parser.add_argument("-o", "--output", default="src/anyseg/weights/MODEL_CARD.md")
    args = parser.parse_args()

    run, weights = Path(args.run), Path(args.weights)
    cfg = tomllib.loads((run / "config.resolved.toml").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    last = rows[-1]
    tail = rows[-50:]
    train_first = sum(float(r["iou_first"]) for r in tail) / len(tail)
    train_last = sum(float(r["iou_last"]) for r in tail) / len(tail)
    data = json.loads((Path(args.data) / "dataset.json").read_text())
    report = json.loads((Path(args.eval) / "report.json").read_text())
    scores, curve = report["scores"], report["interactive_curve"]
    model = load(weights)
    n_params = sum(p.numel() for p in model.parameters())
    enc, dec = model.config.image_encoder, model.config.mask_decoder
    reached = {
        "point_oracle": scores["point_oracle"]["miou"],
        "point": scores["point"]["miou"],
        "box": scores["box"]["miou"],
        "interactive@5": curve[4] if len(curve) >= 5 else float("nan"),
    }

    lines = [
        "# Model card: the anyseg default model",
        "",
        "A small Segment Anything model, same architecture as SAM and scaled down, trained from scratch",
        "by this project's pipeline on synthetic scenes, on a 2-core CPU. It is what every `anyseg`",
        "command uses when no `--checkpoint` is given.",
        "",
        "**It knows synthetic shapes, not photographs.** For real images use an official checkpoint",
        "(`anyseg download vit_b`, then `--checkpoint sam_vit_b_01ec64.pth`).",
        "",
        "## Weights",
        f"- file: `{weights.name}` ({weights.stat().st_size / 2**20:.1f} MiB, float16, safetensors with the config in its metadata)",
        f"- sha256: `{sha256_file(weights)}`",
        f"- parameters: {n_params:,}",
        f"- image encoder: ViT, {enc.img_size} px input, patch {enc.patch_size}, {enc.depth} blocks, width {enc.embed_dim},"
        f" {enc.num_heads} heads, window {enc.window_size}, global blocks {list(enc.global_attn_indexes)}",
        f"- prompt encoder and mask decoder: width {dec.transformer_dim}, two-way transformer depth {dec.depth},"
        f" {dec.num_heads} heads, MLP {dec.mlp_dim}; 3 multimask outputs; low-res masks {4 * enc.embedding_size}x{4 * enc.embedding_size}",
        "",
        "## Training data",
        f"- `anyseg synth`, seed {data['seed']}, {data['count']} images of {data['config']['height']}x{data['config']['width']},"
        f" masks per level {data.get('masks_per_level')}",
        f"- held-out: `{report['dataset']['path']}`, a seed never used for training",
        "",
        "## Training",
        f"- steps: {last['step']}, wall time {float(last['elapsed_s']) / 60:.0f} min on 2 CPU cores (shared with other work)",
        f"- masks per image {cfg['data']['max_masks_per_image']}, decoder passes per mask"
        f" {1 + cfg['prompts']['num_iterative_points'] + cfg['prompts']['mask_only_iterations']},"
        f" lr {cfg['optim']['lr']}, warmup {cfg['optim']['warmup_steps']}, focal:dice"
        f" {cfg['loss']['focal_weight']}:{cfg['loss']['dice_weight']}",
        "- deviations from the paper's recipe and why: see the comments in `configs/default_model.toml`",
        "- curves: `loss_curve.png` (training loss and IoU, held-out every 300 steps) and",
        "  `heldout_interactive_curve.png` (the held-out interactive curve) beside this card",
        f"- training IoU over the last {len(tail)} steps: first prompt {train_first:.3f}, after the last pass {train_last:.3f}",
        "",
        "## Held-out metrics (`anyseg eval`, the paper's protocols)",
        f"{report['dataset']['num_images']} images, {report['dataset']['num_masks']} masks"
        f" (up to {report['config'].get('max_masks_per_image')} per image), seed {report['config'].get('seed')}.",
        "",
        "| protocol | mIoU | issue target |",
        "|---|---|---|",
        f"| 1 point, most confident of 3 | {reached['point']:.3f} | {TARGETS['point']} |",
        f"| 1 point, best of 3 (oracle) | {reached['point_oracle']:.3f} | {TARGETS['point_oracle']} |",
        f"| 1 point, single-mask output | {scores['point_single']['miou']:.3f} | |",
        f"| box (tight) | {reached['box']:.3f} | {TARGETS['box']} |",
        f"| interactive, 5 clicks | {reached['interactive@5']:.3f} | {TARGETS['interactive@5']} |",
        "",
        "Interactive curve (mIoU after 1..9 clicks): " + " ".join(f"{v:.3f}" for v in curve),
        "",
    ]
    if args.eval_amg:
        amg = json.loads((Path(args.eval_amg) / "report.json").read_text())
        recall = amg.get("amg") or {}
        lines += [
            f"Automatic generation recall ({amg['dataset']['num_images']} images): `{json.dumps(recall)}`",
            "",
        ]
    missed = [k for k, v in reached.items() if not v >= TARGETS[k]]
    lines += [
        "## Limits",
        "- The issue's targets "
        + (f"not reached: {', '.join(missed)}." if missed else "are all reached."),
        "  The model trained for under an hour on a shared 2-core CPU; from scratch, SAM's decoder",
        "  first has to learn to localize prompts at all (see configs/default_model.toml). More steps",
        "  and the paper's 11 decoder passes per mask are the obvious next moves: a GPU run of",
        "  `scripts/train_default_model.sh` with more `run.steps`.",
        "- Its predicted IoUs are low (about 0.2-0.3), so automatic generation with the paper's",
        "  thresholds (pred_iou 0.88, stability 0.95) keeps nothing; lower them for this model,",
        "  e.g. `anyseg auto IMG -o OUT --pred-iou-thresh 0.2 --stability-score-thresh 0.7`.",
        "- Small masks (emblems, subparts) are the weakest: the 64x64 low-res grid is 4 px per logit.",
        "- Trained only on synthetic flat/textured shapes: photographs are out of distribution.",
        "",
        "## Reproduce",
        "```bash",
        "make setup",
        "bash scripts/train_default_model.sh   # data, init, training, packaging, evaluation",
        "python scripts/write_model_card.py --run runs/default_model --eval runs/default_model/eval \\",
        "    --eval-amg runs/default_model/eval_amg --data data/synth_train \\",
        "    --weights src/anyseg/weights/default.safetensors",
        "```",
    ]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
