"""CLIP training speed on this machine, for sizing ``anyseg clip train`` runs.

    python bench/bench_clip.py [--data DIR] [--batch 256] [--steps 4] [--threads N]

Prints the CPU (model, cores, torch's SIMD level, threads, load) and a table: for a few model
sizes, the time to draw a batch of (crop, caption) pairs and one full optimizer step (both
towers forward and backward, AdamW), steps/s and pairs/s. Without ``--data`` it writes a small
``anyseg synth`` data set to a temporary folder first. Random initial weights.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anyseg.clip import ClipConfig, ClipModel, TextConfig, VisionConfig
from anyseg.data.attributed import read_attributed_images
from anyseg.training.clip_config import ClipDataConfig, ClipTrainConfig
from anyseg.training.clip_data import PairSampler
from anyseg.training.clip_heads import AttributeHeads
from anyseg.training.clip_trainer import (
    _param_groups,
    batch_loss,
    caption_tokenizer,
    model_config,
)

# (name, image size, patch, width, image layers, text layers, embedding width)
SIZES = (
    ("xs", 48, 8, 96, 3, 2, 96),
    ("s-48px", 48, 8, 128, 4, 2, 128),
    ("s", 64, 8, 128, 4, 3, 128),
    ("m", 64, 8, 192, 6, 4, 192),
    ("s-p16", 64, 16, 128, 4, 3, 128),
    ("s-96px", 96, 12, 128, 4, 3, 128),
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="an anyseg synth folder (default: 40 fresh images)")
    ap.add_argument("--batch", type=int, default=256, help="pairs per step")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per size")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--sizes", default=",".join(s[0] for s in SIZES), help="sizes to time")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"(SIMD {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from anyseg.data.synthetic import SynthConfig, write_dataset

            data = str(Path(tmp) / "synth")
            write_dataset(
                data,
                40,
                seed=123,
                config=SynthConfig(height=256, width=256),
                workers=1,
                progress=False,
            )
        images = read_attributed_images(data)
    print(f"data: {len(images)} images; batch {args.batch} pairs; {args.steps} timed steps")
    print()
    print(
        "| size | crop px | patch | width | layers (image/text) | params | batch ms | "
        "step ms | steps/s | pairs/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    wanted = set(args.sizes.split(","))
    for name, size, patch, width, v_layers, t_layers, embed in SIZES:
        if name not in wanted:
            continue
        model_cfg = ClipConfig(
            embed_dim=embed,
            vision=VisionConfig(
                image_size=size,
                patch_size=patch,
                width=width,
                layers=v_layers,
                heads=max(1, width // 64),
                mlp_dim=4 * width,
            ),
            text=TextConfig(
                width=width, layers=t_layers, heads=max(1, width // 64), mlp_dim=4 * width
            ),
        )
        cfg = ClipTrainConfig(model=model_cfg, data=ClipDataConfig(train=data))
        tok = caption_tokenizer(cfg.model.text.context_length)
        torch.manual_seed(0)
        model = ClipModel(model_config(replace(cfg), tok)).train()
        heads = AttributeHeads(embed)
        groups = [*_param_groups(model, 0.1), {"params": list(heads.parameters())}]
        opt = torch.optim.AdamW(groups, lr=1e-4)
        sampler = PairSampler(images, tok, cfg.data, size)
        t_batch = t_step = 0.0
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            batch = sampler.sample(np.random.default_rng(i), args.batch)
            t1 = time.perf_counter()
            contrastive, attributes, _ = batch_loss(model, batch, torch.device("cpu"), heads)
            loss = contrastive + attributes
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if i >= args.warmup:
                t_batch += t1 - t0
                t_step += t2 - t1
        n = args.steps
        total = (t_batch + t_step) / n
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"| {name} | {size} | {patch} | {width} | {v_layers}/{t_layers} | {params:.2f}M | "
            f"{1000 * t_batch / n:.0f} | {1000 * t_step / n:.0f} | {1 / total:.2f} | "
            f"{args.batch / total:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
