"""Write the text-prompt section of src/anyseg/weights/MODEL_CARD.md from the records of the text
fine-tune (scripts/train_default_model_text.sh): its run folder and the `anyseg eval` reports
before and after it and of the text protocol. Every number is read from those files.

    python scripts/write_text_card.py --run runs/default_model_text \
        --before runs/text_eval_before --after runs/text_eval_after --text runs/text_eval_text \
        --weights src/anyseg/weights/default.safetensors

The section sits between the markers below (replaced on a re-run, appended the first time), and
the card's weights lines (size, SHA-256) are updated to the shipped file, so the card stays
right whichever of this script and scripts/write_model_card.py ran last.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import tomllib

from anyseg.checkpoint import load, sha256_file

CARD = Path(__file__).resolve().parents[1] / "src" / "anyseg" / "weights" / "MODEL_CARD.md"
BEGIN, END = "<!-- text-prompts:begin -->", "<!-- text-prompts:end -->"
TARGETS = {"text_hit": 0.75, "text": 0.50}
ROWS = (
    ("point", "1 point, most confident of 3"),
    ("point_oracle", "1 point, best of 3 (oracle)"),
    ("box", "box (tight)"),
    ("interactive@5", "interactive, 5 clicks"),
    ("interactive@9", "interactive, 9 clicks"),
)
TEXT_ROWS = (
    ("text", "phrase alone, most confident of 3"),
    ("text_oracle", "phrase alone, best of 3"),
    ("text_hit", "hit rate: most confident mask at IoU >= 0.5"),
    ("text_click", "phrase + 1 corrective click"),
    ("text_image_oracle", "the referent's own crop embedding (upper bound of the path)"),
    ("text_random_baseline", "a random mask of the image (baseline)"),
)


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _score(report: dict, name: str) -> float:
    if name.startswith("interactive@"):
        return float(report["interactive_curve"][int(name.split("@")[1]) - 1])
    return float(report["scores"][name]["miou"])


def section(run: Path, before: dict, after: dict, text: dict) -> str:
    cfg = tomllib.loads((run / "config.resolved.toml").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    p, o, d = cfg["prompts"], cfg["optim"], cfg["data"]
    wall = (
        (run / "wall_seconds.txt").read_text().strip()
        if (run / "wall_seconds.txt").is_file()
        else ""
    )
    minutes = f"{int(wall) / 60:.0f} min" if wall else "n/a"
    last = rows[-20:]
    text_iou = [
        float(r["text_iou_first"]) for r in last if r.get("text_iou_first") not in ("", "nan", None)
    ]
    record = load(run / "model.safetensors").text_clip
    clip = (
        f"`{record.source}`, SHA-256 `{record.sha256}`, width {record.embed_dim}"
        if record
        else "not recorded"
    )
    passes = 1 + p["num_iterative_points"] + p["mask_only_iterations"]
    lines = [
        BEGIN,
        "## Text prompts",
        "",
        "The prompt encoder has a text path (SAM paper §7.5, appendix D.5): an L2-normalised CLIP",
        "embedding goes through a small MLP (CLIP width -> 256 -> 256) plus a learned text type",
        "embedding, one sparse token. It was trained the paper's way, without captions: a",
        "text-first mask is prompted with the CLIP *image* embedding of a crop around it (box",
        "enlarged 1-2x, squared, background zeroed half the time, CLIP's class token attending to",
        "the mask's patches only); at inference the CLIP *text* embedding of a phrase replaces it.",
        "Half of the text-first masks with a caption used its text embedding instead.",
        "",
        f"- CLIP: {clip} (recorded in the weights' metadata)",
        f"- fine-tune: `configs/default_model_text.toml` from the previous bundled weights, "
        f"{len(rows)} steps of 1 image x up to {d['max_masks_per_image']} masks, "
        f"{passes} decoder passes, text_prob {p['text_prob']}, caption share "
        f"{p['text_caption_prob']}, "
        f"masks from {p['text_min_area_fraction'] * 256 * 256:.0f} px, lr {o['lr']}, image "
        f"encoder frozen (embeddings cached on disk), on the shared 2-core CPU in {minutes}",
        f"- training IoU after the text prompt alone, last 20 logged steps: "
        f"{sum(text_iou) / len(text_iou):.3f}"
        if text_iou
        else "- training IoU: n/a",
        "",
        "Held-out points, box and interactive clicks before and after the text fine-tune "
        f"(`anyseg eval`, {after['dataset']['num_images']} images, {after['dataset']['num_masks']} "
        "masks):",
        "",
        "| protocol | before | after |",
        "|---|---|---|",
    ]
    for name, label in ROWS:
        lines.append(f"| {label} | {_score(before, name):.3f} | {_score(after, name):.3f} |")
    bc, ac = before["calibration"], after["calibration"]
    lines.append(f"| IoU-head calibration, mean abs error | {bc['mae']:.3f} | {ac['mae']:.3f} |")
    for name in ("point", "box", "interactive"):
        if name in bc["by_protocol"] and name in ac["by_protocol"]:
            lines.append(
                f"| ... of {name} predictions | {bc['by_protocol'][name]['mae']:.3f} | "
                f"{ac['by_protocol'][name]['mae']:.3f} |"
            )
    n_text = text["scores"]["text"]["count"]
    lines += [
        "",
        f"Text protocol (`anyseg eval --protocols text`, {text['dataset']['num_images']} held-out "
        f"images, {n_text} phrases that name exactly one mask, forms "
        f"{', '.join(text['config']['text_forms'])}):",
        "",
        "| score | value | issue target |",
        "|---|---|---|",
    ]
    for name, label in TEXT_ROWS:
        target = TARGETS.get(name, "")
        if name == "text":
            target = f"{TARGETS['text']}, and within 0.1 of the crop upper bound"
        lines.append(f"| {label} | {_score(text, name):.3f} | {target} |")
    cal = text["calibration"]["by_protocol"].get("text")
    if cal:
        lines.append(
            f"| IoU-head calibration of the text answers, mean abs error | {cal['mae']:.3f} | |"
        )
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--text", type=Path, required=True)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--card", type=Path, default=CARD)
    args = ap.parse_args()
    body = section(args.run, _report(args.before), _report(args.after), _report(args.text))
    card = args.card.read_text()
    if BEGIN in card:
        card = card[: card.index(BEGIN)] + body + card[card.index(END) + len(END) :]
    else:
        card = card.rstrip("\n") + "\n\n" + body + "\n"
    size = args.weights.stat().st_size / 2**20
    card = re.sub(
        r"^- file: `default\.safetensors` \([0-9.]+ MiB",
        f"- file: `default.safetensors` ({size:.1f} MiB",
        card,
        flags=re.M,
    )
    card = re.sub(
        r"^- sha256: `[0-9a-f]{64}`", f"- sha256: `{sha256_file(args.weights)}`", card, flags=re.M
    )
    args.card.write_text(card)
    print(f"wrote the text section of {args.card}")


if __name__ == "__main__":
    main()
