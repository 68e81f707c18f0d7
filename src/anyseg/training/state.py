"""Building the model to train, and training checkpoints (everything needed to resume).

A training checkpoint (``checkpoints/step_XXXXXXX.pt``) is a ``torch.save`` dict::

    format      "anyseg-train-1"
    step        optimizer steps completed
    model       the Sam state dict, official key layout (so ``anyseg.load`` reads it too)
    sam_config  SamConfig.to_dict() of the architecture
    optimizer   AdamW state dict
    scheduler   LambdaLR state dict
    config      the TrainConfig as a plain dict
    rng         {"torch": CPU generator state, "cuda": [per-device states]}
    text_clip   the CLIP a text path was trained with (TextClipRecord.to_dict()), or None

It holds only tensors and plain Python values, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from anyseg.config import SamConfig, TextClipRecord, get_preset
from anyseg.errors import CheckpointError, InvalidInputError
from anyseg.io import atomic_path
from anyseg.modeling import Sam, build_sam
from anyseg.training.config import (
    ModelSpec,
    PromptConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from anyseg.training.text_prompts import CropTextSource

FORMAT = "anyseg-train-1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def sam_config_from_spec(spec: ModelSpec, drop_path_rate: float) -> SamConfig:
    """The SamConfig of a preset with the spec's field overrides and the drop-path rate."""
    base = get_preset(spec.preset)
    sections: dict[str, tuple[Any, Mapping[str, Any]]] = {
        "image_encoder": (base.image_encoder, spec.image_encoder),
        "prompt_encoder": (base.prompt_encoder, spec.prompt_encoder),
        "mask_decoder": (base.mask_decoder, spec.mask_decoder),
    }
    parts: dict[str, Any] = {}
    for name, (sub, overrides) in sections.items():
        known = set(sub.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidInputError(
                f"model.{name}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        if name == "image_encoder" and "drop_path_rate" in overrides:
            raise InvalidInputError("set the drop-path rate as optim.drop_path_rate")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        parts[name] = replace(sub, **values)
    parts["image_encoder"] = replace(parts["image_encoder"], drop_path_rate=drop_path_rate)
    cfg = replace(base, **parts)
    cfg.validate()
    return cfg


def with_drop_path(config: SamConfig, rate: float) -> SamConfig:
    return replace(config, image_encoder=replace(config.image_encoder, drop_path_rate=rate))


def build_training_model(cfg: TrainConfig) -> Sam:
    """A randomly initialised model from ``cfg.model``, or the weights of
    ``cfg.run.init_checkpoint`` (architecture read from the checkpoint) with the configured
    drop-path rate. Returned in train mode, float32, on the CPU."""
    if cfg.run.init_checkpoint:
        from anyseg.checkpoint import load

        loaded = load(cfg.run.init_checkpoint, device="cpu")
        model = build_sam(with_drop_path(loaded.config, cfg.optim.drop_path_rate))
        model.load_state_dict(loaded.state_dict())
        model.text_clip = loaded.text_clip
    else:
        model = build_sam(sam_config_from_spec(cfg.model, cfg.optim.drop_path_rate))
        if cfg.model.init == "prompt_localizing":
            from anyseg.modeling.init import prompt_localizing_init

            prompt_localizing_init(model, seed=cfg.run.seed)
    return model.train()


def add_text_path(model: Sam, embed_dim: int) -> Sam:
    """A copy of ``model`` with a new, randomly initialised text path for ``embed_dim``-wide
    CLIP embeddings (every other weight kept); ``model`` itself if it has one of that width.

    Raises:
        InvalidInputError: the model's text path takes another width.
    """
    have = model.config.prompt_encoder.text_embed_dim
    if have == embed_dim:
        return model
    if have:
        raise InvalidInputError(
            f"the model's text path takes {have}-wide CLIP embeddings, but the CLIP gives "
            f"{embed_dim}-wide ones: train with the CLIP it was trained with (prompts.clip)"
        )
    config = replace(
        model.config,
        prompt_encoder=replace(model.config.prompt_encoder, text_embed_dim=embed_dim),
    )
    grown = build_sam(config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(".text_" in k for k in missing), (missing, unexpected)
    return grown.train(model.training)


def with_text_prompts(
    model: Sam, prompts: PromptConfig, device: torch.device
) -> tuple[Sam, CropTextSource]:
    """The model with a text path for the configured CLIP (``prompts.clip``, default the
    bundled one), recording that CLIP, and the source of its text-first prompts."""
    from anyseg.clip import load_clip

    clip = load_clip(prompts.clip or None, device=device)
    model = add_text_path(model, clip.embed_dim)
    model.text_clip = TextClipRecord(clip.sha256, clip.embed_dim, Path(clip.source).name)
    source = CropTextSource(clip, prompts, model.config.pixel_mean, model.config.pixel_std)
    return model, source


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_training_checkpoint(
    path: Path,
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    cfg: TrainConfig,
) -> None:
    """Write everything needed to resume (see the module docstring), atomically."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    _atomic_torch_save(
        {
            "format": FORMAT,
            "step": step,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "sam_config": with_drop_path(model.config, 0.0).to_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": config_to_dict(cfg),
            "rng": rng,
            "text_clip": None if model.text_clip is None else model.text_clip.to_dict(),
        },
        path,
    )


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` ``step_*.pt`` files of ``folder``."""
    found = sorted(
        (int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := _STEP_FILE.match(p.name))
    )
    for _, p in found[:-keep]:
        p.unlink(missing_ok=True)


def find_checkpoint(path: str | Path) -> Path:
    """A training checkpoint file, or the newest one of a run folder (``RUN/checkpoints``)."""
    p = Path(path)
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        if folder.is_dir():
            found = sorted(
                (int(m.group(1)), f)
                for f in folder.glob("step_*.pt")
                if (m := _STEP_FILE.match(f.name))
            )
            if found:
                return found[-1][1]
    raise InvalidInputError(
        f"--resume {str(path)!r}: expected a training checkpoint file or a run folder with "
        "checkpoints/step_*.pt"
    )


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a training checkpoint (CPU tensors)."""
    p = find_checkpoint(path)
    from anyseg.checkpoint import load_tensors_only

    state = load_tensors_only(p, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: not an anyseg training checkpoint (expected format {FORMAT!r}); to start from "
            "model weights use --init"
        )
    state["path"] = str(p)
    return state


def config_of_checkpoint(state: dict[str, Any]) -> TrainConfig:
    return config_from_dict(state["config"], source=f"{state.get('path', 'checkpoint')} config")


def model_from_checkpoint(state: dict[str, Any], drop_path_rate: float) -> Sam:
    """Rebuild the model of a training checkpoint (train mode, CPU)."""
    config = with_drop_path(SamConfig.from_dict(state["sam_config"]), drop_path_rate)
    model = build_sam(config)
    model.load_state_dict(state["model"])
    if state.get("text_clip"):
        model.text_clip = TextClipRecord.from_dict(state["text_clip"])
    return model.train()


def restore_rng(state: dict[str, Any]) -> None:
    rng = state.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def export_weights(model: Sam, out_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    """Write the unwrapped model's weights in the official layout (``model.safetensors`` /
    ``model.pth``) with the drop-path rate reset to 0 in the stored config."""
    from anyseg.checkpoint import save

    original = model.config
    model.config = with_drop_path(original, 0.0)
    try:
        return [save(model, out_dir / f"model.{fmt}") for fmt in formats]
    finally:
        model.config = original
