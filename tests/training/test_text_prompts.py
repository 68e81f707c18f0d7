"""Text-first prompts in training: the crop-embedding source, the text-first group, a model that
gains a text path, and ``prompts.text_prob = 0`` reproducing runs from before text prompts."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _scenes import make_sa1b_dataset
from test_train import tiny_config

from anyseg.checkpoint import load
from anyseg.clip import load_clip
from anyseg.data.dataset import collate
from anyseg.training.config import PromptConfig
from anyseg.training.loop import make_dataset, train
from anyseg.training.prompts import pass_schedule
from anyseg.training.state import add_text_path, build_training_model
from anyseg.training.step import InteractiveSam, schedule_generator
from anyseg.training.text_prompts import CropTextSource, TextPrompts, denormalize

from .._text import CLIP_WIDTH, write_tiny_clip

# Fingerprints of the runs of ``_fingerprint`` (last loss; sum of squares and sum of absolute
# values of every final weight, in float64) made with the code before text prompts existed, one
# torch thread: commit e7439d4, and for the frozen encoder commit 7943d4a (main just before the
# text merge: the speed work's chunked inference path computes the frozen encoder's embeddings,
# equal to float rounding, not bit for bit). Bit for bit the final weights differ between CPUs
# (the SHA-256 of the weights of one AVX-512 machine is not another's, for the old code as for
# the new), so the weights are compared to 1e-6; a change in what the run draws or computes
# moves these by far more. On one machine the old and the new code give identical weights.
BEFORE_TEXT = {
    "trained encoder": (2.751901865005493, 1546.411927572159, 7053.426285166472),
    "frozen encoder": (2.956019163131714, 1546.1363916516589, 7045.71488457405),
}


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x == pytest.approx(y, rel=1e-6) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors")


def _fingerprint(tmp: Path, **sections: dict[str, Any]) -> tuple[float, float, float]:
    data = make_sa1b_dataset(tmp / "data", num_images=3, shapes=3, seed=5)
    cfg = tiny_config(
        data,
        tmp / "run",
        data={"hflip_prob": 0.5, "max_masks_per_image": 3},
        run={"steps": 5},
        **sections,
    )
    result = train(cfg, progress=False)
    weights = [v.detach().double() for _, v in sorted(result.model.state_dict().items())]
    squares = sum(float(w.pow(2).sum()) for w in weights)
    absolute = sum(float(w.abs().sum()) for w in weights)
    return result.last_loss, squares, absolute


@pytest.mark.parametrize("name", sorted(BEFORE_TEXT))
def test_text_prob_zero_reproduces_runs_before_text_prompts(tmp_path: Path, name: str) -> None:
    sections: dict[str, Any] = {"prompts": {"text_prob": 0.0}}
    if name == "frozen encoder":
        sections["optim"] = {"freeze_image_encoder": True}
    got = _fingerprint(tmp_path, **sections)
    assert _close(got, BEFORE_TEXT[name]), (got, BEFORE_TEXT[name])


def test_an_all_false_text_choice_is_no_text(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_dataset, tmp_path / "run")
    model = add_text_path(build_training_model(cfg), CLIP_WIDTH)
    module = InteractiveSam(model, cfg.prompts, cfg.loss, False).eval()
    batch = collate([make_dataset(cfg, str(tiny_dataset), model, train=False)[0]])
    m = batch.masks.shape[0]
    schedule = pass_schedule(2, 2, schedule_generator(0, 0, 0))
    none = TextPrompts(torch.zeros(m, dtype=torch.bool), torch.zeros(m, CLIP_WIDTH), torch.zeros(m))
    with torch.no_grad():
        a, b = module(batch, schedule), module(batch, schedule, None, none)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert int(b.num_text) == 0


def _source(clip_file: Path, **prompts: Any) -> CropTextSource:
    from anyseg.config import PRESETS

    cfg = PRESETS["test"]
    return CropTextSource(
        load_clip(clip_file), PromptConfig(**prompts), cfg.pixel_mean, cfg.pixel_std
    )


def test_crop_source_picks_large_masks_and_embeds_their_crops(
    tiny_dataset: Path, tmp_path: Path, clip_file: Path
) -> None:
    cfg = tiny_config(tiny_dataset, tmp_path / "run")
    model = build_training_model(cfg)
    data = make_dataset(cfg, str(tiny_dataset), model, train=False)
    batch = collate([data[0], data[1]])
    areas = batch.masks.flatten(1).sum(1).float() / 128**2
    everything = _source(clip_file, text_prob=1.0, text_min_area_fraction=0.0)(batch)
    assert bool(everything.first.all()) and not bool(everything.from_caption.any())
    torch.testing.assert_close(everything.embeddings.norm(dim=-1), torch.ones(len(areas)))
    again = _source(clip_file, text_prob=1.0, text_min_area_fraction=0.0)(batch)
    assert torch.equal(again.embeddings, everything.embeddings)  # seeded per image
    large = _source(clip_file, text_prob=1.0, text_min_area_fraction=float(areas.median()))(batch)
    assert torch.equal(large.first, areas >= areas.median())
    assert not large.embeddings[~large.first].any()
    half = _source(clip_file, text_prob=0.5, text_min_area_fraction=0.0)(batch)
    assert 0 < int(half.first.sum()) < len(areas) or len(areas) < 4
    none = _source(clip_file, text_prob=0.0)(batch)
    assert not bool(none.first.any())
    # The crops come from the model input's own pixels.
    image = denormalize(batch.images[0], model.config.pixel_mean, model.config.pixel_std, (96, 128))
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8


def test_captions_give_text_embeddings(tmp_path: Path, clip_file: Path) -> None:
    from anyseg.data.synthetic import SynthConfig, write_dataset

    root = tmp_path / "synth"
    write_dataset(
        root,
        2,
        seed=3,
        config=SynthConfig(height=96, width=96, max_objects=6),
        workers=1,
        progress=False,
    )
    cfg = tiny_config(
        root,
        tmp_path / "run",
        prompts={"text_prob": 1.0, "text_caption_prob": 1.0, "text_min_area_fraction": 0.0},
    )
    model = build_training_model(cfg)
    batch = collate([make_dataset(cfg, str(root), model, train=True)[(0, 0)]])
    assert len(batch.captions) == batch.masks.shape[0] and any(batch.captions)
    source = _source(clip_file, text_prob=1.0, text_caption_prob=1.0, text_min_area_fraction=0.0)
    out = source(batch)
    with_caption = torch.tensor([bool(c) for c in batch.captions])
    assert torch.equal(out.from_caption, with_caption)
    captioned = [c for c in batch.captions if c]
    expected = source.clip.encode_text(captioned, normalize=True)
    torch.testing.assert_close(out.embeddings[with_caption], expected)


def test_a_text_run_adds_the_path_trains_it_and_records_the_clip(
    tiny_dataset: Path, tmp_path: Path, clip_file: Path
) -> None:
    cfg = tiny_config(
        tiny_dataset,
        tmp_path / "run",
        prompts={"text_prob": 0.5, "text_min_area_fraction": 0.0, "clip": str(clip_file)},
        optim={"freeze_image_encoder": True},
        run={"steps": 6, "checkpoint_every": 3},
    )
    start = build_training_model(cfg)
    assert not start.has_text
    result = train(cfg, progress=False)
    clip = load_clip(clip_file)
    assert result.model.has_text and result.model.text_clip is not None
    assert result.model.text_clip.sha256 == clip.sha256
    trained = result.model.prompt_encoder.text_mlp.layers[0].weight
    assert not torch.equal(
        trained, add_text_path(start, CLIP_WIDTH).prompt_encoder.text_mlp.layers[0].weight
    )
    loaded = load(tmp_path / "run" / "model.safetensors")
    assert loaded.text_clip == result.model.text_clip
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert any(r["text_iou_first"] not in ("", "nan") for r in rows)
    # Resuming keeps the path and the record.
    resumed = train(
        tiny_config(
            tiny_dataset,
            tmp_path / "run",
            prompts={"text_prob": 0.5, "text_min_area_fraction": 0.0, "clip": str(clip_file)},
            optim={"freeze_image_encoder": True},
            run={"steps": 7},
        ),
        resume=tmp_path / "run",
        progress=False,
    )
    assert resumed.model.text_clip == result.model.text_clip


def test_a_clip_of_another_width_than_the_models_path(tmp_path: Path) -> None:
    from anyseg.config import PRESETS
    from anyseg.errors import InvalidInputError
    from anyseg.modeling import build_sam

    model = add_text_path(build_sam(PRESETS["test"]), CLIP_WIDTH)
    assert add_text_path(model, CLIP_WIDTH) is model
    with pytest.raises(InvalidInputError, match=r"24-wide.*40-wide.*prompts.clip"):
        add_text_path(model, 40)


def test_the_text_path_has_its_own_lr_scale() -> None:
    from anyseg.config import PRESETS
    from anyseg.modeling import build_sam
    from anyseg.training.config import OptimConfig
    from anyseg.training.optim import param_groups

    model = add_text_path(build_sam(PRESETS["test"]), CLIP_WIDTH)
    _, infos = param_groups(model, OptimConfig(text_lr_scale=10.0, layer_decay=0.5), 2)
    scales = {n: g.lr_scale for g in infos for n in g.names}
    assert scales["prompt_encoder.text_mlp.layers.0.weight"] == 10.0
    assert scales["prompt_encoder.text_embed.weight"] == 10.0
    assert scales["prompt_encoder.point_embeddings.0.weight"] == 1.0
    assert scales["mask_decoder.iou_token.weight"] == 1.0


def _text_iou_curve(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open() as f:
        return [float(r["text_iou_first"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_the_text_path_learns_from_an_informative_embedding(
    tmp_path: Path, clip_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control of scripts/text_path_location_probe.py on the tiny model: with each
    text-first prompt's embedding a code of its mask's centre, the text path (token, decoder,
    min-over-3 loss, gradients) learns to find the mask; with one constant embedding for every
    mask, which says nothing, it cannot. Guards the text path's training against a change that
    cuts it off (a dropped token, a detached embedding, a wrong target)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "text_path_location_probe.py"
    spec = importlib.util.spec_from_file_location("text_path_location_probe", script)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    crop_prompts = CropTextSource.__call__

    def constant(self: CropTextSource, batch: Any) -> TextPrompts:
        out = crop_prompts(self, batch)
        same = torch.nn.functional.normalize(torch.ones_like(out.embeddings), dim=1)
        embeddings = torch.where(out.first[:, None], same, out.embeddings)
        return TextPrompts(out.first, embeddings, out.from_caption)

    data = make_sa1b_dataset(tmp_path / "data", num_images=8, shapes=4, seed=3)
    last = {}
    for name, prompts in (("centre", probe.location_prompts), ("constant", constant)):
        monkeypatch.setattr(CropTextSource, "__call__", prompts)
        cfg = tiny_config(
            data,
            tmp_path / name,
            data={"max_masks_per_image": 8},
            prompts={
                "text_prob": 1.0,
                "text_min_area_fraction": 0.0,
                "clip": str(clip_file),
                "num_iterative_points": 0,
                "mask_only_iterations": 0,
            },
            optim={"freeze_image_encoder": True},
            run={"steps": 500},
        )
        train(cfg, progress=False)
        curve = _text_iou_curve(tmp_path / name)
        last[name] = float(np.mean(curve[-100:]))
        assert np.mean(curve[:100]) < 0.2  # both start from nothing
    # Measured: centre 0.70, constant 0.14 (mean text-first IoU of the last 100 steps).
    assert last["centre"] > 0.45
    assert last["centre"] > last["constant"] + 0.3
