"""The training loop: ``train(cfg)`` runs (or resumes) a run and writes its outputs.

Run folder (``cfg.run.out_dir``)::

    config.resolved.toml       the full config of the run (loads back with --config)
    metrics.csv, eval.csv      per-step training metrics, held-out evaluations
    tensorboard/               TensorBoard events (when tensorboard is installed)
    checkpoints/step_*.pt      training state, for --resume
    model.safetensors          final weights, official layout (``anyseg.load`` reads them)
    loss_curve.png             loss and IoU curves

Multi-process: launch with ``torchrun --nproc_per_node N -m anyseg.cli.main train ...`` (or
``anyseg train`` under torchrun); each process trains on its shard of the sample stream
(``distributed.StepSampler``) inside ``DistributedDataParallel``; process 0 writes the outputs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from anyseg import checkpoint
from anyseg.data.captions import CaptionConfig
from anyseg.data.dataset import Batch, SegmentationDataset, collate
from anyseg.io import atomic_write_text
from anyseg.modeling import Sam
from anyseg.training import state as st
from anyseg.training.config import TrainConfig, dump_toml
from anyseg.training.distributed import (
    DistInfo,
    StepSampler,
    all_reduce_mean,
    init_process_group,
)
from anyseg.training.embedding_cache import EmbeddingCache
from anyseg.training.metrics import MetricsLogger, plot_training
from anyseg.training.optim import build_optimizer, restrict_trainable
from anyseg.training.prompts import pass_schedule
from anyseg.training.step import InteractiveSam, schedule_generator
from anyseg.training.text_prompts import CropTextSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """Mean metrics of an evaluation pass: loss per mask, IoU after the first and last pass."""

    loss: float
    iou_first: float
    iou_last: float
    masks: int
    images: int


@dataclass
class TrainResult:
    """What a finished run returns (process 0 also wrote it to ``out_dir``)."""

    model: Sam
    out_dir: Path
    step: int
    last_loss: float
    steps_per_s: float
    eval: EvalResult | None


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``run.device`` as a torch device; a process of a multi-GPU run takes its local GPU."""
    device = checkpoint.resolve_device(name)  # a clear error when CUDA is asked for but absent
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return device


def make_dataset(cfg: TrainConfig, source: str, sam: Sam, train: bool) -> SegmentationDataset:
    d, p = cfg.data, cfg.prompts
    # Captions are only drawn when text-first masks may use them.
    wants_captions = train and p.text_prob > 0 and p.text_caption_prob > 0
    return SegmentationDataset(
        source,
        img_size=sam.img_size,
        pixel_mean=sam.config.pixel_mean,
        pixel_std=sam.config.pixel_std,
        sampling=d if train else d.without_augmentation(),
        seed=cfg.run.seed if train else cfg.run.seed + 1,
        data_format=d.format,
        coco_images=d.coco_images,
        max_images=0 if train else d.val_max_images,
        captions=CaptionConfig() if wants_captions else None,
    )


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(
    model: Sam,
    dataset: SegmentationDataset,
    cfg: TrainConfig,
    max_images: int = 0,
) -> EvalResult:
    """Run the simulated interaction (no gradient, eval mode, fixed prompts per image) over the
    first ``max_images`` images of ``dataset`` (0 = all) and average per mask."""
    was_training = model.training
    module = InteractiveSam(model, cfg.prompts, cfg.loss, freeze_image_encoder=False).eval()
    device = model.device
    n = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    sums = torch.zeros(3, dtype=torch.float64)
    masks = 0
    for i in range(n):
        batch = collate([dataset[i]]).to(device)
        if batch.masks.shape[0] == 0:
            continue
        schedule = pass_schedule(
            cfg.prompts.num_iterative_points,
            cfg.prompts.mask_only_iterations,
            schedule_generator(cfg.run.seed + 1, i, 0),
        )
        with _autocast(device, cfg.run.bf16):
            out = module(batch, schedule)
        m = int(out.num_masks)
        sums += torch.tensor([float(out.loss), float(out.iou_first), float(out.iou_last)]) * m
        masks += m
    model.train(was_training)
    means = (sums / max(masks, 1)).tolist()
    return EvalResult(means[0], means[1], means[2], masks, n)


