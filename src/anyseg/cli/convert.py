"""``anyseg convert``: rewrite a checkpoint in the official or the Hugging Face layout."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert",
        help="rewrite a checkpoint in the official or the Hugging Face SamModel layout",
        description=(
            "Read a checkpoint of any family and layout (official, MobileSAM, SAM-HQ, Hugging "
            "Face SamModel; a file, a model folder or a sharded index) and write it again. "
            "--to official writes the release layout (.pth, or .safetensors that also carries "
            "the exact config); for MobileSAM and SAM-HQ that is their own release's layout. "
            "--to hf writes a folder that transformers' SamModel.from_pretrained reads "
            "(model.safetensors and config.json; SAM's ViT models only). Tensor values are "
            "copied unchanged."
        ),
        epilog=(
            "examples: anyseg convert sam_vit_b_01ec64.pth --to hf -o sam-vit-base/ ; "
            "anyseg convert sam-vit-base/ --to official -o sam_vit_b.pth"
        ),
    )
    p.add_argument("checkpoint", help="checkpoint file, model folder or *.index.json")
    p.add_argument("--to", required=True, choices=("hf", "official"), help="target layout")
    p.add_argument(
        "-o", "--output", required=True, help="output: a folder for hf, a .pth/.safetensors file"
    )
    p.add_argument("--half", action="store_true", help="store float16 tensors (--to official)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anyseg.checkpoint import load, save
    from anyseg.errors import InvalidInputError
    from anyseg.hf_layout import save_hf

    model = load(args.checkpoint)
    out = Path(args.output)
    if args.to == "hf":
        if args.half:
            raise InvalidInputError("--half is for --to official")
        if out.suffix in (".pth", ".pt", ".safetensors", ".bin"):
            raise InvalidInputError(f"--to hf writes a folder, not {out.name}")
        save_hf(model.state_dict(), model.config, out)
        print(
            f"{out}/ (Hugging Face SamModel: model.safetensors, config.json; {model.config.family})"
        )
    else:
        save(model, out, half=args.half)
        print(f"{out} (official layout, {model.config.family})")
    return 0
