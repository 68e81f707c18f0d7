"""Training-step speed: where a step's time goes.

    python bench/bench_train.py --config configs/default_model_gpu.toml [--steps 20] [--profile]
    python bench/bench_train.py --config configs/default_model_gpu_stage3.toml --device cpu \
        --images 1 --masks 8 --workers 1 --steps 2 --warmup 1     # a CPU step of the default model

Prints a table: data loading alone (batches/s through the run's DataLoader), one full optimizer
step on a fixed batch (forward over all decoder passes, backward, AdamW), with and without bf16
autocast, and the peak CUDA memory; ``--profile`` adds torch.profiler's top operators. Random
initial weights; the data is the config's ``data.train``.

With ``optim.freeze_image_encoder`` (or ``--frozen``) it also times the frozen-encoder step two
ways: the encoder run every step, and the embedding read from the on-disk cache
(``training.embedding_cache``) -- the speed-up a decoder fine-tune on a CPU gets.

With ``optim.train_only`` the cached step is also timed with only those parameters trained (the
backward pass then stops at them).

With ``prompts.text_prob > 0`` (or ``--text-prob P``) the model gets a text path and the cached
frozen-encoder step is timed with the text-first prompts too (the CLIP's crop embeddings of the
text-first masks, every step), and the text prompts alone (``--clip FILE``: default the config's
``prompts.clip``, else the bundled CLIP).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from typing import Any

import torch

from anyseg.training.config import load_config, override
from anyseg.training.distributed import DistInfo, StepSampler
from anyseg.training.embedding_cache import EmbeddingCache
from anyseg.training.loop import _loader, make_dataset, resolve_device
from anyseg.training.optim import build_optimizer, restrict_trainable
from anyseg.training.prompts import pass_schedule
from anyseg.training.state import build_training_model, with_text_prompts
from anyseg.training.step import InteractiveSam, schedule_generator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--images", type=int, default=None, help="images per step (data.images_per_batch)"
    )
    ap.add_argument(
        "--masks", type=int, default=None, help="masks per image (data.max_masks_per_image)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--frozen", action="store_true", help="also time frozen-encoder steps (cached or not)"
    )
    ap.add_argument("--frozen-only", action="store_true", help="time only the frozen-encoder steps")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--text-prob", type=float, default=None, help="prompts.text_prob")
    ap.add_argument("--clip", default=None, help="CLIP of the text prompts (prompts.clip)")
    args = ap.parse_args()

    cfg = load_config(args.config)
    # Random initial weights: timing does not depend on them, and a stage config's
    # init_checkpoint (an earlier stage's output) need not exist here.
    run: dict[str, Any] = {"device": args.device, "init_checkpoint": None}
    data: dict[str, Any] = {}
    for key, value in (
        ("num_workers", args.workers),
        ("images_per_batch", args.images),
        ("max_masks_per_image", args.masks),
    ):
        if value is not None:
            data[key] = value
    prompts: dict[str, Any] = {}
    if args.text_prob is not None:
        prompts["text_prob"] = args.text_prob
    if args.clip is not None:
        prompts["clip"] = args.clip
    cfg = override(cfg, run=run, data=data, prompts=prompts)
    info = DistInfo(rank=0, world_size=1, local_rank=0)
    device = resolve_device(cfg.run.device, info)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = build_training_model(cfg)
    text_source = None
    if cfg.prompts.text_prob > 0:
        model, text_source = with_text_prompts(model, cfg.prompts, device)
    model = model.to(device)
    module = InteractiveSam(model, cfg.prompts, cfg.loss, False).train()
    optimizer, _ = build_optimizer(model, cfg.optim, model.config.image_encoder.depth, 10**6)
    dataset = make_dataset(cfg, cfg.data.train, model, train=True)
    total = args.warmup + args.steps
    sampler = StepSampler(len(dataset), 0, cfg.data.images_per_batch, info, 1, 0, total)
    rows: list[tuple[str, str]] = []

    t0 = time.perf_counter()
    batches = list(_loader(dataset, sampler, cfg.data.num_workers, device.type == "cuda"))
    t_load = time.perf_counter() - t0
    rows.append(
        (
            f"data loading ({cfg.data.num_workers} workers, start-up included)",
            f"{len(batches) / t_load:.2f} batches/s",
        )
    )
    batch = batches[0].to(device)
    masks = int(batch.masks.shape[0])

    frozen_module = InteractiveSam(model, cfg.prompts, cfg.loss, True).train()
    cache = EmbeddingCache(tempfile.mkdtemp(prefix="anyseg-bench-emb-"), model.image_encoder)

    def one_step(i: int, bf16: bool, frozen: str = "") -> None:
        schedule = pass_schedule(
            cfg.prompts.num_iterative_points,
            cfg.prompts.mask_only_iterations,
            schedule_generator(0, i, 0),
        )
        ctx = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if bf16
            else contextlib.nullcontext()
        )
        with ctx:
            if frozen in ("cached", "text", "train_only"):
                emb = cache.embed(model.image_encoder, batch.images)
                text = None if frozen != "text" or text_source is None else text_source(batch)
                out = frozen_module(batch, schedule, emb, text)
            elif frozen == "encoder":
                out = frozen_module(batch, schedule)
            else:
                out = module(batch, schedule)
        out.loss.backward()
        if cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(out.loss.detach())  # the loop syncs once per step too

    variants = [] if args.frozen_only else [(False, ""), (True, "")]
    if args.frozen or args.frozen_only or cfg.optim.freeze_image_encoder:
        variants += [(False, "encoder"), (False, "cached")]
    if text_source is not None:
        variants.append((False, "text"))
    if cfg.optim.train_only and (variants and variants[-1][1] in ("cached", "text")):
        variants.append((False, "train_only"))  # last: it freezes the rest of the model
    for bf16, frozen in variants:
        if frozen == "train_only":
            restrict_trainable(model, cfg.optim.train_only)
        for i in range(args.warmup):
            one_step(i, bf16, frozen)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for i in range(args.steps):
            one_step(i, bf16, frozen)
        _sync(device)
        dt = (time.perf_counter() - t0) / args.steps
        mem = (
            f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
            if device.type == "cuda"
            else ""
        )
        name = "bf16 autocast" if bf16 else "float32" + (" (TF32)" if device.type == "cuda" else "")
        if frozen:
            name += {
                "cached": ", encoder frozen, embedding from the disk cache",
                "encoder": ", encoder frozen, run every step",
                "text": f", cached embedding, text-first prompts (text_prob "
                f"{cfg.prompts.text_prob:g})",
                "train_only": ", cached embedding, only optim.train_only "
                f"({', '.join(cfg.optim.train_only)}) trained",
            }[frozen]
        speed = f"{1 / dt:.2f} steps/s ({dt * 1e3:.0f} ms{mem})"
        rows.append((f"train step, fixed batch, {name}", speed))

    if text_source is not None:
        t0 = time.perf_counter()
        for b in batches[: args.steps]:
            chosen = int(text_source(b.to(device)).first.sum())
        dt = (time.perf_counter() - t0) / min(args.steps, len(batches))
        rows.append(
            (
                f"text-first prompts alone (CLIP {text_source.clip.source.rsplit('/', 1)[-1]}, "
                f"about {chosen} crops per batch)",
                f"{dt * 1e3:.0f} ms per batch",
            )
        )
    passes = cfg.prompts.num_passes
    print(f"\n{args.config} on {device}: {masks} masks x {passes} decoder passes per step")
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | speed |\n|{'-' * (width + 2)}|---|")
    for what, speed in rows:
        print(f"| {what.ljust(width)} | {speed} |")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for i in range(3):
                one_step(i, False)
            _sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25))
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
