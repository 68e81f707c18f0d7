"""The training loop learns, resumes exactly, and runs under 2-process DDP like 1 process."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from _scenes import make_sa1b_dataset

from anyseg.checkpoint import load
from anyseg.training.config import TrainConfig, config_from_dict, load_config
from anyseg.training.distributed import DistInfo, StepSampler
from anyseg.training.loop import evaluate, make_dataset, train, train_multiprocess
from anyseg.training.state import build_training_model, load_training_checkpoint


def tiny_config(data_dir: Path, out_dir: Path, **sections: dict[str, Any]) -> TrainConfig:
    """The "test" preset at 128 px (8x8 embedding), fast settings; ``sections`` override."""
    base: dict[str, dict[str, Any]] = {
        "model": {"preset": "test", "image_encoder": {"img_size": 128}},
        "data": {
            "train": str(data_dir),
            "max_masks_per_image": 4,
            "num_workers": 0,
            "hflip_prob": 0.0,
        },
        "prompts": {"num_iterative_points": 2, "mask_only_iterations": 2},
        "loss": {"resolution": "low_res"},
        "optim": {
            "lr": 3e-3,
            "layer_decay": 1.0,
            "drop_path_rate": 0.0,
            "warmup_steps": 10,
            "weight_decay": 0.0,
            "decay_fractions": [0.8],
        },
        "run": {
            "steps": 4,
            "log_every": 1000,
            "checkpoint_every": 0,
            "out_dir": str(out_dir),
            "device": "cpu",
            "tensorboard": False,
            "seed": 0,
        },
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return config_from_dict(base)


def _losses(run_dir: Path) -> dict[int, float]:
    with (run_dir / "metrics.csv").open() as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


@pytest.mark.slow
def test_overfits_a_handful_of_masks(tmp_path: Path) -> None:
    data = make_sa1b_dataset(tmp_path / "data", num_images=2, shapes=3, seed=1)
    cfg = tiny_config(data, tmp_path / "run", run={"steps": 500})
    torch.manual_seed(0)
    start_model = build_training_model(cfg)
    masks = make_dataset(cfg, str(data), start_model, train=False)
    before = evaluate(start_model, masks, cfg)
    result = train(cfg, progress=False)
    after = evaluate(result.model, masks, cfg)
    print(
        f"IoU first/last before {before.iou_first:.3f}/{before.iou_last:.3f}, "
        f"after {after.iou_first:.3f}/{after.iou_last:.3f}"
    )
    assert after.iou_last > 0.8 and after.iou_last > before.iou_last + 0.3
    assert after.iou_first > before.iou_first + 0.3
    assert after.loss < 0.5 * before.loss
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 10_000


def test_resume_continues_with_identical_losses(tmp_path: Path, tiny_dataset: Path) -> None:
    full = tiny_config(
        tiny_dataset, tmp_path / "full", run={"checkpoint_every": 2}, data={"hflip_prob": 0.5}
    )
    result_full = train(full, progress=False)
    first = tiny_config(
        tiny_dataset, tmp_path / "part", run={"checkpoint_every": 2}, data={"hflip_prob": 0.5}
    )
    # Stop after step 2 by resuming later from the step-2 checkpoint of a second run.
    train(first, progress=False)
    ckpt = tmp_path / "part" / "checkpoints" / "step_0000002.pt"
    state = load_training_checkpoint(ckpt)
    assert state["step"] == 2 and "optimizer" in state and "rng" in state
    resumed_cfg = tiny_config(
        tiny_dataset, tmp_path / "resumed", run={"checkpoint_every": 2}, data={"hflip_prob": 0.5}
    )
    result = train(resumed_cfg, resume=ckpt, progress=False)
    full_losses, resumed_losses = _losses(tmp_path / "full"), _losses(tmp_path / "resumed")
    assert sorted(resumed_losses) == [3, 4]
    assert resumed_losses[3] == full_losses[3] and resumed_losses[4] == full_losses[4]
    for (k, a), b in zip(
        result_full.model.state_dict().items(), result.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_sampler_shards_one_stream() -> None:
    single = StepSampler(5, 0, 2, DistInfo(0, 1), 1, 0, 4)
    ranks = [StepSampler(5, 0, 1, DistInfo(r, 2), 1, 0, 4) for r in range(2)]
    per_rank = [list(s) for s in ranks]
    for step, batch in enumerate(single):
        assert batch == per_rank[0][step] + per_rank[1][step]
    resumed = StepSampler(5, 0, 2, DistInfo(0, 1), 1, 2, 4)
    assert list(resumed) == list(single)[2:]
    assert len(resumed) == 2


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path, tiny_dataset: Path) -> None:
    # Deterministic prompts: the first prompt only (no error-region clicks, whose sampling could
    # flip on last-bit differences between batched and per-process arithmetic) + mask feedback.
    common: dict[str, Any] = {"prompts": {"num_iterative_points": 0, "mask_only_iterations": 1}}
    single = tiny_config(
        tiny_dataset, tmp_path / "single", run={"steps": 3}, data={"images_per_batch": 2}, **common
    )
    ddp = tiny_config(
        tiny_dataset, tmp_path / "ddp", run={"steps": 3}, data={"images_per_batch": 1}, **common
    )
    torch.manual_seed(0)
    ref = train(single, progress=False).model
    train_multiprocess(ddp, nprocs=2)
    got = load(tmp_path / "ddp" / "model.safetensors")
    bad = []
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values(), strict=True):
        # Attention key biases have a gradient that is mathematically zero (softmax ignores a
        # shift shared by all keys); Adam scales its rounding noise up to ~lr per step, so they
        # only agree within the summed lr of the 3 warmup steps (3e-3 x (1 + 2 + 3) / 10).
        atol = 1.8e-3 if k.endswith("k_proj.bias") else 2e-5
        if not torch.allclose(b, a, atol=atol, rtol=1e-4):
            bad.append((k, (a - b).abs().max().item()))
    assert not bad, bad
    single_losses, ddp_losses = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    for step in (1, 2, 3):
        assert ddp_losses[step] == pytest.approx(single_losses[step], rel=1e-5)


def test_cli_trains_writes_outputs_and_freezes_the_encoder(
    tmp_path: Path, tiny_dataset: Path, test_checkpoint: Path
) -> None:
    from anyseg.cli.main import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(Path(__file__).resolve().parents[2] / "configs" / "test.toml"),
            "--data",
            str(tiny_dataset),
            "--val",
            str(tiny_dataset),
            "--out",
            str(out),
            "--steps",
            "2",
            "--init",
            str(test_checkpoint),
            "--freeze-image-encoder",
            "--quiet",
        ]
    )
    assert code == 0
    for name in (
        "config.resolved.toml",
        "metrics.csv",
        "eval.csv",
        "model.safetensors",
        "loss_curve.png",
        "checkpoints/step_0000002.pt",
    ):
        assert (out / name).is_file(), name
    resolved = load_config(out / "config.resolved.toml")
    assert resolved.run.steps == 2 and resolved.optim.freeze_image_encoder
    trained, start = load(out / "model.safetensors"), load(test_checkpoint)
    trained_params = dict(trained.named_parameters())
    changed = {k: not torch.equal(trained_params[k], v) for k, v in start.named_parameters()}
    assert not any(c for k, c in changed.items() if k.startswith("image_encoder."))
    # (a multimask output that never had the lowest loss in 2 steps keeps its weights)
    rest = [c for k, c in changed.items() if not k.startswith("image_encoder.")]
    assert sum(rest) > 0.8 * len(rest)
    assert len(_losses(out)) == 2
    # --resume continues the run; its config comes from the checkpoint.
    assert main(["train", "--resume", str(out), "--steps", "3", "--quiet"]) == 0
    assert sorted(_losses(out)) == [1, 2, 3]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from anyseg.cli.main import main

    assert main(["train"]) == 1
    assert "--config" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nstepz = 3\n")
    assert main(["train", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "run.stepz" in err and len(err.strip().splitlines()) == 1


def test_bf16_autocast_and_gradient_accumulation_run(tmp_path: Path, tiny_dataset: Path) -> None:
    cfg = tiny_config(
        tiny_dataset, tmp_path / "bf16", run={"steps": 2, "bf16": True, "grad_accum_steps": 2}
    )
    result = train(cfg, progress=False)
    losses = _losses(tmp_path / "bf16")
    assert sorted(losses) == [1, 2] and all(0 < v < 10 for v in losses.values())
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_a_run_without_usable_masks_fails_and_writes_no_model(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    """Every mask filtered away (here: all smaller than min_mask_pixels) is a clear error,
    not a run of zero losses that ends with a model file."""
    cfg = tiny_config(
        tiny_dataset,
        tmp_path / "run",
        data={"min_mask_pixels": 10**9},
        run={"steps": 3, "checkpoint_every": 1},
    )
    with pytest.raises(ValueError, match=r"held no usable mask.*min_mask_pixels"):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_device_that_is_not_there_is_one_clear_error(tmp_path: Path, tiny_dataset: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = tiny_config(tiny_dataset, tmp_path / "run", run={"device": "cuda"})
    with pytest.raises(ValueError, match="no usable CUDA GPU"):
        train(cfg, progress=False)


def test_cached_embeddings_give_the_losses_of_the_encoder(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    """With a frozen encoder each image is encoded once and read back from disk; the run's
    losses are those of a run that encodes every step (one image per step: bit for bit)."""
    frozen = {"freeze_image_encoder": True}
    plain = tiny_config(
        tiny_dataset,
        tmp_path / "plain",
        optim=frozen,
        run={"steps": 6, "cache_embeddings": False},
        data={"hflip_prob": 0.5},
    )
    cached_dir = tmp_path / "cache"
    cached = tiny_config(
        tiny_dataset,
        tmp_path / "cached",
        optim=frozen,
        run={"steps": 6, "embedding_cache": str(cached_dir)},
        data={"hflip_prob": 0.5},
    )
    train(plain, progress=False)
    model = train(cached, progress=False).model
    assert _losses(tmp_path / "plain") == _losses(tmp_path / "cached")
    files = list(cached_dir.rglob("*.safetensors"))
    # 3 images, each flipped or not: at most 6 distinct inputs over 6 steps, some reused.
    assert 1 <= len(files) <= 6
    assert not (tmp_path / "plain" / "embeddings").exists()
    # The files are what the run reads: replaced by zeros, the same run learns differently.
    from safetensors.torch import load_file, save_file

    for f in files:
        save_file({"embedding": torch.zeros_like(load_file(str(f))["embedding"])}, str(f))
    train(
        dataclasses.replace(
            cached, run=dataclasses.replace(cached.run, out_dir=str(tmp_path / "z"))
        ),
        progress=False,
    )
    assert _losses(tmp_path / "z") != _losses(tmp_path / "cached")
    # A second run with the same encoder reads them back; another encoder never sees them.
    from anyseg.training.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(cached_dir, model.image_encoder)
    assert cache.folder == files[0].parent
    with torch.no_grad():
        model.image_encoder.blocks[0].attn.qkv.weight.add_(1.0)
    assert EmbeddingCache(cached_dir, model.image_encoder).folder != cache.folder