def _loader(
    dataset: SegmentationDataset, sampler: StepSampler, workers: int, pin: bool
) -> torch.utils.data.DataLoader[Batch]:
    return torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        # One torch thread per worker: decoding and resizing are numpy/OpenCV work and the
        # training process needs the cores.
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    info: DistInfo | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a model as configured; see the module docstring for the outputs.

    Args:
        cfg: the run's configuration (with ``resume``, normally the checkpoint's own config with
            a few overrides such as ``run.steps``).
        resume: a training checkpoint or run folder to continue from.
        info: this process's rank/world size (default: read torchrun's environment).
        progress: print a line per ``run.log_every`` steps (process 0 only).
    """
    info = info or DistInfo.from_env()
    device = resolve_device(cfg.run.device, info)
    if cfg.run.num_threads > 0:
        torch.set_num_threads(cfg.run.num_threads)
    if cfg.distill.teacher and resume is None:
        cfg = _distill(cfg, info, device, progress)
    created_group = init_process_group(info, device)
    try:
        return _train(cfg, resume, info, device, progress)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


def _distill(cfg: TrainConfig, info: DistInfo, device: torch.device, progress: bool) -> TrainConfig:
    """The encoder-distillation stage (:mod:`anyseg.training.distill`); returns the config of
    the mask-loss stage, which starts from the distilled weights."""
    from dataclasses import replace

    from anyseg.training.distill import distill_encoder, student_of

    if info.world_size > 1:
        raise ValueError("encoder distillation runs in one process: drop --nproc / torchrun")
    if not cfg.data.train:
        raise ValueError("no training data: set data.train in the config or pass --data DIR")
    teacher = checkpoint.load(cfg.distill.teacher)
    dataset = make_dataset(cfg, cfg.data.train, student_of(teacher, cfg), train=True)
    weights = distill_encoder(cfg, dataset, device, progress and info.is_main)
    return replace(cfg, run=replace(cfg.run, init_checkpoint=str(weights)))


@dataclass
class _Run:
    """Everything a run holds while it trains (built by :func:`_setup`)."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    progress: bool
    out_dir: Path
    model: Sam
    module: InteractiveSam
    wrapped: torch.nn.Module  # the module, in DistributedDataParallel when world_size > 1
    optimizer: torch.optim.Optimizer
    scheduler: Any
    start_step: int
    batches: Iterator[Batch]
    val_set: SegmentationDataset | None
    logger: MetricsLogger | None
    embeddings: EmbeddingCache | None = None  # a frozen encoder's embeddings, on disk
    text_source: CropTextSource | None = None  # text-first prompts (prompts.text_prob > 0)
    empty_steps: int = 0  # steps in a row whose batches held no usable mask
    masks_seen: int = 0


#: A run whose batches hold no usable mask this many steps in a row stops with an error.
MAX_EMPTY_STEPS = 10


def _train(
    cfg: TrainConfig,
    resume: str | Path | None,
    info: DistInfo,
    device: torch.device,
    progress: bool,
) -> TrainResult:
    run = _setup(cfg, resume, info, device, progress)
    eval_result: EvalResult | None = None
    last_loss = float("nan")
    t_start = time.perf_counter()
    t_window, steps_window = t_start, 0
    steps_per_s = 0.0
    for step in range(run.start_step, cfg.run.steps):
        means, lr = _step(run, step)
        done = step + 1
        last_loss = means[0]
        steps_window += 1
        now = time.perf_counter()
        if done % cfg.run.log_every == 0 or done == cfg.run.steps:
            steps_per_s = steps_window / max(now - t_window, 1e-9)
            t_window, steps_window = now, 0
        _log_step(run, done, means, lr, steps_per_s, now - t_start)
        eval_result = _evaluate_and_checkpoint(run, done) or eval_result
    _finish(run)
    return TrainResult(run.model, run.out_dir, cfg.run.steps, last_loss, steps_per_s, eval_result)


