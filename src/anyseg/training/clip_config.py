"""Settings of ``anyseg clip train``: one frozen dataclass tree (model, data, optimizer, run).

Config files (TOML, YAML or JSON, read by :func:`anyseg.settings.load_file`) have one table
per section (``[model.vision]``, ``[data]``, ``[data.captions]``, ``[optim]``, ``[run]``);
unknown keys are errors that name them. The text tower's ``vocab_size`` comes from the caption
vocabulary (:func:`anyseg.data.captions.vocabulary` plus padding, start and end), whatever the
file says. The fields with a ``flag`` are ``anyseg clip train`` options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from anyseg.clip.config import ClipConfig
from anyseg.data.captions import CaptionConfig
from anyseg.errors import InvalidInputError
from anyseg.settings import opt


@dataclass(frozen=True)
class ClipDataConfig:
    """Where the captioned masks are and how one (crop, caption) pair is drawn."""

    train: str = field(
        default="",
        metadata=opt("training data (an anyseg synth folder)", flag="--data", metavar="DIR"),
    )
    val: str | None = field(
        default=None,
        metadata=opt("held-out data, evaluated during training", flag="--val", metavar="DIR"),
    )
    max_images: int = field(default=0, metadata={"help": "use at most N training images (0: all)"})
    val_max_images: int = field(
        default=100, metadata={"help": "held-out images per evaluation (0: all)"}
    )
    min_mask_area: int = field(
        default=100, metadata={"help": "masks below this many pixels are not trained on"}
    )
    # Paper (appendix D.5): the box enlarged by a random factor in [1, 2], background zeroed
    # with probability 0.5.
    scale_min: float = field(default=1.0, metadata={"help": "smallest box enlargement"})
    scale_max: float = field(default=2.0, metadata={"help": "largest box enlargement"})
    zero_background_prob: float = field(
        default=0.5, metadata={"help": "P(pixels outside the mask are zeroed)"}
    )
    masked_attention_prob: float = field(
        default=1.0,
        metadata={"help": "P(the last image block's class token sees only the mask's patches)"},
    )
    # Colour is the easiest attribute to learn: with uniform batches a model that knows only
    # colour already tells most captions apart, and fill and shape get little gradient. Batches of
    # same-colour groups make the other attributes the only way to tell a group's captions apart.
    colour_group_size: int = field(
        default=16, metadata={"help": "masks per same-colour group of a batch (1: uniform)"}
    )
    captions: CaptionConfig = field(default_factory=CaptionConfig)


@dataclass(frozen=True)
class ClipOptimConfig:
    """AdamW with linear warmup and cosine decay (CLIP's recipe, scaled down)."""

    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    min_lr_fraction: float = field(
        default=0.02, metadata={"help": "final lr as a fraction of the peak"}
    )
    warmup_steps: int = field(default=200, metadata={"help": "linear warmup steps"})
    weight_decay: float = field(
        default=0.1, metadata={"help": "AdamW weight decay (not on gains, biases, embeddings)"}
    )
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (CLIP: 0.98)"})
    eps: float = field(default=1e-6, metadata={"help": "AdamW epsilon (CLIP: 1e-6)"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clip (0: off)"})
    max_logit_scale: float = field(
        default=100.0, metadata={"help": "cap of the learned inverse temperature (CLIP: 100)"}
    )
    attribute_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the auxiliary attribute heads (training only; 0: off)"},
    )


@dataclass(frozen=True)
class ClipRunConfig:
    """Length, batch, device and outputs."""

    steps: int = field(default=3000, metadata=opt("optimizer steps", flag="--steps"))
    batch_size: int = field(
        default=256, metadata=opt("(crop, caption) pairs per step", flag="--batch-size")
    )
    seed: int = field(
        default=0, metadata=opt("random seed (sampling, initialisation)", flag="--seed")
    )
    out_dir: str = field(
        default="runs/clip", metadata=opt("output folder", flag="--out", metavar="DIR")
    )
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata=opt("auto: cuda when available, else cpu", flag="--device")
    )
    num_threads: int = field(
        default=0, metadata=opt("torch threads (0: torch's default)", flag="--threads")
    )
    log_every: int = field(default=20, metadata={"help": "progress line every N steps"})
    eval_every: int = field(
        default=500, metadata={"help": "held-out evaluation every N steps (0: at the end only)"}
    )
    checkpoint_every: int = field(default=250, metadata={"help": "checkpoint every N steps"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept"})
    half_weights: bool = field(
        default=True, metadata={"help": "store clip.safetensors in float16 (half the size)"}
    )


@dataclass(frozen=True)
class ClipTrainConfig:
    """Everything one CLIP training run needs."""

    model: ClipConfig = field(default_factory=ClipConfig)
    data: ClipDataConfig = field(default_factory=ClipDataConfig)
    optim: ClipOptimConfig = field(default_factory=ClipOptimConfig)
    run: ClipRunConfig = field(default_factory=ClipRunConfig)

    def __post_init__(self) -> None:
        d, o, r = self.data, self.optim, self.run
        checks = (
            (0 < d.scale_min <= d.scale_max, "0 < data.scale_min <= data.scale_max"),
            (0 <= d.zero_background_prob <= 1, "data.zero_background_prob in [0, 1]"),
            (0 <= d.masked_attention_prob <= 1, "data.masked_attention_prob in [0, 1]"),
            (d.min_mask_area >= 1, "data.min_mask_area >= 1"),
            (d.colour_group_size >= 1, "data.colour_group_size >= 1"),
            (o.lr > 0 and 0 <= o.min_lr_fraction <= 1, "optim.lr > 0, min_lr_fraction in [0, 1]"),
            (o.warmup_steps >= 0 and o.grad_clip >= 0, "optim.warmup_steps, grad_clip >= 0"),
            (o.max_logit_scale > 1, "optim.max_logit_scale > 1"),
            (o.attribute_weight >= 0, "optim.attribute_weight >= 0"),
            (r.steps >= 1 and r.batch_size >= 2, "run.steps >= 1 and run.batch_size >= 2"),
            (r.log_every >= 1 and r.keep_checkpoints >= 1, "run.log_every, keep_checkpoints >= 1"),
            (
                r.eval_every >= 0 and r.checkpoint_every >= 0,
                "run.eval_every, checkpoint_every >= 0",
            ),
        )
        for ok, what in checks:
            if not ok:
                raise InvalidInputError(f"clip training config: expected {what}")
