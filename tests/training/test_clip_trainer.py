"""The contrastive CLIP trainer: loss, positives, a short run that learns, outputs, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.clip import ClipConfig, TextConfig, VisionConfig, load_clip
from anyseg.data.attributed import read_attributed_images
from anyseg.data.captions import CaptionConfig, nameable
from anyseg.data.synthetic import SynthConfig, write_dataset
from anyseg.evaluation.clip import ClipEvalConfig, evaluate_clip
from anyseg.settings import load_file
from anyseg.training.clip_config import (
    ClipDataConfig,
    ClipOptimConfig,
    ClipRunConfig,
    ClipTrainConfig,
)
from anyseg.training.clip_data import PairSampler
from anyseg.training.clip_trainer import (
    caption_tokenizer,
    contrastive_loss,
    load_clip_checkpoint,
    train_clip,
)

SCENES = SynthConfig(height=160, width=160, max_objects=20)
TINY = ClipConfig(
    embed_dim=48,
    vision=VisionConfig(image_size=32, patch_size=8, width=64, layers=1, heads=1, mlp_dim=128),
    text=TextConfig(context_length=16, width=64, layers=1, heads=1, mlp_dim=128),
    activation="gelu",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clipdata")
    write_dataset(root / "train", 40, seed=5, config=SCENES, workers=1, progress=False)
    write_dataset(root / "val", 16, seed=6, config=SCENES, workers=1, progress=False)
    return root / "train", root / "val"


def _cfg(train: Path, out: Path, steps: int, **run) -> ClipTrainConfig:
    # Uniform batches and colour in most captions: colour is learned first, and fast.
    captions = CaptionConfig(colour_prob=0.9)
    return ClipTrainConfig(
        model=TINY,
        data=ClipDataConfig(train=str(train), colour_group_size=1, captions=captions),
        optim=ClipOptimConfig(lr=2e-3, warmup_steps=10),
        run=ClipRunConfig(
            steps=steps,
            batch_size=64,
            out_dir=str(out),
            device="cpu",
            log_every=50,
            eval_every=0,
            **run,
        ),
    )


def test_contrastive_loss_counts_every_true_caption() -> None:
    torch.manual_seed(0)
    img, txt = torch.randn(5, 8), torch.randn(5, 8)
    positives = torch.eye(5, dtype=torch.bool)
    positives[0, 3] = positives[2, 4] = positives[1, 4] = True
    scale = torch.tensor(np.log(20.0))
    loss, r1 = contrastive_loss(img, txt, scale, positives)
    # Against the definition, term by term: targets spread evenly over each row's (column's)
    # true captions (crops).
    logits = (
        20.0
        * torch.nn.functional.normalize(img, dim=1)
        @ torch.nn.functional.normalize(txt, dim=1).t()
    )
    i2t = t2i = 0.0
    for i in range(5):
        true = [j for j in range(5) if positives[i, j]]
        i2t -= sum(torch.log_softmax(logits[i], 0)[j] for j in true) / len(true) / 5
        true = [j for j in range(5) if positives[j, i]]
        t2i -= sum(torch.log_softmax(logits[:, i], 0)[j] for j in true) / len(true) / 5
    torch.testing.assert_close(loss, (i2t + t2i) / 2)
    best = logits.argmax(1)
    assert r1 == positives[torch.arange(5), best].float().mean()
    aligned, r1_aligned = contrastive_loss(img, img.clone(), scale, torch.eye(5, dtype=torch.bool))
    shuffled, _ = contrastive_loss(img, img[[1, 2, 3, 4, 0]], scale, torch.eye(5, dtype=torch.bool))
    assert r1_aligned == 1.0 and aligned < shuffled
    # A crop whose best caption is another true one (not its own) counts as a hit.
    txt2 = img.clone()
    txt2[0] = -img[0]
    shared = torch.eye(5, dtype=torch.bool)
    shared[0, 1] = True
    img2 = img.clone()
    img2[0] = img[1]
    assert contrastive_loss(img2, txt2, scale, shared)[1] == 1.0


def test_positives_are_the_captions_true_of_each_crop(data) -> None:
    train, _ = data
    images = read_attributed_images(train, 10)
    tok = caption_tokenizer(16)
    sampler = PairSampler(images, tok, ClipDataConfig(train=str(train)), 32)
    batch = sampler.sample(np.random.default_rng(3), 48)
    assert batch.crops.shape == (48, 32, 32, 3) and batch.tokens.shape == (48, 16)
    assert batch.positives.diagonal().all()
    assert batch.positives.sum() > 48  # "a red shape" is true of more than one crop
    # Against a slow reference: one description match per pair (any fill word fits a crop whose
    # pattern does not show).
    naming = ClipDataConfig().captions.naming
    for i, (ii, k) in enumerate(batch.items):
        attrs, parent = images[ii].masks[k].attributes, images[ii].parent_attributes(k)
        hidden_fill = nameable(attrs, naming).fill is None
        for j, d in enumerate(batch.descriptions):
            d = replace(d, fill=None) if hidden_fill else d
            assert bool(batch.positives[i, j]) == d.matches(attrs, parent), (i, j)


def test_short_run_raises_retrieval_well_above_chance(data, tmp_path: Path) -> None:
    train, val = data
    held_out = read_attributed_images(val)
    eval_cfg = ClipEvalConfig(min_mask_area=100)
    untrained = train_clip(_cfg(train, tmp_path / "r0", 1), progress=False)
    before = evaluate_clip(untrained.clip, held_out, eval_cfg)
    steps = 300  # at 120 the held-out retrieval was a coin toss between seeds
    result = train_clip(_cfg(train, tmp_path / "run", steps), progress=False)
    after = evaluate_clip(result.clip, held_out, eval_cfg)
    assert after.retrieval_count > 30
    assert after.retrieval_r1 > max(2 * after.retrieval_chance, before.retrieval_r1 + 0.15), (
        before.retrieval_r1,
        after.retrieval_r1,
        after.retrieval_chance,
    )
    assert after.attribute_accuracy["colour"] > 0.4  # chance 1/12
    # The run's outputs.
    out = tmp_path / "run"
    loaded = load_clip(out / "clip.safetensors")
    assert (
        loaded.layout == "anyseg"
        and loaded.config.text.vocab_size == len(caption_tokenizer(16).words) + 3
    )
    resolved = load_file(ClipTrainConfig, out / "config.resolved.toml")
    assert resolved.data == _cfg(train, out, steps).data and resolved.run.steps == steps
    assert (out / "loss_curve.png").stat().st_size > 1000
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == steps + 1 and rows[0].startswith("step,lr,loss")


def test_resume_continues_bit_for_bit(data, tmp_path: Path) -> None:
    train, _ = data
    whole = train_clip(_cfg(train, tmp_path / "whole", 6, checkpoint_every=3), progress=False)
    part = _cfg(train, tmp_path / "part", 3, checkpoint_every=3)
    train_clip(part, progress=False)
    state = load_clip_checkpoint(tmp_path / "part")
    assert state["step"] == 3
    resumed = train_clip(
        replace(part, run=replace(part.run, steps=6)), resume=tmp_path / "part", progress=False
    )
    for (k, a), b in zip(
        whole.clip.model.state_dict().items(), resumed.clip.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    rows = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_attribute_heads_supervise_what_is_known() -> None:
    from anyseg.data.captions import FIELDS
    from anyseg.training.clip_heads import AttributeHeads, ignore_unknown

    torch.manual_seed(0)
    heads = AttributeHeads(8)
    img, txt = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    codes = np.full((4, len(FIELDS)), -1)
    unknown = heads(img, txt, ignore_unknown(codes), ignore_unknown(codes))
    assert float(unknown) == 0.0
    codes[:, FIELDS.index("shape")] = [0, 1, 2, 3]
    codes[0, FIELDS.index("colour")] = -3  # "maybe": not supervised either
    loss = heads(img, txt, ignore_unknown(codes), ignore_unknown(codes))
    loss.backward()
    assert float(loss) > 0 and img.grad is not None and img.grad.abs().sum() > 0
    opt = torch.optim.Adam(heads.parameters(), lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        fit = heads(img.detach(), txt.detach(), ignore_unknown(codes), ignore_unknown(codes))
        fit.backward()
        opt.step()
    assert float(fit) < 0.1 * float(loss)