def _setup(
    cfg: TrainConfig,
    resume: str | Path | None,
    info: DistInfo,
    device: torch.device,
    progress: bool,
) -> _Run:
    """Model, optimizer, data and logger of a run, from scratch or from a checkpoint."""
    if not cfg.data.train:
        raise ValueError("no training data: set data.train in the config or pass --data DIR")
    ckpt = st.load_training_checkpoint(resume) if resume is not None else None
    torch.manual_seed(cfg.run.seed)  # the random initialisation is a function of the seed
    model = (
        st.model_from_checkpoint(ckpt, cfg.optim.drop_path_rate)
        if ckpt is not None
        else st.build_training_model(cfg)
    )
    text_source = None
    if cfg.prompts.text_prob > 0:
        model, text_source = st.with_text_prompts(model, cfg.prompts, device)
    if cfg.optim.freeze_image_encoder:
        model.image_encoder.requires_grad_(False)
    if cfg.optim.train_only:
        restrict_trainable(model, cfg.optim.train_only)
    if device.type == "cuda":
        # TF32 tensor cores for float32 matmuls and convolutions (the default on Ampere+ for
        # cuDNN, not for cuBLAS): several times faster, and well inside training noise.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    module = InteractiveSam(model, cfg.prompts, cfg.loss, cfg.optim.freeze_image_encoder)
    module.train()
    wrapped: torch.nn.Module = module
    if info.world_size > 1:
        wrapped = DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # e.g. no box prompt in a step leaves parameters unused
        )
    total_steps = cfg.run.steps
    optimizer, scheduler = build_optimizer(
        model, cfg.optim, model.config.image_encoder.depth, total_steps
    )
    start_step = 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_step = int(ckpt["step"])
        st.restore_rng(ckpt)
        if start_step >= total_steps:
            raise ValueError(
                f"the checkpoint is at step {start_step} and run.steps is {total_steps}: "
                "pass --steps N with N larger to continue"
            )

    dataset = make_dataset(cfg, cfg.data.train, model, train=True)
    if len(dataset) == 0:
        raise ValueError(
            f"no usable training images in {cfg.data.train} ({len(dataset.skipped)} records "
            "skipped; see the messages above)"
        )
    val_set = make_dataset(cfg, cfg.data.val, model, train=False) if cfg.data.val else None
    sampler = StepSampler(
        len(dataset),
        cfg.run.seed,
        cfg.data.images_per_batch,
        info,
        cfg.run.grad_accum_steps,
        start_step,
        total_steps,
    )
    batches = iter(_loader(dataset, sampler, cfg.data.num_workers, device.type == "cuda"))

    out_dir = Path(cfg.run.out_dir)
    embeddings = None
    # (SAM-HQ's fusion reads the encoder's early features as well: not cached)
    if cfg.optim.freeze_image_encoder and cfg.run.cache_embeddings and not model.is_hq:
        folder = (
            Path(cfg.run.embedding_cache) if cfg.run.embedding_cache else out_dir / "embeddings"
        )
        embeddings = EmbeddingCache(folder, model.image_encoder)
    logger: MetricsLogger | None = None
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.resolved.toml", dump_toml(cfg))
        logger = MetricsLogger(out_dir, cfg.run.tensorboard, start_step if ckpt else None)
        if progress:
            n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(
                f"anyseg train: {len(dataset)} images ({len(dataset.skipped)} records skipped), "
                f"{n_params / 1e6:.2f}M trainable parameters, {info.world_size} process(es) on "
                f"{device}, {cfg.prompts.num_passes} decoder passes per mask, steps "
                f"{start_step}..{total_steps}",
                flush=True,
            )
    return _Run(
        cfg=cfg,
        info=info,
        device=device,
        progress=progress,
        out_dir=out_dir,
        model=model,
        module=module,
        wrapped=wrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        start_step=start_step,
        batches=batches,
        val_set=val_set,
        logger=logger,
        embeddings=embeddings,
        text_source=text_source,
    )


