"""Our decoder graph against one exported by the original release's ``SamOnnxModel``.

Runs only where the original checkout is available (``ANYSEG_REFERENCE``, as for
bench/bench_model.py) and the parity fixtures are present: both graphs get the fixture weights
and the same feeds, and ``OnnxPredictor`` must run the original's graph unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.checkpoint import load
from anyseg.export import OnnxPredictor, compare_predictors, default_cases, export_decoder

from .conftest import ORT_THREADS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "_reference.py"


@pytest.fixture()
def isolated_modules():
    """Forget the torchvision stand-in and the original package after the test."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("torchvision", "segment_anything", "_anyseg_bench_reference"):
            del sys.modules[name]


def reference_module():
    spec = importlib.util.spec_from_file_location("_anyseg_bench_reference", BENCH)
    assert spec is not None and spec.loader is not None, f"{BENCH} not found"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sam = module.import_reference()
    if sam is None:
        pytest.skip("ANYSEG_REFERENCE does not point at a segment-anything checkout")
    return module, sam


def test_graph_equals_the_original_export(
    shared_fixtures: Path, tmp_path: Path, isolated_modules: None
) -> None:
    helper, sam = reference_module()
    from segment_anything.utils.onnx import SamOnnxModel

    weights = shared_fixtures / "tiny_sam.pth"
    original = SamOnnxModel(helper.build_reference_sam(sam, "tiny", weights).eval(), False)
    ours = export_decoder(load(weights), tmp_path / "ours.onnx")
    names = [s.name for s in ours.input_specs()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            original,
            ours.example_inputs(),
            str(tmp_path / "original.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        )
    embedding = np.load(shared_fixtures / "ref_coffee_crop.npz")["embedding"]
    predictors = []
    for name in ("original.onnx", "ours.onnx"):
        pred = OnnxPredictor(tmp_path / name, threads=ORT_THREADS)  # no anyseg metadata needed
        pred.set_embedding(embedding, (300, 451))
        predictors.append(pred)
    report = compare_predictors(predictors[0], predictors[1], default_cases((300, 451)))
    # Measured: bit-identical on every case.
    assert report.max_abs_logits < 1e-5 and report.max_abs_iou < 1e-6, report.to_dict()
    assert report.mismatched_pixels == 0
