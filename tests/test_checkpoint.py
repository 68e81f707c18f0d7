"""Checkpoint loading: config from tensor shapes, formats, and the errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anyseg import checkpoint as ck
from anyseg.config import PRESETS
from anyseg.errors import CheckpointError
from anyseg.modeling import Sam

from .conftest import make_test_model


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "tiny", "test"])
def test_config_is_recovered_from_tensor_shapes(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory for vit_h
        model = Sam(PRESETS[name])
    assert ck.infer_config(model.state_dict()) == PRESETS[name]


def test_official_key_names(shared_fixtures: Path) -> None:
    sd, _ = ck.read_state_dict(shared_fixtures / "tiny_sam.pth")
    with torch.device("meta"):
        model = Sam(PRESETS["tiny"])
    assert set(model.state_dict()) == set(sd)
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in sd
    assert "pixel_mean" not in sd


def test_fixture_checkpoint_loads_strictly(shared_fixtures: Path) -> None:
    model = ck.load(shared_fixtures / "tiny_sam.pth")
    assert model.config == PRESETS["tiny"]
    sd = torch.load(shared_fixtures / "tiny_sam.pth", weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    model = make_test_model()
    path = ck.save(model, tmp_path / f"m{suffix}")
    loaded = ck.load(path)
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temp files left


def test_half_precision_safetensors(tmp_path: Path) -> None:
    model = make_test_model()
    path = ck.save(model, tmp_path / "h.safetensors", half=True)
    sd, meta = ck.read_state_dict(path)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    assert ck.CONFIG_METADATA_KEY in meta
    loaded = ck.load(path)
    w = loaded.mask_decoder.iou_token.weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, model.mask_decoder.iou_token.weight, atol=1e-3, rtol=1e-3)


def test_training_checkpoint_with_model_entry(tmp_path: Path) -> None:
    model = make_test_model()
    torch.save({"model": model.state_dict(), "step": 3}, tmp_path / "train.pt")
    assert ck.load(tmp_path / "train.pt").config == model.config


def test_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        ck.load(bad)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        ck.load(bad_st)
    with pytest.raises(CheckpointError, match="not found"):
        ck.load(tmp_path / "missing.pth")


def test_not_a_sam_checkpoint(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"not a SAM checkpoint.*fc\.weight"):
        ck.load(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="state dict"):
        ck.load(tmp_path / "list.pth")


def test_missing_unexpected_and_wrong_shapes_are_named(tmp_path: Path) -> None:
    model = make_test_model()
    sd = dict(model.state_dict())
    del sd["mask_decoder.iou_token.weight"]
    sd["mask_decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "m.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        ck.load(path, config=model.config)
    assert "missing keys [mask_decoder.iou_token.weight]" in str(err.value)
    assert "unexpected keys [mask_decoder.extra.weight]" in str(err.value)
    sd = dict(model.state_dict())
    sd["mask_decoder.mask_tokens.weight"] = torch.zeros(5, 32)
    torch.save(sd, path)
    with pytest.raises(
        CheckpointError, match=r"mask_decoder\.mask_tokens\.weight: checkpoint \(5, 32\)"
    ):
        ck.load(path, config=model.config)


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="extension"):
        ck.save(make_test_model(), tmp_path / "m.bin")


def test_load_model_without_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ck, "DEFAULT_WEIGHTS", tmp_path / "nothing.safetensors")
    assert not ck.default_model_available()
    with pytest.raises(CheckpointError, match="no default model is bundled"):
        ck.load_model(None)


def test_a_pickled_object_is_refused_without_advice_to_run_its_code(tmp_path: Path) -> None:
    """A checkpoint that pickles more than tensors is refused, and the message says anyseg never
    runs code from checkpoints (not torch's advice to pass weights_only=False)."""
    import argparse

    path = tmp_path / "pickled.pth"
    torch.save({"options": argparse.Namespace(lr=1.0)}, path)  # a class: loading it runs code
    with pytest.raises(CheckpointError, match="never runs code") as info:
        ck.load(path)
    assert "weights_only" not in str(info.value)
    from anyseg.training.state import load_training_checkpoint

    with pytest.raises(CheckpointError, match="never runs code"):
        load_training_checkpoint(path)


def test_text_path_width_from_shapes_and_clip_record(tmp_path: Path) -> None:
    from ._text import CLIP_WIDTH, make_text_model, text_config

    model = make_text_model(clip_sha256="c" * 64)
    with torch.device("meta"):
        assert ck.infer_config(Sam(text_config()).state_dict()) == text_config()
    # .pth: the architecture from the tensors (the CLIP width from the MLP's first layer).
    bare = ck.load(ck.save(model, tmp_path / "m.pth"))
    assert bare.config.prompt_encoder.text_embed_dim == CLIP_WIDTH and bare.text_clip is None
    # .safetensors: the CLIP's SHA-256 and width ride along in the metadata.
    path = ck.save(model, tmp_path / "m.safetensors")
    _, meta = ck.read_state_dict(path)
    assert json.loads(meta[ck.TEXT_CLIP_METADATA_KEY])["sha256"] == "c" * 64
    loaded = ck.load(path)
    assert loaded.text_clip == model.text_clip and loaded.has_text
    # Official checkpoints have no text keys and still load strictly; a text model's file into
    # a model without the path names the extra keys.
    assert not ck.load(ck.save(make_test_model(), tmp_path / "o.pth")).has_text
    with pytest.raises(CheckpointError, match=r"unexpected keys.*text_embed"):
        ck.load(tmp_path / "m.pth", config=PRESETS["test"])


def test_a_clip_record_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from ._text import make_text_model

    model = make_text_model()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    bad = {ck.TEXT_CLIP_METADATA_KEY: json.dumps({"sha256": "0" * 64, "embed_dim": 7})}
    save_file(sd, str(tmp_path / "w.safetensors"), metadata=bad)
    with pytest.raises(CheckpointError, match=r"width 7.*24-wide"):
        ck.load(tmp_path / "w.safetensors")
