"""Training config: TOML/YAML files, unknown keys, round trip, paper defaults."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from anyseg.errors import InvalidInputError
from anyseg.training.config import (
    TrainConfig,
    config_from_dict,
    dump_toml,
    load_config,
    override,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_paper_recipe() -> None:
    cfg = TrainConfig()
    assert cfg.optim.lr == 8e-4 and (cfg.optim.beta1, cfg.optim.beta2) == (0.9, 0.999)
    assert cfg.optim.weight_decay == 0.1 and cfg.optim.layer_decay == 0.8
    assert cfg.optim.drop_path_rate == 0.4 and cfg.optim.warmup_steps == 250
    assert cfg.run.steps == 90000
    assert round(cfg.optim.decay_fractions[0] * 90000) == 60000
    assert round(cfg.optim.decay_fractions[1] * 90000) == 86666
    assert cfg.loss.focal_weight / cfg.loss.dice_weight == 20 and cfg.loss.focal_gamma == 2
    assert cfg.prompts.num_passes == 11
    assert cfg.data.max_masks_per_image == 64
    with pytest.raises(AttributeError):
        cfg.run.steps = 3  # type: ignore[misc]


def test_toml_and_yaml_give_the_same_config(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        '[model]\npreset = "test"\n[model.image_encoder]\ndepth = 3\nglobal_attn_indexes = [2]\n'
        "[optim]\nlr = 1e-3\ndecay_fractions = [0.5]\n[run]\nsteps = 7\n"
    )
    (tmp_path / "a.yaml").write_text(
        "model:\n  preset: test\n  image_encoder: {depth: 3, global_attn_indexes: [2]}\n"
        "optim:\n  lr: 0.001\n  decay_fractions: [0.5]\nrun:\n  steps: 7\n"
    )
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "a.yaml")
    assert a == b
    assert a.optim.lr == 1e-3 and a.optim.decay_fractions == (0.5,) and a.run.steps == 7
    assert a.model.image_encoder["depth"] == 3


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[optim]\nlr = 1e-3\nlearning_rate = 2\n")
    with pytest.raises(InvalidInputError, match=r"optim\.learning_rate"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(InvalidInputError, match=r"unknown key.*optimizer"):
        config_from_dict({"optimizer": {}})
    with pytest.raises(InvalidInputError, match=r"expected an integer.*run\.steps|run\.steps"):
        config_from_dict({"run": {"steps": "many"}})
    with pytest.raises(InvalidInputError, match="box_prob"):
        config_from_dict({"prompts": {"box_prob": 2.0}})
    p = tmp_path / "c.ini"
    p.write_text("[run]\n")
    with pytest.raises(InvalidInputError, match=r"expected one of \.toml, \.yaml, \.yml, \.json"):
        load_config(p)
    p = tmp_path / "c.json"  # JSON is a config format like the others
    p.write_text('{"run": {"steps": 7}}')
    assert load_config(p).run.steps == 7


def test_dump_toml_round_trips(tmp_path: Path) -> None:
    cfg = override(
        config_from_dict({"model": {"preset": "test", "mask_decoder": {"mlp_dim": 96}}}),
        run={"steps": 12, "init_checkpoint": "w.pth"},
        data={"train": 'a "quoted" path'},
    )
    path = tmp_path / "r.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(path) == cfg


SHIPPED = sorted(p.name for p in (REPO / "configs").glob("*.toml"))


@pytest.mark.parametrize("name", [n for n in SHIPPED if not n.startswith("clip")])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert cfg.run.steps >= 1


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.startswith("clip")])
def test_shipped_clip_configs_load(name: str) -> None:
    """The CLIP trainer's configs (``anyseg clip train --config``) load with its own dataclass."""
    from anyseg.settings import load_file
    from anyseg.training.clip_config import ClipTrainConfig

    cfg = load_file(ClipTrainConfig, REPO / "configs" / name)
    assert cfg.run.steps >= 1


