"""MobileSAM, SAM-HQ and light HQ-SAM: parity with each family's own reference code.

The fixtures in ``tests/fixtures/families`` were made by ``scripts/make_family_fixtures.py`` with
ChaoningZhang/MobileSAM and SysCV/sam-hq (commits in the README there): small random models in
each family's own file layout, and what the references' predictors gave for them. anyseg loads
the files by shape inference alone and must give the same embeddings, logits (float32, 1e-4),
IoUs and thresholded masks.

With ``ANYSEG_MOBILESAM_REFERENCE`` / ``ANYSEG_SAMHQ_REFERENCE`` naming checkouts, the released
architectures (MobileSAM's vit_t, light HQ-SAM, SAM-HQ on the fixtures' tiny ViT) are built by
the references with fresh random weights and compared the same way, in this process.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from anyseg.checkpoint import load
from anyseg.io import read_image
from anyseg.predictor import SamPredictor

from .test_predictor import assert_masks_match

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "families"
BENCH = Path(__file__).resolve().parents[1] / "bench" / "_family_reference.py"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
FAMILIES = sorted(MANIFEST["families"])
INPUTS = ("point_coords", "point_labels", "box", "mask_input", "multimask_output", "hq_token_only")


def case_inputs(ref: Any, case: str) -> dict[str, Any]:
    """The predict() keyword arguments of ``case``, as the reference got them."""
    kwargs: dict[str, Any] = {}
    for name in INPUTS:
        key = f"{case}.{name}"
        if key in ref:
            value = ref[key]
            kwargs[name] = (
                bool(value)
                if value.dtype == bool
                else value.astype(np.float32 if name == "mask_input" else value.dtype)
            )
    return kwargs


def compare_case(
    predictor: SamPredictor, ref: Any, case: str, scaled: bool = False
) -> dict[str, float]:
    """Assert one case matches within 1e-4 (``scaled``: 1e-4 per 10 units of the largest
    logit, float32's resolution growing with the magnitude); returns the max abs differences."""
    kwargs = case_inputs(ref, case)
    masks, iou, low_res = predictor.predict(**kwargs)
    logits, _, _ = predictor.predict(return_logits=True, **kwargs)
    expected_low = ref[f"{case}.low_res_logits"]
    step = low_res.shape[-1] // expected_low.shape[-1]
    diffs = {
        "logits": float(np.abs(logits - ref[f"{case}.logits"]).max()),
        "low_res": float(np.abs(low_res[..., ::step, ::step] - expected_low).max()),
        "iou": float(np.abs(iou - ref[f"{case}.iou_predictions"]).max()),
    }
    scale = float(np.abs(logits).max())
    atol = 1e-4 * max(1.0, scale / 10) if scaled else 1e-4
    assert max(diffs.values()) <= atol, (case, diffs, scale)
    assert_masks_match(masks, ref[f"{case}.masks"])
    return diffs


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> tuple[str, SamPredictor, Any]:
    name = request.param
    info = MANIFEST["families"][name]
    model = load(FIXTURES / info["weights"]["file"])  # no config given: shapes only
    predictor = SamPredictor(model)
    predictor.set_image(read_image(FIXTURES / MANIFEST["image"]["file"]))
    return name, predictor, np.load(FIXTURES / f"ref_{name}.npz")


def test_family_is_detected_from_the_tensors(family) -> None:
    name, predictor, _ = family
    assert predictor.model.config.family == name
    assert (
        predictor.model.config.hq is not None if "hq" in name else predictor.model.config.hq is None
    )


def test_embedding_parity(family) -> None:
    _, predictor, ref = family
    embedding = predictor.features.numpy()
    np.testing.assert_allclose(embedding[..., ::2, ::2], ref["embedding_sub2"], atol=1e-4, rtol=0)
    totals = np.array([embedding.sum(dtype=np.float64), np.abs(embedding).sum(dtype=np.float64)])
    np.testing.assert_allclose(totals, ref["embedding_sum"], rtol=1e-5)


@pytest.mark.parametrize("case", ["pt1_mm", "pt3_single", "box", "box_neg", "maskin_pt2"])
def test_predict_parity(family, case: str) -> None:
    _, predictor, ref = family
    compare_case(predictor, ref, case)


def test_hq_token_only_parity(family) -> None:
    name, predictor, ref = family
    if "hq" not in name:
        assert "box_hqonly.masks" not in ref
        return
    compare_case(predictor, ref, "box_hqonly")
    # the option really changes the result: the HQ mask alone is not SAM's mask plus it
    assert not np.array_equal(ref["box_hqonly.logits"], ref["box.logits"])


# ------------------------------------------------------ against a local reference checkout
@pytest.fixture()
def isolated_modules():
    """Forget the stand-ins and the reference packages after the test."""
    before, path = set(sys.modules), list(sys.path)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - before:
        if name.split(".")[0] in (
            "torchvision",
            "timm",
            "mobile_sam",
            "segment_anything",
            "_reference",
            "_family_reference",
        ):
            del sys.modules[name]


def family_reference() -> Any:
    spec = importlib.util.spec_from_file_location("_family_reference", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_released_architecture_against_reference(
    name: str, tmp_path: Path, isolated_modules: None
) -> None:
    helper = family_reference()
    spec = helper.RELEASED_SPECS[name]
    module = helper.import_reference(spec.repo)
    if module is None:
        pytest.skip(f"{helper.ENV[spec.repo]} does not name a {spec.repo} checkout")
    torch.manual_seed(0)
    reference = helper.build_reference(module, spec)
    helper.perturb(reference, seed=1)
    reference = helper.finish(reference)
    weights = tmp_path / "weights.pth"
    torch.save(helper.saved_state_dict(reference), weights)
    ours = SamPredictor(load(weights))
    assert ours.model.config.family == name
    theirs = module.SamPredictor(reference)
    image = read_image(FIXTURES / MANIFEST["image"]["file"])
    with torch.no_grad():
        theirs.set_image(image)
        expected = helper.run_cases(theirs, image.shape[:2], spec.hq)
    ours.set_image(image)
    np.testing.assert_allclose(ours.features.numpy(), theirs.features.numpy(), atol=1e-4, rtol=0)
    for case in sorted({k.split(".")[0] for k in expected}):
        compare_case(ours, expected, case, scaled=True)
