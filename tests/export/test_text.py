"""ONNX export of a model with a text path: the optional ``text_embeddings`` input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anyseg.checkpoint import save
from anyseg.cli.main import main
from anyseg.errors import InvalidInputError
from anyseg.export import OnnxPredictor
from anyseg.predictor import SamPredictor

from .._text import CLIP_WIDTH, make_text_model


def test_a_text_model_exports_with_a_text_input_at_parity(tmp_path: Path) -> None:
    model = make_text_model(clip_sha256="a" * 64)
    ckpt = save(model, tmp_path / "text.safetensors")
    out = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(ckpt), "-o", str(out), "--threads", "1"]) == 0
    manifest = json.loads((out / "export.json").read_text())
    inputs = manifest["files"]["decoder"]["inputs"]
    assert inputs[-1]["name"] == "text_embeddings"
    assert inputs[-1]["shape"] == [1, "num_text", CLIP_WIDTH]
    assert manifest["parity"]["passed"] is True
    cases = {c["name"] for c in manifest["parity"]["decoder"]["cases"]}
    assert {"text_multimask", "text_point", "point_multimask"} <= cases

    onnx = OnnxPredictor(out / "decoder.onnx", threads=1)
    ref = SamPredictor(model)
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    ref.set_image(image)
    onnx.set_embedding(ref.features.numpy(), (50, 70))
    emb = np.random.default_rng(2).normal(size=CLIP_WIDTH).astype(np.float32)
    emb /= np.linalg.norm(emb)
    for kwargs in ({"text_embedding": emb}, {"point_coords": [[20, 30]], "point_labels": [1]}):
        got = onnx.predict(return_logits=True, **kwargs)
        want = ref.predict(return_logits=True, **kwargs)
        np.testing.assert_allclose(got[2], want[2], atol=1e-3)
        np.testing.assert_allclose(got[1], want[1], atol=1e-3)


def test_text_to_a_graph_without_a_text_path(exported, test_model) -> None:
    onnx = OnnxPredictor(exported.decoder, threads=1)
    onnx.set_embedding(np.zeros(onnx.embedding_shape, np.float32), (40, 40))
    with pytest.raises(InvalidInputError, match="no text path"):
        onnx.predict(text_embedding=np.zeros(CLIP_WIDTH, np.float32))
