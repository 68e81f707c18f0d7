"""``anyseg info``: the architecture read from a checkpoint and its parameter counts."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info",
        help="print the architecture and parameter count of a checkpoint",
        description=(
            "Read a checkpoint in the official SAM layout (.pth or .safetensors) and print the "
            "architecture recovered from its tensor shapes and its parameter counts. Without a "
            "checkpoint, describes the bundled default model."
        ),
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (default: bundled model)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anyseg.checkpoint import DEFAULT_WEIGHTS, load_model, sha256_file

    model = load_model(args.checkpoint, device="cpu")
    path = args.checkpoint or str(DEFAULT_WEIGHTS)
    cfg = model.config
    enc, dec, pe = cfg.image_encoder, cfg.mask_decoder, cfg.prompt_encoder
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("image_encoder", "prompt_encoder", "mask_decoder")
    }
    grid = enc.embedding_size
    print(f"checkpoint      {path}")
    print(f"sha256          {sha256_file(path)}")
    print(
        f"image encoder   ViT: {enc.depth} blocks, width {enc.embed_dim}, {enc.num_heads} heads, "
        f"MLP {enc.mlp_ratio:g}x, patch {enc.patch_size}, window {enc.window_size}, "
        f"global blocks {list(enc.global_attn_indexes)}, rel-pos {enc.use_rel_pos}"
    )
    print(
        f"input           {enc.img_size}x{enc.img_size} -> embedding {enc.out_chans}x{grid}x{grid}"
    )
    print(f"prompt encoder  width {pe.embed_dim}, mask convs {pe.mask_in_chans} channels")
    print(
        f"mask decoder    two-way transformer: depth {dec.depth}, width {dec.transformer_dim}, "
        f"{dec.num_heads} heads, MLP {dec.mlp_dim}; {dec.num_multimask_outputs} multimask outputs"
    )
    print(f"low-res masks   {4 * grid}x{4 * grid}")
    for name, n in counts.items():
        print(f"params {name:<15} {n:>13,}")
    print(f"params {'total':<15} {sum(counts.values()):>13,}")
    return 0
