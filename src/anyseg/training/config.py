"""Training configuration: one frozen dataclass tree shared by library, CLI and config files.

The defaults are the paper's recipe (SAM, Kirillov et al. 2023, §3 and appendix A) for ViT-H:
AdamW (β1 0.9, β2 0.999), lr 8e-4 after a 250-step linear warmup, ×0.1 decays at 60k and 86,666 of
90k steps, weight decay 0.1, layer-wise lr decay 0.8, drop path 0.4, up to 64 masks per image,
focal : dice = 20 : 1, IoU-head MSE weight 1, 11 decoder passes per mask (first prompt, 8 sampled
points, 2 mask-only refinements). Smaller models want smaller numbers; ``configs/*.toml`` hold
scaled recipes and say why.

Config files are TOML (``.toml``) or YAML (``.yaml``/``.yml``) with one table per section::

    [model]
    preset = "test"
    [model.image_encoder]
    depth = 4
    [optim]
    lr = 1e-3
    [run]
    steps = 500

Unknown keys are an error that names them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from anyseg.data.dataset import SamplingConfig
from anyseg.errors import InvalidInputError
from anyseg.settings import dump_toml as settings_dump_toml
from anyseg.settings import from_mapping, load_file, opt, to_mapping

LossResolution = Literal["input", "low_res"]
IouSupervision = Literal["all", "best"]
IouTarget = Literal["prompted", "best_match"]
DataFormat = Literal["auto", "sa1b", "coco"]


@dataclass(frozen=True)
class ModelSpec:
    """Which architecture to train.

    ``preset`` names an entry of ``anyseg.config.PRESETS`` ("vit_b", "vit_l", "vit_h", "tiny",
    "test"); the three override tables replace fields of that preset's ``ImageEncoderConfig``,
    ``PromptEncoderConfig`` and ``MaskDecoderConfig`` (e.g. ``image_encoder = {img_size = 256,
    embed_dim = 160, depth = 6, num_heads = 4, window_size = 8, global_attn_indexes = [2, 5]}``).
    Ignored when training starts from ``run.init_checkpoint`` (the checkpoint fixes the shapes).
    The drop-path rate is set in ``optim.drop_path_rate``, not here. ``init`` chooses the random
    initialisation: PyTorch's "default", or "prompt_localizing"
    (``anyseg.modeling.init.prompt_localizing_init``: tied query/key projections in the decoder's
    cross-attention and a small initial image embedding, so prompts localize from step 0 — a
    small model trained from scratch otherwise sits at a constant mask for hundreds of steps).
    """

    preset: str = "vit_h"
    init: Literal["default", "prompt_localizing"] = "default"
    image_encoder: Mapping[str, Any] = field(default_factory=dict)
    prompt_encoder: Mapping[str, Any] = field(default_factory=dict)
    mask_decoder: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig(SamplingConfig):
    """Where the data is and how one training sample is drawn from it (the sampling fields,
    ``max_masks_per_image``, ``max_mask_area_fraction``, ``min_mask_pixels`` and ``hflip_prob``,
    come from :class:`anyseg.data.dataset.SamplingConfig`, their one home).

    ``train``/``val``: an SA-1B-layout folder (``images/`` + ``annotations/``, or ``sa_N.jpg``
    beside ``sa_N.json``) or a COCO instances JSON file (its images are looked up in
    ``coco_images``, default: the JSON's folder). ``val`` is optional (held-out evaluation).
    """

    train: str = field(
        default="",
        metadata=opt("training data: SA-1B folder or COCO .json", flag="--data", metavar="PATH"),
    )
    val: str | None = field(
        default=None,
        metadata=opt("held-out data for periodic evaluation", flag="--val", metavar="PATH"),
    )
    format: DataFormat = "auto"
    coco_images: str | None = None
    # Images per optimizer (micro-)step on each process; the paper: 1 per GPU, 256 GPUs.
    images_per_batch: int = 1
    num_workers: int = field(
        default=2, metadata=opt("data-loading workers per process", flag="--workers")
    )
    # Held-out evaluation uses at most this many images (0 = all).
    val_max_images: int = 0


@dataclass(frozen=True)
class PromptConfig:
    """Simulated interactive prompting (paper appendix A, "Training algorithm")."""

    # Probability that the first prompt is a (jittered) box rather than a foreground point.
    box_prob: float = 0.5
    # Box jitter: Gaussian noise per coordinate, std = fraction × box side (width for x, height
    # for y), each offset clipped to ±max_px pixels of the model's input frame.
    box_noise_fraction: float = 0.1
    box_noise_max_px: float = 20.0
    # Points sampled from the error region after the first prompt (paper: 8).
    num_iterative_points: int = 8
    # Passes with no new point, the previous logits only (paper: 2 — one at a random place
    # among the sampled points, one at the end). 1 puts it at the end; 0 disables them.
    mask_only_iterations: int = 2
    # Text-first masks (paper §7.5, appendix D.5): the first prompt is the L2-normalised CLIP
    # *image* embedding of a crop around the mask (box enlarged by a random factor in
    # text_crop_scale, squared, background zeroed with text_zero_background_prob), 3 masks and
    # the min-over-3 loss; later passes add error-region points and keep the text token. A
    # model without a text path gets one (of the CLIP's width). 0 trains no text path and
    # reproduces runs without it bit for bit.
    text_prob: float = field(
        default=0.0, metadata=opt("share of masks whose first prompt is text", flag="--text-prob")
    )
    # Only masks covering at least this fraction of the model's (square) input are text-first
    # (paper: area > 100^2 px at 1024 px, i.e. about 0.0095).
    text_min_area_fraction: float = 100.0**2 / 1024.0**2
    # Of the text-first masks with a caption (data with attributes, e.g. `anyseg synth`), this
    # share is prompted with the caption's CLIP *text* embedding instead of the crop's.
    text_caption_prob: float = 0.0
    text_crop_scale: tuple[float, float] = (1.0, 2.0)
    text_zero_background_prob: float = 0.5
    # The CLIP of the text prompts ("": the bundled clip_synth.safetensors).
    clip: str = field(
        default="",
        metadata=opt(
            "CLIP weights whose embeddings the text prompts are (default: the bundled one)",
            flag="--clip",
            metavar="PATH",
        ),
    )

    @property
    def num_passes(self) -> int:
        """Decoder passes per mask per step (paper: 1 + 8 + 2 = 11)."""
        return 1 + self.num_iterative_points + self.mask_only_iterations


@dataclass(frozen=True)
class LossConfig:
    """Mask and IoU-head losses (paper §3 and appendix A, "Losses")."""

    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # "input": logits upscaled (bilinear) to the padded input size and compared with the
    # full-resolution ground truth, as the paper implies; "low_res": ground truth averaged down to
    # the decoder's low-res logits (4x the embedding size) — cheaper, for CPU training.
    resolution: LossResolution = "input"
    # With 3 masks, the mask loss back-propagates through the lowest-loss mask only; the IoU head
    # is trained on "all" three outputs (it ranks them at inference) or only the "best" one.
    iou_supervision: IouSupervision = "all"
    # What the IoU head regresses: the output's IoU with the prompted mask ("prompted", the
    # paper), or with the best-matching of the image's sampled masks ("best_match"). With a
    # part hierarchy, a click on an emblem is also a click on its panel and its object: under
    # "prompted" the head learns to expect the 1-in-3 chance of having guessed the prompted
    # level, and scores every good mask low; "best_match" scores a mask by the object it covers,
    # which is what the automatic generator's threshold assumes.
    iou_target: IouTarget = "prompted"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, layer-wise lr decay, drop path, warmup + step decay (paper appendix A)."""

    lr: float = 8e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.1
    # Encoder lr scale = layer_decay ** (depth + 1 - layer); 1.0 disables it.
    layer_decay: float = 0.8
    drop_path_rate: float = 0.4
    warmup_steps: int = 250
    # The lr is multiplied by decay_factor at each of these fractions of run.steps
    # (paper: 60k and 86,666 of 90k steps).
    decay_fractions: tuple[float, ...] = (60000 / 90000, 86666 / 90000)
    decay_factor: float = 0.1
    # Gradient-norm clipping (None = off; the paper does not mention it).
    grad_clip: float | None = None
    # lr multiplier of the prompt encoder's text path (a new path learning from scratch in a
    # fine-tune of the rest).
    text_lr_scale: float = 1.0
    # Train the prompt encoder and mask decoder only (the common fine-tuning case). The frozen
    # encoder's embeddings are then computed once per image and kept on disk (run.embedding_cache).
    freeze_image_encoder: bool = field(
        default=False,
        metadata=opt(
            "train the prompt encoder and mask decoder only",
            flag="--freeze-image-encoder",
            const=True,
        ),
    )
    # Train only the parameters whose names start with one of these prefixes (empty: every
    # parameter not frozen above), e.g. ("mask_decoder.iou_prediction_head",) to recalibrate the
    # IoU head alone: the backward pass then stops at the head, so steps are several times cheaper.
    train_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """Length, devices, outputs."""

    steps: int = field(default=90000, metadata=opt("total optimizer steps", flag="--steps"))
    seed: int = field(default=0, metadata=opt("random seed of the run", flag="--seed"))
    out_dir: str = field(
        default="runs/train", metadata=opt("output folder", flag="--out", metavar="DIR")
    )
    # "auto": cuda when available, else cpu.
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata=opt("where to train (auto: CUDA when available)", flag="--device")
    )
    bf16: bool = field(
        default=False,
        metadata=opt("bf16 autocast (mixed precision)", flag="--bf16", const=True),
    )
    grad_accum_steps: int = 1
    log_every: int = 10
    # Held-out evaluation every N steps (0: only at the end; needs data.val).
    eval_every: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    tensorboard: bool = True
    # Official-layout weights written at the end: model.safetensors and/or model.pth.
    model_formats: tuple[str, ...] = ("safetensors",)
    # Start from the weights of an official-layout checkpoint (.pth/.safetensors).
    init_checkpoint: str | None = field(
        default=None,
        metadata=opt(
            "start from the weights of an official-layout checkpoint",
            flag="--init",
            metavar="CHECKPOINT",
        ),
    )
    # Torch threads per process (0: leave torch's default).
    num_threads: int = 0
    # With optim.freeze_image_encoder: keep each image's embedding on disk, computed once
    # (training.embedding_cache). A folder, shared by runs and models ("" = <out_dir>/embeddings).
    embedding_cache: str = field(
        default="",
        metadata=opt(
            "folder of cached image embeddings of a frozen encoder (default: OUT/embeddings)",
            flag="--embedding-cache",
            metavar="DIR",
        ),
    )
    cache_embeddings: bool = field(
        default=True,
        metadata=opt(
            "do not cache the frozen encoder's embeddings (recompute every step)",
            flag="--no-embedding-cache",
            const=False,
        ),
    )