def test_default_model_stages_chain_and_match_the_shipped_weights() -> None:
    """The GPU stage configs reproduce the bundled model: each stage starts from the previous
    stage's output, and their architecture is the shipped checkpoint's."""
    from dataclasses import replace

    from anyseg.checkpoint import load_default
    from anyseg.training.state import sam_config_from_spec

    stages = [
        load_config(REPO / "configs" / name)
        for name in (
            "default_model_gpu.toml",
            "default_model_gpu_stage2.toml",
            "default_model_gpu_stage3.toml",
        )
    ]
    assert stages[0].run.init_checkpoint is None and stages[0].model.init == "prompt_localizing"
    for before, after in itertools.pairwise(stages):
        assert after.run.init_checkpoint == f"{before.run.out_dir}/model.safetensors"
        assert after.model == before.model
    following = load_config(REPO / "configs" / "default_model_gpu_continue.toml")
    assert following.run.init_checkpoint == "src/anyseg/weights/default.safetensors"
    assert following.model == stages[0].model and (REPO / following.run.init_checkpoint).is_file()
    shipped = load_default().config
    built = sam_config_from_spec(stages[0].model, 0.0)
    enc = replace(built.image_encoder, drop_path_rate=shipped.image_encoder.drop_path_rate)
    assert replace(built, image_encoder=enc) == shipped
    # the recorded step counts are the configs' own
    for cfg, stage in zip(stages, ("stage1", "stage2", "stage3"), strict=True):
        rows = (REPO / "docs" / "default_model" / stage / "metrics.csv").read_text().splitlines()
        assert int(rows[-1].split(",")[0]) == cfg.run.steps


@pytest.mark.parametrize(
    ("name", "stage"),
    [
        ("default_model_gpu.toml", "stage1"),
        ("default_model_gpu_stage2.toml", "stage2"),
        ("default_model_gpu_stage3.toml", "stage3"),
    ],
)
def test_stage_configs_extend_each_other_and_resolve_to_the_recorded_runs(
    name: str, stage: str
) -> None:
    """Stages 2 and 3 only write what changes (``extends``); resolved, each is exactly the
    config its recorded run wrote out whole."""
    config = load_config(REPO / "configs" / name)
    recorded = load_config(REPO / "docs" / "default_model" / stage / "config.resolved.toml")
    assert config == recorded
    text = (REPO / "configs" / name).read_text()
    assert ("extends =" in text) == (stage != "stage1")
    assert len(text.splitlines()) < 40 or stage == "stage1"


def test_a_text_run_must_train_its_text_path() -> None:
    """``optim.train_only`` that leaves out the text path of a text run is refused (the text
    config once inherited the calibration run's IoU-head-only list and would have trained the
    decoder around a token that never learnt); prefixes that reach the path pass."""
    base = {"prompts": {"text_prob": 0.5}}
    with pytest.raises(InvalidInputError, match="text path"):
        config_from_dict({**base, "optim": {"train_only": ["mask_decoder.iou_prediction_head"]}})
    for ok in (["prompt_encoder"], ["prompt_encoder.text_mlp", "mask_decoder"], []):
        assert config_from_dict({**base, "optim": {"train_only": ok}}).optim.train_only == tuple(ok)
    head_only = {"optim": {"train_only": ["mask_decoder.iou_prediction_head"]}}
    assert config_from_dict(head_only).prompts.text_prob == 0
    text = load_config(REPO / "configs" / "default_model_text.toml")
    assert text.optim.train_only == () and text.optim.freeze_image_encoder
    assert text.loss.iou_target == "prompted" and text.loss.iou_weight == 1.0


def test_the_gpu_text_config_trains_the_encoder_with_text_from_the_bundled_model() -> None:
    """configs/default_model_text_gpu.toml: the paper's text recipe on the whole model (the
    frozen-encoder fine-tunes cannot learn it: scripts/text_grounding_probe.py), from the
    bundled weights, with the architecture of the stages that made them."""
    text = load_config(REPO / "configs" / "default_model_text_gpu.toml")
    stage = load_config(REPO / "configs" / "default_model_gpu_continue.toml")
    assert not text.optim.freeze_image_encoder and text.optim.train_only == ()
    assert text.prompts.text_prob > 0 and text.optim.text_lr_scale > 1
    assert text.model == stage.model
    assert text.run.init_checkpoint == "src/anyseg/weights/default.safetensors"
    assert text.run.out_dir != stage.run.out_dir
