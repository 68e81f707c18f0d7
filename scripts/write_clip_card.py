"""Write the CLIP section of src/anyseg/weights/MODEL_CARD.md from the records of its training run
and its `anyseg clip eval` reports (scripts/train_clip_synth.sh runs this last).

    python scripts/write_clip_card.py --run runs/clip_synth --log runs/clip_synth.log \
        --eval runs/clip_synth_eval --eval-zeroed runs/clip_synth_eval_zeroed \
        --weights src/anyseg/weights/clip_synth.safetensors

The section lies between the lines ``<!-- clip_synth:begin -->`` and ``<!-- clip_synth:end -->``
(appended when absent; scripts/write_model_card.py keeps it). Every number comes from those files.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

from anyseg.clip import load_clip

BEGIN, END = "<!-- clip_synth:begin -->", "<!-- clip_synth:end -->"
TARGETS = {"colour": 0.95, "fill": 0.90, "shape": 0.90, "retrieval_r1": 0.85}


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def section(run: Path, log: str, report: dict, zeroed: dict, weights: Path) -> str:
    import tomllib

    cfg = tomllib.loads((run / "config.resolved.toml").read_text())
    rows, evals = _rows(run / "metrics.csv"), _rows(run / "eval.csv")
    clip = load_clip(weights)
    c = clip.config
    params = sum(p.numel() for p in clip.model.parameters())
    minutes = float(rows[-1]["elapsed_s"]) / 60
    read = re.search(r"anyseg clip train: (\d+) masks of (\d+) images", log)
    acc, n = report["attribute_accuracy"], report["attribute_counts"]
    naming = report["config"]["naming"]
    ret = report["retrieval"]
    reached = {**acc, "retrieval_r1": report["retrieval_r1"]}
    lines = [
        BEGIN,
        "# Model card: the anyseg text-prompt CLIP (`clip_synth.safetensors`)",
        "",
        "A small CLIP in OpenAI's state-dict layout, trained from scratch by `anyseg clip train` on",
        "crops around the masks of `anyseg synth` scenes and captions built from what each mask",
        "shows. It is the default `--clip` of every command.",
        "",
        "**It knows the colours, fills, shapes and roles of synthetic objects, not photographs,** and",
        f"only the {len(clip.tokenizer.words)} words of its vocabulary (an unknown word is an error",
        "naming the nearest known ones). For real images load a real CLIP (`--clip FILE`: an OpenAI",
        "or open_clip state dict, or a Hugging Face `CLIPModel` folder).",
        "",
        "## Weights",
        f"- file: `{weights.name}` ({weights.stat().st_size / 2**20:.2f} MiB, float16, config and "
        "vocabulary in the safetensors metadata)",
        f"- sha256: `{clip.sha256}`",
        f"- parameters: {params:,}",
        f"- image tower: ViT, {c.vision.image_size} px crops, {c.vision.patch_size} px patches "
        f"({c.vision.grid}x{c.vision.grid} grid), {c.vision.layers} blocks, width {c.vision.width}, "
        f"{c.vision.heads} heads; the last block's class token attends only to the mask's patches",
        f"- text tower: {c.text.layers} causal blocks, width {c.text.width}, {c.text.heads} heads, "
        f"context {c.text.context_length}, word tokenizer of {c.text.vocab_size} ids",
        f"- joint embedding: {c.embed_dim}; activation {c.activation}",
        "",
        "## Training data",
        f"- `anyseg synth`, seed 1, {read.group(2) if read else '?'} images of 256x256 "
        f"(`{cfg['data']['train']}`); {read.group(1) if read else '?'} masks of at least "
        f"{cfg['data']['min_mask_area']} px with a nameable attribute",
        "- crops as SAM's text training makes them (appendix D.5): the mask's box enlarged "
        f"{cfg['data']['scale_min']}-{cfg['data']['scale_max']}x, squared, zero-padded, background "
        f"zeroed with probability {cfg['data']['zero_background_prob']}",
        "- captions from templates and synonyms over the recorded attributes (\"a striped red "
        "star\", \"the emblem on the blue panel\"), every caption true of a crop a positive; "
        f"batches in same-colour groups of {cfg['data']['colour_group_size']}",
        "",
        "## Training",
        f"{len(rows)} steps of {cfg['run']['batch_size']} pairs, AdamW (peak lr "
        f"{cfg['optim']['lr']}, {cfg['optim']['warmup_steps']} warmup steps, cosine decay), "
        f"{minutes:.1f} min on a 2-core CPU shared with other jobs "
        f"({len(rows) / (minutes * 60):.2f} steps/s on average). Config: `configs/clip_synth.toml`.",
        "",
    ]
    if evals:
        keys = [k for k in evals[0] if k != "step"]
        lines += ["Held-out evaluations during training (100 images):", "",
                  "| step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += ["| " + " | ".join([e["step"], *(f"{float(e[k]):.3f}" for k in keys)]) + " |"
                  for e in evals]
        lines.append("")
    lines += [
        "## Held-out metrics (`anyseg clip eval`)",
        f"`{report['data']['path']}` (seed 987654, never trained on): {report['data']['images']} "
        f"images, {report['data']['masks']} masks of at least {report['config']['min_mask_area']} "
        f"px. Crops: box x{report['config']['crop_scale']}, masked attention on. Colour is scored "
        f"where the palette margin is >= {naming['min_colour_margin']} and >= "
        f"{naming['min_colour_fraction']:.0%} of the pixels have the colour, shape where >= "
        f"{naming['min_visible_fraction']:.0%} of it is visible.",
        "",
        "| measure | background kept | background zeroed | masks / queries | target |",
        "|---|---|---|---|---|",
    ]
    for key in ("colour", "fill", "shape"):
        lines.append(f"| {key} accuracy (zero-shot, {len(report['confusion'][key]['values'])} "
                     f"values) | {acc[key]:.3f} | {zeroed['attribute_accuracy'][key]:.3f} | "
                     f"{n[key]} | {TARGETS[key]} |")
    lines.append(f"| retrieval R@1 (chance {ret['chance']:.3f}) | {report['retrieval_r1']:.3f} | "
                 f"{zeroed['retrieval_r1']:.3f} | {ret['count']} | {TARGETS['retrieval_r1']} |")
    for form, r in ret["by_form"].items():
        z = zeroed["retrieval"]["by_form"][form]["r1"]
        lines.append(f"| - {form} captions | {r['r1']:.3f} | {z:.3f} | {r['count']} | |")
    missed = [k for k, t in TARGETS.items() if reached[k] < t]
    lines += [
        "",
        "Retrieval: each query is a caption naming exactly one mask of its image (\"the striped red",
        "star\", \"the red star\", \"the emblem on the blue panel\"); the right mask's crop must score",
        "best among the crops of all that image's masks. `clip_synth_eval.png` beside this card",
        "shows the confusion matrices.",
        "",
        "## Limits",
        ("- Targets reached: all." if not missed else
         f"- Targets not reached: {', '.join(missed)} (table above)."),
        "- Only synthetic flat, striped, checkered, gradient and mottled shapes in the generator's",
        "  palette; photographs and words outside the vocabulary are out of reach.",
        "- Size and position words are not learned (crops are rescaled and carry no coordinates).",
        "",
        "## Reproduce",
        "```bash",
        "bash scripts/train_clip_synth.sh   # data, training, both evaluations, weights, this section",
        "```",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--eval", required=True, type=Path)
    ap.add_argument("--eval-zeroed", required=True, type=Path)
    ap.add_argument("--weights", required=True, type=Path)
    ap.add_argument("--card", type=Path, default=Path("src/anyseg/weights/MODEL_CARD.md"))
    args = ap.parse_args()
    report = json.loads((args.eval / "report.json").read_text())
    zeroed = json.loads((args.eval_zeroed / "report.json").read_text())
    text = section(args.run, args.log.read_text(), report, zeroed, args.weights)
    card = args.card.read_text() if args.card.is_file() else ""
    if BEGIN in card:
        card = card[: card.index(BEGIN)] + text + card[card.index(END) + len(END) :]
    else:
        card = card.rstrip("\n") + "\n\n" + text + "\n"
    args.card.write_text(card)
    shutil.copy(args.eval / "clip_eval.png", args.card.parent / "clip_synth_eval.png")
    print(f"wrote the CLIP section of {args.card}")


if __name__ == "__main__":
    main()