@dataclass(frozen=True)
class DistillConfig:
    """Encoder distillation before the mask-loss training (MobileSAM's recipe; see
    :mod:`anyseg.training.distill`): ``model`` is the student, ``teacher`` a checkpoint whose
    image embeddings it learns to reproduce (MSE, teacher frozen); the teacher's prompt encoder
    and decoder are kept. ``run.steps`` mask-loss steps then fine-tune the result."""

    teacher: str = field(
        default="",
        metadata=opt(
            "distil this checkpoint's image encoder into model's first (MobileSAM's recipe)",
            flag="--distill-teacher",
            metavar="CHECKPOINT",
        ),
    )
    steps: int = field(
        default=1000, metadata=opt("encoder distillation steps", flag="--distill-steps")
    )
    images_per_step: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    save_every: int = 200  # distilled.safetensors is rewritten this often


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        _validate(self)


def _validate(cfg: TrainConfig) -> None:
    def need(ok: bool, what: str, got: object) -> None:
        if not ok:
            raise InvalidInputError(f"training config: expected {what}, got {got!r}")

    d, p, lo, o, r = cfg.data, cfg.prompts, cfg.loss, cfg.optim, cfg.run
    need(d.images_per_batch >= 1, "data.images_per_batch >= 1", d.images_per_batch)
    need(d.num_workers >= 0, "data.num_workers >= 0", d.num_workers)
    need(d.format in get_args(DataFormat), f"data.format in {get_args(DataFormat)}", d.format)
    need(0 <= p.box_prob <= 1, "0 <= prompts.box_prob <= 1", p.box_prob)
    need(p.box_noise_fraction >= 0, "prompts.box_noise_fraction >= 0", p.box_noise_fraction)
    need(p.box_noise_max_px >= 0, "prompts.box_noise_max_px >= 0", p.box_noise_max_px)
    need(p.num_iterative_points >= 0, "prompts.num_iterative_points >= 0", p.num_iterative_points)
    need(
        p.mask_only_iterations in (0, 1, 2),
        "prompts.mask_only_iterations in 0, 1, 2",
        p.mask_only_iterations,
    )
    for name in ("text_prob", "text_min_area_fraction", "text_caption_prob"):
        need(0 <= getattr(p, name) <= 1, f"0 <= prompts.{name} <= 1", getattr(p, name))
    need(
        0 < p.text_crop_scale[0] <= p.text_crop_scale[1],
        "0 < prompts.text_crop_scale[0] <= text_crop_scale[1]",
        p.text_crop_scale,
    )
    need(
        0 <= p.text_zero_background_prob <= 1,
        "0 <= prompts.text_zero_background_prob <= 1",
        p.text_zero_background_prob,
    )
    need(
        lo.resolution in get_args(LossResolution),
        "loss.resolution 'input' or 'low_res'",
        lo.resolution,
    )
    need(
        lo.iou_target in get_args(IouTarget),
        "loss.iou_target 'prompted' or 'best_match'",
        lo.iou_target,
    )
    need(
        lo.iou_supervision in get_args(IouSupervision),
        "loss.iou_supervision 'all' or 'best'",
        lo.iou_supervision,
    )
    need(o.lr > 0 and math.isfinite(o.lr), "optim.lr > 0", o.lr)
    need(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1/beta2 in [0, 1)", (o.beta1, o.beta2))
    need(0 < o.layer_decay <= 1, "0 < optim.layer_decay <= 1", o.layer_decay)
    need(0 <= o.drop_path_rate < 1, "0 <= optim.drop_path_rate < 1", o.drop_path_rate)
    need(o.warmup_steps >= 0, "optim.warmup_steps >= 0", o.warmup_steps)
    need(
        all(0 < f <= 1 for f in o.decay_fractions),
        "optim.decay_fractions in (0, 1]",
        o.decay_fractions,
    )
    need(o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip > 0 or unset", o.grad_clip)
    need(o.text_lr_scale > 0, "optim.text_lr_scale > 0", o.text_lr_scale)
    # A text run whose optim.train_only leaves out the text path would train the rest around an
    # untrained token (e.g. a text config extending the IoU-head-only calibration config).
    text_params = ("prompt_encoder.text_mlp", "prompt_encoder.text_embed")
    need(
        p.text_prob == 0
        or not o.train_only
        or any(t.startswith(pre) or pre.startswith(t) for t in text_params for pre in o.train_only),
        "optim.train_only to include the text path (prompt_encoder.text_mlp/text_embed) "
        "when prompts.text_prob > 0",
        o.train_only,
    )
    need(r.steps >= 1, "run.steps >= 1", r.steps)
    need(r.device in ("auto", "cpu", "cuda"), "run.device 'auto', 'cpu' or 'cuda'", r.device)
    need(r.grad_accum_steps >= 1, "run.grad_accum_steps >= 1", r.grad_accum_steps)
    need(r.log_every >= 1, "run.log_every >= 1", r.log_every)
    need(r.eval_every >= 0, "run.eval_every >= 0", r.eval_every)
    need(r.checkpoint_every >= 0, "run.checkpoint_every >= 0", r.checkpoint_every)
    need(r.keep_checkpoints >= 1, "run.keep_checkpoints >= 1", r.keep_checkpoints)
    ds = cfg.distill
    need(ds.steps >= 1, "distill.steps >= 1", ds.steps)
    need(ds.images_per_step >= 1, "distill.images_per_step >= 1", ds.images_per_step)
    need(ds.lr > 0 and math.isfinite(ds.lr), "distill.lr > 0", ds.lr)
    need(ds.warmup_steps >= 0, "distill.warmup_steps >= 0", ds.warmup_steps)
    need(ds.save_every >= 1, "distill.save_every >= 1", ds.save_every)
    need(
        set(r.model_formats) <= {"safetensors", "pth"},
        "run.model_formats from 'safetensors', 'pth'",
        r.model_formats,
    )


# --------------------------------------------------------------------------------------------
# dicts and files (the binder, anyseg.settings, does the work)


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from nested mappings; unknown keys raise, naming them."""
    return from_mapping(TrainConfig, data, source=source)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Nested plain dict (tuples as lists, None values dropped) — the inverse of
    :func:`config_from_dict`."""
    return to_mapping(cfg, drop_none=True)


def override(cfg: TrainConfig, **sections: Mapping[str, Any]) -> TrainConfig:
    """A copy with fields replaced per section, e.g. ``override(cfg, run={"steps": 10})``."""
    return from_mapping(TrainConfig, sections, source="override", base=cfg)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON training config.

    A file may start from another: ``extends = "default_model_gpu.toml"`` at its top, then only
    the values that differ (tables merge key by key).
    """
    return load_file(TrainConfig, path)


def dump_toml(cfg: TrainConfig) -> str:
    """The config as TOML text, whole (what ``config.resolved.toml`` holds); loads back equal."""
    return settings_dump_toml(cfg)
