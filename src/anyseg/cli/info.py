"""``anyseg info``: the architecture read from a checkpoint and its parameter counts."""

from __future__ import annotations

import argparse
from typing import Any

FAMILY_NAMES = {
    "sam": "Segment Anything",
    "mobile_sam": "MobileSAM, TinyViT encoder",
    "sam_hq": "SAM-HQ",
    "light_hq_sam": "light HQ-SAM, TinyViT encoder",
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info",
        help="print the architecture and parameter count of a checkpoint",
        description=(
            "Read a checkpoint of any family (SAM, MobileSAM, SAM-HQ, light HQ-SAM; official or "
            "Hugging Face layout; .pth, .pt, .bin, .safetensors or a model folder) and print its "
            "family, the architecture recovered from its tensor shapes and its parameter counts. "
            "Without a checkpoint, describes the bundled default model."
        ),
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (default: bundled model)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anyseg.checkpoint import DEFAULT_WEIGHTS, load_model, read_state_dict, sha256_file
    from anyseg.config import ImageEncoderConfig
    from anyseg.hf_layout import is_hf_layout

    model = load_model(args.checkpoint, device="cpu")
    path = args.checkpoint or str(DEFAULT_WEIGHTS)
    cfg = model.config
    enc, dec, pe = cfg.image_encoder, cfg.mask_decoder, cfg.prompt_encoder
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("image_encoder", "prompt_encoder", "mask_decoder")
    }
    grid = enc.embedding_size
    layout = "Hugging Face SamModel" if is_hf_layout(read_state_dict(path)[0]) else "official"
    print(f"checkpoint      {path}")
    print(f"sha256          {sha256_file(path)}")
    print(f"family          {cfg.family} ({FAMILY_NAMES[cfg.family]}), {layout} layout")
    if isinstance(enc, ImageEncoderConfig):
        print(
            f"image encoder   ViT: {enc.depth} blocks, width {enc.embed_dim}, {enc.num_heads} "
            f"heads, MLP {enc.mlp_ratio:g}x, patch {enc.patch_size}, window {enc.window_size}, "
            f"global blocks {list(enc.global_attn_indexes)}, rel-pos {enc.use_rel_pos}"
        )
    else:
        print(
            f"image encoder   TinyViT: stages of widths {list(enc.embed_dims)}, blocks "
            f"{list(enc.depths)}, heads {list(enc.num_heads)}, windows {list(enc.window_sizes)}, "
            f"MLP {enc.mlp_ratio:g}x"
        )
    print(
        f"input           {enc.img_size}x{enc.img_size} -> embedding {enc.out_chans}x{grid}x{grid}"
    )
    print(f"prompt encoder  width {pe.embed_dim}, mask convs {pe.mask_in_chans} channels")
    print(
        f"mask decoder    two-way transformer: depth {dec.depth}, width {dec.transformer_dim}, "
        f"{dec.num_heads} heads, MLP {dec.mlp_dim}; {dec.num_multimask_outputs} multimask outputs"
    )
    if cfg.hq is not None:
        print(
            f"SAM-HQ          HQ token, fusion of {enc.early_dim}-channel early features; "
            f"hq_token_only {cfg.hq.hq_token_only}"
        )
    print(f"low-res masks   {4 * grid}x{4 * grid}")
    for name, n in counts.items():
        print(f"params {name:<15} {n:>13,}")
    print(f"params {'total':<15} {sum(counts.values()):>13,}")
    return 0