def _step(run: _Run, step: int) -> tuple[list[float], float]:
    """One optimizer step (with gradient accumulation); returns the step's mean metrics
    (loss, focal, dice, iou_mse, iou_first, iou_last, masks per process) and the base lr."""
    cfg, info, device = run.cfg, run.info, run.device
    # Drop path uses the global generator: key it by (seed, step, rank) so a resumed run
    # draws what the uninterrupted run would have.
    torch.manual_seed((cfg.run.seed * 1_000_003 + step) * 257 + info.rank)
    sums = torch.zeros(9, device=device)
    accum = cfg.run.grad_accum_steps
    for micro in range(accum):
        batch = next(run.batches).to(device)
        schedule = pass_schedule(
            cfg.prompts.num_iterative_points,
            cfg.prompts.mask_only_iterations,
            schedule_generator(cfg.run.seed, step, micro),
        )
        sync = micro == accum - 1 or info.world_size == 1
        no_sync = getattr(run.wrapped, "no_sync", None)
        ctx = contextlib.nullcontext() if sync or no_sync is None else no_sync()
        with ctx:
            emb = None
            if run.embeddings is not None:
                emb = run.embeddings.embed(run.model.image_encoder, batch.images)
            text = None if run.text_source is None else run.text_source(batch)
            with _autocast(device, cfg.run.bf16):
                out = run.wrapped(batch, schedule, emb, text)
            (out.loss / accum).backward()
        num_text = out.num_text.to(device).float()
        sums += (
            torch.stack(
                [
                    out.loss.detach().float(),
                    out.focal,
                    out.dice,
                    out.iou_mse,
                    out.iou_first,
                    out.iou_last,
                    out.num_masks.to(device).float(),
                    out.iou_text_first.to(device).float() * num_text,
                    num_text,
                ]
            )
            / accum
        )
    means = all_reduce_mean(sums, info).tolist()
    means[7] = means[7] / means[8] if means[8] > 0 else float("nan")  # text IoU per text mask
    lr = run.optimizer.param_groups[0]["lr"] / run.optimizer.param_groups[0].get("lr_scale", 1.0)
    if means[6] == 0:  # no process had a usable mask: nothing to learn from, no update
        run.optimizer.zero_grad(set_to_none=True)
        run.scheduler.step()
        run.empty_steps += 1
        if run.empty_steps >= MAX_EMPTY_STEPS or (step + 1 == cfg.run.steps and not run.masks_seen):
            raise ValueError(
                f"step {step + 1}: the last {run.empty_steps} batches held no usable mask: every "
                "mask was skipped (unreadable, smaller than data.min_mask_pixels after resizing, "
                "or larger than data.max_mask_area_fraction of the image); check the data and "
                "those two settings"
            )
        return means, lr
    run.empty_steps = 0
    run.masks_seen += round(means[6] * info.world_size)
    if cfg.optim.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    if not all(map(_finite, means[:4])):
        raise RuntimeError(f"training diverged at step {step + 1}: loss {means[0]}")
    return means, lr


