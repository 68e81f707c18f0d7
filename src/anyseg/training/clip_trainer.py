"""``anyseg clip train``: contrastive training of a small CLIP on captioned synthetic masks.

The image side is the crop SAM's text training uses (Kirillov et al. 2023, appendix D.5): the
mask's box enlarged 1-2x, squared, background zeroed half the time, the last image block's class
token restricted to the mask's patches. The text side is a caption built from the mask's
attributes. The loss is CLIP's symmetric cross-entropy over the batch's similarity matrix with
every true caption of a crop counted as a positive (targets spread evenly over them), plus the
auxiliary attribute heads' cross-entropy (:mod:`anyseg.training.clip_heads`; not saved).

Run folder (``run.out_dir``)::

    config.resolved.toml     the full config (loads back with --config)
    metrics.csv              per step: lr, loss, temperature, in-batch recall, speed
    eval.csv                 held-out metrics (when an evaluation is given)
    checkpoints/step_*.pt    everything --resume needs
    clip.safetensors         the weights (OpenAI layout) with config and vocabulary
    loss_curve.png           loss, in-batch recall and held-out metrics
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anyseg.clip.crops import to_pixels
from anyseg.clip.loading import LoadedClip, save_clip
from anyseg.clip.model import ClipModel
from anyseg.clip.tokenizer import WordTokenizer
from anyseg.data.attributed import read_attributed_images
from anyseg.data.captions import vocabulary
from anyseg.errors import CheckpointError, InvalidInputError
from anyseg.io import atomic_path, atomic_write_text
from anyseg.settings import dump_toml, from_mapping, to_mapping
from anyseg.training.clip_config import ClipTrainConfig
from anyseg.training.clip_data import PairBatch, PairSampler
from anyseg.training.clip_heads import AttributeHeads, ignore_unknown
from anyseg.training.metrics import CsvLog, read_rows, smooth
from anyseg.training.state import find_checkpoint, prune_checkpoints

FORMAT = "anyseg-clip-train-1"
TRAIN_COLUMNS = (
    "step",
    "lr",
    "loss",
    "contrastive",
    "attributes",
    "logit_scale",
    "batch_r1",
    "steps_per_s",
    "elapsed_s",
)
Evaluator = Callable[[LoadedClip], Mapping[str, float]]


@dataclass
class ClipTrainResult:
    """What a finished run returns (and wrote to ``out_dir``)."""

    clip: LoadedClip
    out_dir: Path
    step: int
    last_loss: float
    steps_per_s: float
    eval: Mapping[str, float] | None


def contrastive_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    positives: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric multi-positive InfoNCE and the in-batch recall@1.

    Args:
        image_embeds, text_embeds: (B, E), not normalised.
        logit_scale: () log inverse temperature.
        positives: bool (B, B), ``[i, j]``: caption j is true of crop i; every row and column
            needs one (the diagonal).

    Returns:
        The loss (mean of image->text and text->image) and the fraction of crops whose
        best-scoring caption is a true one.
    """
    img = F.normalize(image_embeds, dim=-1)
    txt = F.normalize(text_embeds, dim=-1)
    logits = logit_scale.exp() * img @ txt.t()  # (B, B)
    t = positives.to(logits.dtype)
    i2t = -(t / t.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    t2i = -(t / t.sum(0, keepdim=True) * F.log_softmax(logits, 0)).sum(0).mean()
    r1 = positives[torch.arange(len(t)), logits.argmax(1)].float().mean()
    return (i2t + t2i) / 2, r1.detach()


def caption_tokenizer(context_length: int) -> WordTokenizer:
    """The word tokenizer over every caption word."""
    return WordTokenizer(vocabulary(), context_length)


def model_config(cfg: ClipTrainConfig, tokenizer: WordTokenizer) -> Any:
    """``cfg.model`` with the text tower's vocabulary size set by the tokenizer."""
    return replace(cfg.model, text=replace(cfg.model.text, vocab_size=tokenizer.vocab_size))


def _param_groups(model: ClipModel, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on gains, biases, embeddings or the temperature)."""
    no_decay = re.compile(r"(^|\.)(positional_embedding|class_embedding|token_embedding\.weight)$")
    decay: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not no_decay.search(name) else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def lr_factor(step: int, cfg: ClipTrainConfig) -> float:
    """Linear warmup to the peak, then cosine decay to ``min_lr_fraction`` at the last step."""
    o, total = cfg.optim, cfg.run.steps
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    t = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    return o.min_lr_fraction + (1 - o.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(t, 1)))


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("run.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def load_clip_checkpoint(path: str | Path) -> dict[str, Any]:
    """A CLIP training checkpoint (a file, or the newest of a run folder), CPU tensors."""
    p = find_checkpoint(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{p}: not a readable training checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not an anyseg CLIP training checkpoint ({FORMAT})")
    state["path"] = str(p)
    return state


def config_of_clip_checkpoint(state: Mapping[str, Any]) -> ClipTrainConfig:
    return from_mapping(ClipTrainConfig, state["config"], source=f"{state.get('path')} config")


def train_clip(
    cfg: ClipTrainConfig,
    *,
    resume: str | Path | None = None,
    evaluate: Evaluator | None = None,
    progress: bool = True,
) -> ClipTrainResult:
    """Train (or resume) a CLIP as configured; see the module docstring for the outputs.

    Args:
        cfg: the run's configuration.
        resume: a training checkpoint or run folder to continue from.
        evaluate: held-out evaluation of a CLIP (metric name -> value), run every
            ``run.eval_every`` steps and at the end (``anyseg clip train --val`` passes
            :func:`anyseg.evaluation.clip.evaluate_clip` on the held-out data).
        progress: print a line every ``run.log_every`` steps.
    """
    if not cfg.data.train:
        raise InvalidInputError("no training data: set data.train or pass --data DIR")
    if cfg.run.num_threads > 0:
        torch.set_num_threads(cfg.run.num_threads)
    device = _device(cfg.run.device)
    out_dir = Path(cfg.run.out_dir)
    state = load_clip_checkpoint(resume) if resume is not None else None
    tokenizer = caption_tokenizer(cfg.model.text.context_length)
    cfg = replace(cfg, model=model_config(cfg, tokenizer))  # the resolved config says it too
    torch.manual_seed(cfg.run.seed)
    model = ClipModel(cfg.model)
    heads = AttributeHeads(cfg.model.embed_dim)
    if state is not None:
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
    model.to(device).train()
    heads.to(device).train()
    groups = _param_groups(model, cfg.optim.weight_decay)
    if cfg.optim.attribute_weight > 0:
        groups.append({"params": list(heads.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(
        groups,
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        torch.set_rng_state(state["rng"])
        if start >= cfg.run.steps:
            raise InvalidInputError(
                f"the checkpoint is at step {start} and run.steps is {cfg.run.steps}: pass "
                "--steps N with N larger to continue"
            )

    t_load = time.perf_counter()
    images = read_attributed_images(cfg.data.train, cfg.data.max_images, progress=progress)
    sampler = PairSampler(images, tokenizer, cfg.data, cfg.model.vision.image_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.resolved.toml", dump_toml(cfg))
    resume_step = start if state is not None else None
    log = CsvLog(out_dir / "metrics.csv", TRAIN_COLUMNS, resume_step)
    eval_log: CsvLog | None = None
    n_params = sum(p.numel() for p in model.parameters())
    if progress:
        print(
            f"anyseg clip train: {len(sampler)} masks of {len(images)} images (read in "
            f"{time.perf_counter() - t_load:.0f} s), {n_params / 1e6:.2f}M parameters on "
            f"{device}, batch {cfg.run.batch_size}, steps {start}..{cfg.run.steps}",
            flush=True,
        )
    max_scale = math.log(cfg.optim.max_logit_scale)
    result_eval: Mapping[str, float] | None = None
    last_loss, steps_per_s = math.nan, 0.0
    # Elapsed time counts the training of earlier runs of a resumed one.
    t0 = time.perf_counter() - (float(state.get("elapsed_s", 0.0)) if state else 0.0)
    t_window = time.perf_counter()
    window = 0
    for step in range(start, cfg.run.steps):
        batch = sampler.sample(np.random.default_rng([cfg.run.seed, step]), cfg.run.batch_size)
        contrastive, attributes, r1 = batch_loss(model, batch, device, heads)
        loss = contrastive + cfg.optim.attribute_weight * attributes
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            params = [*model.parameters(), *heads.parameters()]
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_scale)
        done, last_loss = step + 1, loss.item()
        if not math.isfinite(last_loss):
            raise RuntimeError(f"training diverged at step {done}: loss {last_loss}")
        window += 1
        now = time.perf_counter()
        if done % cfg.run.log_every == 0 or done == cfg.run.steps:
            steps_per_s, t_window, window = window / max(now - t_window, 1e-9), now, 0
            if progress:
                print(
                    f"step {done}/{cfg.run.steps}  loss {last_loss:.4f}  batch R@1 {float(r1):.3f}"
                    f"  T {1 / model.logit_scale.exp().item():.4f}  lr {lr:.2e}  "
                    f"{steps_per_s:.2f} steps/s",
                    flush=True,
                )
        log.write(
            {
                "step": done,
                "lr": lr,
                "loss": last_loss,
                "contrastive": contrastive.item(),
                "attributes": attributes.item(),
                "logit_scale": model.logit_scale.item(),
                "batch_r1": float(r1),
                "steps_per_s": steps_per_s,
                "elapsed_s": now - t0,
            }
        )
        is_last = done == cfg.run.steps
        if evaluate is not None and (
            is_last or (cfg.run.eval_every and done % cfg.run.eval_every == 0)
        ):
            model.eval()
            result_eval = dict(evaluate(_loaded(model, tokenizer)))
            model.train()
            if eval_log is None:
                eval_log = CsvLog(out_dir / "eval.csv", ("step", *result_eval), resume_step)
            eval_log.write({"step": done, **result_eval})
            if progress:
                shown = "  ".join(f"{k} {v:.3f}" for k, v in result_eval.items())
                print(f"eval step {done}: {shown}", flush=True)
        if is_last or (cfg.run.checkpoint_every and done % cfg.run.checkpoint_every == 0):
            _save_checkpoint(out_dir, model, heads, optimizer, scheduler, done, cfg, now - t0)
    log.close()
    if eval_log is not None:
        eval_log.close()
    model.eval()
    save_clip(model, tokenizer, out_dir / "clip.safetensors", half=cfg.run.half_weights)
    plot_clip_training(out_dir)
    if progress:
        print(f"wrote {out_dir / 'clip.safetensors'}", flush=True)
    return ClipTrainResult(
        _loaded(model, tokenizer), out_dir, cfg.run.steps, last_loss, steps_per_s, result_eval
    )


def batch_loss(
    model: ClipModel, batch: PairBatch, device: torch.device, heads: AttributeHeads | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The contrastive loss, the attribute heads' loss (0 without heads), both with gradient,
    and the in-batch recall@1 of one batch."""
    pixels = to_pixels(batch.crops).to(device)
    masks = torch.from_numpy(batch.masks).to(device)
    out = model(pixels, batch.tokens.to(device), masks)
    loss, r1 = contrastive_loss(
        out.image_embeds, out.text_embeds, out.logit_scale, batch.positives.to(device)
    )
    if heads is None:
        return loss, torch.zeros((), device=device), r1
    attributes = heads(
        out.image_embeds,
        out.text_embeds,
        ignore_unknown(batch.crop_codes).to(device),
        ignore_unknown(batch.caption_codes).to(device),
    )
    return loss, attributes, r1


def _loaded(model: ClipModel, tokenizer: WordTokenizer) -> LoadedClip:
    return LoadedClip(
        model=model, tokenizer=tokenizer, sha256="", source="(training)", layout="anyseg"
    )


def _save_checkpoint(
    out_dir: Path,
    model: ClipModel,
    heads: AttributeHeads,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    cfg: ClipTrainConfig,
    elapsed_s: float,
) -> None:
    folder = out_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "heads": {k: v.detach().cpu() for k, v in heads.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": to_mapping(cfg),
        "rng": torch.get_rng_state(),
        "elapsed_s": elapsed_s,
    }
    with atomic_path(folder / f"step_{step:07d}.pt") as tmp:
        torch.save(state, tmp)
    prune_checkpoints(folder, cfg.run.keep_checkpoints)


def plot_clip_training(run_dir: str | Path) -> Path:
    """``loss_curve.png`` of a run: loss, in-batch recall@1 and the held-out metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train, evals = read_rows(run_dir / "metrics.csv"), read_rows(run_dir / "eval.csv")
    if not train:
        raise InvalidInputError(f"{run_dir / 'metrics.csv'} has no rows to plot")
    steps = [r["step"] for r in train]
    window = max(1, len(train) // 50)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    ax_loss.plot(steps, [r["loss"] for r in train], color="#9ecae1", lw=0.8, label="loss (step)")
    ax_loss.plot(
        steps,
        smooth([r["loss"] for r in train], window),
        color="#08519c",
        lw=1.6,
        label=f"loss (mean of {window})",
    )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("contrastive loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.plot(
        steps,
        smooth([r["batch_r1"] for r in train], window),
        color="#74c476",
        label="in-batch R@1 (train)",
    )
    for key in evals[0] if evals else {}:
        if key != "step":
            ax_acc.plot(
                [r["step"] for r in evals], [r[key] for r in evals], "o--", label=f"held-out {key}"
            )
    ax_acc.set_xlabel("step")
    ax_acc.set_ylim(0, 1)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    fig.suptitle(f"anyseg clip train: {run_dir.name}")
    fig.tight_layout()
    out = run_dir / "loss_curve.png"
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out
