"""Every command with every checkpoint family: segment, auto, eval, serve, train, export on a
tiny random model of MobileSAM (TinyViT), SAM-HQ (ViT + HQ decoder) and light HQ-SAM (both),
and SAM itself in the Hugging Face layout."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyseg.checkpoint import load, save
from anyseg.cli.main import main
from anyseg.config import PRESETS
from anyseg.hf_layout import save_hf
from anyseg.modeling import Sam, build_sam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from _scenes import make_sa1b_dataset

FAMILIES = {
    "mobile_sam": "test_tinyvit",
    "sam_hq": "test_hq",
    "light_hq_sam": "test_hq_tinyvit",
    "sam_hf": "test",  # SAM in the Hugging Face SamModel layout
}
# Candidates per prompt for a multimask request: SAM-HQ answers with one mask.
MULTIMASK = {"mobile_sam": 3, "sam_hq": 1, "light_hq_sam": 1, "sam_hf": 3}


def family_model(preset: str) -> Sam:
    torch.manual_seed(0)
    model = build_sam(PRESETS[preset])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(family, checkpoint): .safetensors (config in the metadata: a 256 px TinyViT's input
    size leaves no trace in its tensors) or a Hugging Face folder."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    model = family_model(FAMILIES[name])
    if name == "sam_hf":
        return name, save_hf(model.state_dict(), model.config, folder / "hf")
    return name, save(model, folder / f"{name}.safetensors")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("img") / "pic.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_info_names_the_family(family, capsys) -> None:
    name, ckpt = family
    assert main(["info", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert f"family          {'sam' if name == 'sam_hf' else name} " in out
    assert ("TinyViT" in out) == ("mobile" in name or "light" in name)
    assert ("SAM-HQ " in out) == ("hq" in name)
    assert ("Hugging Face SamModel layout" in out) == (name == "sam_hf")


def test_segment(family, image_path: Path, tmp_path: Path) -> None:
    name, ckpt = family
    out = tmp_path / "out"
    args = ["segment", str(image_path), "--point", "20,10", "--multimask", "-o", str(out)]
    assert main([*args, "--checkpoint", str(ckpt)]) == 0
    result = json.loads((out / "pic.json").read_text())
    assert len(result["masks"]) == MULTIMASK[name]
    assert np.array(Image.open(out / result["masks"][0]["file"])).shape == (48, 64)


def test_auto(family, image_path: Path, tmp_path: Path) -> None:
    name, ckpt = family
    out = tmp_path / "auto"
    thresholds = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    for mode in ("exact", "fast"):
        args = ["auto", str(image_path), "-o", str(out / mode), "--points-per-side", "3"]
        assert main([*args, *thresholds, "--mode", mode, "--checkpoint", str(ckpt)]) == 0
        records = json.loads((out / mode / "pic.json").read_text())["annotations"]
        assert 1 <= len(records) <= 9 * MULTIMASK[name]


def test_generator_matches_the_predictor(family, image_path: Path) -> None:
    """Exact mode's records come from the shared-image decode; for every family they must be
    the masks and IoUs the predictor gives for the same points."""
    from anyseg.automatic import SamAutomaticMaskGenerator
    from anyseg.io import read_image
    from anyseg.predictor import SamPredictor

    name, ckpt = family
    model = load(ckpt)
    image = read_image(image_path)
    thresholds = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    records = SamAutomaticMaskGenerator(model, points_per_side=2, **thresholds).generate(image)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    expected = {}
    for x, y in ((16.0, 12.0), (48.0, 12.0), (16.0, 36.0), (48.0, 36.0)):
        masks, iou, _ = predictor.predict(np.array([[x, y]]), np.array([1]), multimask_output=True)
        for m, s in zip(masks, iou, strict=True):
            expected[(x, y, round(float(s), 4))] = m
    assert len(records) == len(expected) == 4 * MULTIMASK[name]
    for r in records:
        (x, y), score = r["point_coords"][0], round(r["predicted_iou"], 4)
        mask = r["segmentation"]  # (H, W) bool: output_mode "binary_mask"
        assert (mask != expected[(x, y, score)]).sum() <= 2


def test_eval(family, tmp_path: Path) -> None:
    _, ckpt = family
    data = make_sa1b_dataset(tmp_path / "data", num_images=1, h=48, w=64)
    out = tmp_path / "eval"
    args = ["eval", str(data), "--checkpoint", str(ckpt), "-o", str(out), "--points", "2"]
    protocols = ["--protocols", "point,box,interactive", "--max-masks-per-image", "2"]
    assert main([*args, *protocols, "--device", "cpu", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert {"point", "point_oracle", "box"} <= set(report["scores"])


def test_calibrate(family, image_path: Path, tmp_path: Path) -> None:
    """The recalibrated checkpoint keeps the family and every mask; only the IoU head's last
    layer moved."""
    name, ckpt = family
    data = make_sa1b_dataset(tmp_path / "data", num_images=1, h=48, w=64)
    out = tmp_path / "recal.safetensors"
    args = ["calibrate", str(data), "--checkpoint", str(ckpt), "-o", str(out), "--points", "2"]
    assert main([*args, "--max-masks-per-image", "2", "--device", "cpu", "--quiet"]) == 0
    before, after = load(ckpt), load(out)
    assert after.config.family == before.config.family
    moved = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    head = "mask_decoder.iou_prediction_head.layers"
    assert moved <= {f"{head}.{len(before.mask_decoder.iou_prediction_head.layers) - 1}.{p}"
                     for p in ("weight", "bias")}  # fmt: skip
    point = ["segment", str(image_path), "--point", "20,10", "--multimask"]
    for ckpt_i, folder in ((ckpt, "a"), (out, "b")):
        assert main([*point, "-o", str(tmp_path / folder), "--checkpoint", str(ckpt_i)]) == 0
    masks = [json.loads((tmp_path / f / "pic.json").read_text())["masks"] for f in "ab"]
    assert len(masks[0]) == len(masks[1]) == MULTIMASK[name]
    for a, b in zip(*masks, strict=True):
        pa, pb = (np.array(Image.open(tmp_path / f / m["file"])) for f, m in (("a", a), ("b", b)))
        assert np.array_equal(pa, pb)


@pytest.mark.slow
def test_train(family, tmp_path: Path) -> None:
    name, ckpt = family
    data = make_sa1b_dataset(tmp_path / "data", num_images=2)
    config = Path(__file__).resolve().parents[2] / "configs" / "test.toml"
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--data", str(data), "--out", str(out)]
    assert main([*args, "--steps", "2", "--init", str(ckpt), "--quiet"]) == 0
    trained, start = load(out / "model.safetensors"), load(ckpt)
    assert trained.config.family == start.config.family
    before = dict(start.named_parameters())
    changed = [k for k, p in trained.named_parameters() if not torch.equal(p, before[k])]
    assert any(k.startswith("image_encoder.") for k in changed)
    if "hq" in name:  # the HQ token and the fusion layers learn too
        assert any(k.startswith("mask_decoder.hf_") for k in changed)
        assert any(k.startswith("mask_decoder.compress_vit_feat") for k in changed)


def test_export(family, tmp_path: Path) -> None:
    name, ckpt = family
    out = tmp_path / "onnx"
    args = ["export", "--checkpoint", str(ckpt), "-o", str(out), "--encoder", "--threads", "1"]
    assert main(args) == 0
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["parity"]["passed"] is True
    inputs = [i["name"] for i in manifest["files"]["decoder"]["inputs"]]
    outputs = [o["name"] for o in manifest["files"]["encoder"]["outputs"]]
    assert ("hq_features" in inputs) == ("hq" in name)
    assert outputs == (
        ["image_embeddings", "hq_features"] if "hq" in name else ["image_embeddings"]
    )


def test_serve(family, tmp_path: Path) -> None:
    """The annotation service: click, accept, pre-fill; after a restart the embedding (with
    SAM-HQ's HQ features) comes from the disk cache and gives the same mask."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*")
        from fastapi.testclient import TestClient

    from anyseg.automatic import AmgConfig
    from anyseg.server.app import create_app
    from anyseg.server.config import PrefillConfig, ServerConfig
    from anyseg.server.service import AnnotationService

    name, ckpt = family
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / "a.png")
    amg = AmgConfig(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    prefill = PrefillConfig(amg=amg)
    config = ServerConfig(image_dir=images, project_dir=tmp_path / "p", prefill=prefill)
    answers: list[Any] = []
    for _ in range(2):  # the second service reads the embedding from disk
        service = AnnotationService(config, model=load(ckpt))
        try:
            with TestClient(create_app(service=service), base_url="http://127.0.0.1:8000") as c:
                image = c.get("/api/images").json()["images"][0]
                res = c.post(
                    f"/api/images/{image['id']}/predict", json={"points": [[30, 20]], "labels": [1]}
                )
                assert res.status_code == 200, res.text
                answers.append(res.json())
                if len(answers) == 1:
                    proposals = c.post(f"/api/images/{image['id']}/prefill")
                    assert proposals.status_code == 200, proposals.text
                    assert proposals.json()["proposals"]
        finally:
            service.close()
    first, second = answers
    assert len(first["candidates"]) == MULTIMASK[name]
    assert [c["segmentation"] for c in first["candidates"]] == [
        c["segmentation"] for c in second["candidates"]
    ]