def _log_step(
    run: _Run, done: int, means: list[float], lr: float, steps_per_s: float, elapsed: float
) -> None:
    """metrics.csv / TensorBoard row of a step, and its progress line."""
    if run.logger is None:
        return
    total = run.cfg.run.steps
    run.logger.log_train(
        {
            "step": done,
            "lr": lr,
            "loss": means[0],
            "focal": means[1],
            "dice": means[2],
            "iou_mse": means[3],
            "iou_first": means[4],
            "iou_last": means[5],
            "masks": round(means[6] * run.info.world_size),
            "steps_per_s": steps_per_s,
            "elapsed_s": elapsed,
            "text_iou_first": None if run.text_source is None else means[7],
        }
    )
    if run.progress and (done % run.cfg.run.log_every == 0 or done == total):
        text = "" if run.text_source is None else f" text {means[7]:.3f}"
        print(
            f"step {done}/{total}  loss {means[0]:.4f}  focal {means[1]:.4f}  "
            f"dice {means[2]:.4f}  iou_mse {means[3]:.4f}  IoU first {means[4]:.3f} "
            f"last {means[5]:.3f}{text}  lr {lr:.2e}  {steps_per_s:.2f} steps/s",
            flush=True,
        )


def _evaluate_and_checkpoint(run: _Run, done: int) -> EvalResult | None:
    """Held-out evaluation and the training checkpoint, when their schedules say so."""
    cfg, info = run.cfg, run.info
    is_last = done == cfg.run.steps
    result: EvalResult | None = None
    if run.val_set is not None and (
        is_last or (cfg.run.eval_every > 0 and done % cfg.run.eval_every == 0)
    ):
        if info.is_main:
            result = evaluate(run.model, run.val_set, cfg)
            assert run.logger is not None
            run.logger.log_eval({"step": done, **result.__dict__})
            if run.progress:
                print(
                    f"eval step {done}: loss {result.loss:.4f}  IoU first "
                    f"{result.iou_first:.3f} last {result.iou_last:.3f} "
                    f"({result.masks} masks, {result.images} images)",
                    flush=True,
                )
            run.module.train()
        _barrier(info)
    if (
        info.is_main
        and run.masks_seen > 0  # nothing learnt yet: nothing worth resuming from
        and (is_last or (cfg.run.checkpoint_every > 0 and done % cfg.run.checkpoint_every == 0))
    ):
        st.save_training_checkpoint(
            run.out_dir / "checkpoints" / f"step_{done:07d}.pt",
            run.model,
            run.optimizer,
            run.scheduler,
            done,
            cfg,
        )
        st.prune_checkpoints(run.out_dir / "checkpoints", cfg.run.keep_checkpoints)
    return result


def _finish(run: _Run) -> None:
    """The final weights, the loss curve, and the logger closed."""
    if run.info.is_main:
        st.export_weights(run.model, run.out_dir, run.cfg.run.model_formats)
        assert run.logger is not None
        run.logger.close()
        try:
            png = plot_training(run.out_dir)
            if run.progress:
                print(f"wrote {run.out_dir} (weights, metrics, {png.name})", flush=True)
        except (FileNotFoundError, ValueError) as exc:
            print(f"anyseg train: no loss curve: {exc}", file=sys.stderr)
    _barrier(run.info)
    run.model.eval()


def _spawn_worker(
    rank: int, cfg: TrainConfig, resume: str | Path | None, nprocs: int, port: int, threads: int
) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if threads > 0:
        torch.set_num_threads(threads)
    train(cfg, resume=resume, info=DistInfo(rank, nprocs, rank), progress=rank == 0)


def train_multiprocess(
    cfg: TrainConfig, nprocs: int, resume: str | Path | None = None, port: int = 0
) -> None:
    """Run ``train`` in ``nprocs`` local processes (DDP over loopback; gloo on CPU) without
    torchrun. Each process uses ``run.num_threads`` torch threads (default 1). The outputs are
    written by process 0; load the weights from ``run.out_dir/model.safetensors``."""
    import socket

    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    threads = cfg.run.num_threads or 1
    mp.spawn(_spawn_worker, args=(cfg, resume, nprocs, port, threads), nprocs=nprocs, join=True)


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def _barrier(info: DistInfo) -> None:
    if info.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
