"""The Hugging Face ``SamModel`` layout: names both ways, files, folders, shards, and parity
with ``transformers``' own ``SamModel`` on random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers  # in the dev extra

from anyseg import hf_layout
from anyseg.checkpoint import load, read_state_dict, save
from anyseg.cli.main import main
from anyseg.config import PRESETS
from anyseg.errors import CheckpointError
from anyseg.modeling import Sam, build_sam

from .conftest import make_test_model


def hf_model(seed: int = 0) -> transformers.SamModel:
    """A transformers SamModel with the "test" preset's architecture and perturbed weights."""
    config = transformers.SamConfig(**hf_layout.hf_config(PRESETS["test"]))
    torch.manual_seed(seed)
    model = transformers.SamModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def compare(ours: Sam, theirs: transformers.SamModel) -> dict[str, float]:
    """Max differences of embeddings, low-res masks and IoUs for a point and a box prompt."""
    gen = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, 256, 256, generator=gen)
    points = torch.tensor([[[[100.0, 60.0], [30.0, 200.0]]]])
    labels = torch.tensor([[[1, 0]]])
    boxes = torch.tensor([[[20.0, 30.0, 180.0, 220.0]]])
    diffs = {}
    with torch.no_grad():
        encoding = ours.encode(pixels)
        diffs["embedding"] = float(
            (theirs.get_image_embeddings(pixels) - encoding.embedding).abs().max()
        )
        for name, kwargs, prompt in (
            (
                "points",
                {"input_points": points, "input_labels": labels},
                {"points": (points[0], labels[0])},
            ),
            ("box", {"input_boxes": boxes}, {"boxes": boxes[0]}),
        ):
            out = theirs(pixel_values=pixels, multimask_output=True, **kwargs)
            sparse, dense = ours.prompt_encoder(
                masks=None, **{"points": None, "boxes": None, **prompt}
            )
            low_res, iou = ours.decode(encoding.embedding, sparse, dense, True)
            diffs[f"{name}.masks"] = float((out.pred_masks[0] - low_res).abs().max())
            diffs[f"{name}.iou"] = float((out.iou_scores[0] - iou).abs().max())
    return diffs


def test_names_round_trip_exactly() -> None:
    sd = make_test_model().state_dict()
    hf = hf_layout.from_official(sd)
    assert hf_layout.is_hf_layout(hf) and not hf_layout.is_hf_layout(sd)
    assert "mask_decoder.output_hypernetworks_mlps.0.proj_in.weight" in hf
    assert "vision_encoder.layers.1.attn.rel_pos_h" in hf
    back = hf_layout.to_official(hf)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_hf_names_are_transformers_names() -> None:
    ours = set(hf_layout.from_official(make_test_model().state_dict()))
    theirs = set(hf_model().state_dict())
    # transformers also lists the tied copy of the positional matrix
    assert theirs - ours == {"prompt_encoder.shared_embedding.positional_embedding"}
    assert ours <= theirs


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_loads_transformers_own_files_at_parity(tmp_path: Path, name: str) -> None:
    theirs = hf_model()
    theirs.save_pretrained(tmp_path / "hf")
    if name == "pytorch_model.bin":  # what transformers 4 wrote; 5 writes safetensors only
        (tmp_path / "hf" / "model.safetensors").unlink()
        torch.save(theirs.state_dict(), tmp_path / "hf" / name)  # with the tied copy
    for source in (tmp_path / "hf", tmp_path / "hf" / name):  # folder or file
        ours = load(source)
        assert ours.config == PRESETS["test"]
        diffs = compare(ours, theirs)
        assert max(diffs.values()) < 1e-4, diffs


def test_sharded_checkpoint(tmp_path: Path) -> None:
    theirs = hf_model()
    theirs.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    index = tmp_path / "hf" / "model.safetensors.index.json"
    assert index.is_file() and len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    sd, _ = read_state_dict(index)
    ours = load(tmp_path / "hf")
    assert len(sd) == len(theirs.state_dict()) - 1  # the tied copy is not saved
    assert max(compare(ours, theirs).values()) < 1e-4


def test_convert_to_hf_is_read_by_transformers(tmp_path: Path, capsys) -> None:
    model = make_test_model()
    save(model, tmp_path / "sam.pth")
    assert (
        main(["convert", str(tmp_path / "sam.pth"), "--to", "hf", "-o", str(tmp_path / "hf")]) == 0
    )
    theirs = transformers.SamModel.from_pretrained(str(tmp_path / "hf")).eval()
    assert max(compare(model, theirs).values()) < 1e-4
    out = tmp_path / "back.safetensors"
    assert main(["convert", str(tmp_path / "hf"), "--to", "official", "-o", str(out)]) == 0
    back = load(out)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    assert "official layout" in capsys.readouterr().out


def test_other_families_have_no_hf_layout(tmp_path: Path, capsys) -> None:
    for preset in ("test_tinyvit", "test_hq"):
        model = build_sam(PRESETS[preset])
        with pytest.raises(CheckpointError, match="ViT models only"):
            hf_layout.from_official(model.state_dict())
        save(model, tmp_path / f"{preset}.safetensors")
        code = main(
            [
                "convert",
                str(tmp_path / f"{preset}.safetensors"),
                "--to",
                "hf",
                "-o",
                str(tmp_path / preset),
            ]
        )
        assert code == 1 and "ViT models only" in capsys.readouterr().err


def test_bad_hf_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no model weights"):
        load(tmp_path / "empty")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text('{"weight_map": {"a": "model-00001-of-00002.safetensors"}}')
    with pytest.raises(CheckpointError, match="shard files missing"):
        load(index)
    from safetensors.torch import save_file

    sd = hf_layout.from_official(make_test_model().state_dict())
    sd["vision_encoder.mystery.weight"] = torch.zeros(1)
    save_file(sd, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected keys \[image_encoder\.mystery"):
        load(tmp_path / "odd.safetensors")


def test_tied_positional_copies_must_agree() -> None:
    sd = hf_layout.from_official(make_test_model().state_dict())
    sd["prompt_encoder.shared_embedding.positional_embedding"] = (
        sd["shared_image_embedding.positional_embedding"] + 1
    )
    with pytest.raises(CheckpointError, match="tied copy"):
        hf_layout.to_official(sd)
    sd.pop("shared_image_embedding.positional_embedding")  # only the tied copy: still loads
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in hf_layout.to_official(
        sd
    )
    np.testing.assert_equal(len(hf_layout.to_official(sd)), len(make_test_model().state_dict()))
