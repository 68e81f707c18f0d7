"""CLIP evaluation: zero-shot attribute accuracy, unique-referent retrieval, report and plot.

A stub "colour oracle" CLIP (it embeds a crop by the palette name of its masked pixels' mean
colour, and a text by the colour word it contains) has a known answer: near-perfect colour
accuracy, chance on fill and shape, and retrieval above chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anyseg.data.attributed import read_attributed_images
from anyseg.data.attributes import COLOURS, name_colour
from anyseg.data.captions import nameable
from anyseg.data.synthetic import SynthConfig, write_dataset
from anyseg.evaluation.clip import ClipEvalConfig, evaluate_clip, write_report


class ColourOracle:
    image_size = 32
    embed_dim = len(COLOURS) + 1
    source, sha256, layout = "(stub)", "0" * 64, "stub"

    def _onehot(self, index: int | None) -> torch.Tensor:
        v = torch.full((self.embed_dim,), 1e-3)
        v[-1 if index is None else index] = 1.0
        return v

    def encode_image(self, crops, masks=None, normalize=False) -> torch.Tensor:
        out = []
        for crop, mask in zip(crops, masks, strict=True):
            mean = crop[mask].reshape(-1, 3).mean(0) if mask.any() else crop.reshape(-1, 3).mean(0)
            out.append(self._onehot(COLOURS.index(name_colour(mean)[0])))
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    def encode_text(self, texts, normalize=False) -> torch.Tensor:
        rows = []
        for t in texts:
            found = [c for c in COLOURS if c in t.split()]
            row = self._onehot(COLOURS.index(found[0]) if found else None)
            if not found and "solid" in t.split():
                # Among prompts without a colour word, the one that says "solid" wins by a clear
                # margin (a smaller last entry scores higher after normalisation): exact ties
                # would leave the answer to each CPU's float rounding.
                row[-1] = 0.9
            rows.append(row)
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clipeval") / "val"
    write_dataset(
        root,
        12,
        seed=11,
        config=SynthConfig(height=160, width=160, max_objects=20),
        workers=1,
        progress=False,
    )
    return root, read_attributed_images(root)


def test_colour_oracle_scores(images) -> None:
    _, imgs = images
    cfg = ClipEvalConfig(min_mask_area=100)
    result = evaluate_clip(ColourOracle(), imgs, cfg)  # type: ignore[arg-type]
    acc, counts = result.attribute_accuracy, result.attribute_counts
    assert counts["colour"] > 30 and counts["fill"] >= counts["colour"]
    assert acc["colour"] > 0.8, acc
    # Fill and shape prompts hold no colour word: the stub answers "solid" for every fill.
    # (Fill is scored where the pattern shows: solid, or two colours far enough apart.)
    shown = [
        nameable(m.attributes, cfg.naming).fill for a in imgs for m in a.masks if m.area >= 100
    ]
    fills = [f for f in shown if f is not None]
    assert acc["fill"] == pytest.approx(fills.count("solid") / len(fills))
    for attribute, matrix in result.confusion.items():
        assert np.array(matrix).sum() == counts[attribute]
        by_size = [result.by_size[size][attribute] for size in ("small", "medium", "large")]
        assert sum(g["count"] for g in by_size) == counts[attribute]
        total = sum(g["accuracy"] * g["count"] for g in by_size)
        assert total == pytest.approx(result.attribute_accuracy[attribute] * counts[attribute])
    assert result.retrieval_count > 20
    assert result.retrieval_r1 > result.retrieval_chance + 0.1
    assert 0 < result.retrieval_chance < 0.5
    assert set(result.retrieval_by_form) == {"full", "short", "relational"}


def test_report_and_plot(images, tmp_path: Path) -> None:
    root, imgs = images
    cfg = ClipEvalConfig(min_mask_area=100, forms=("full",), max_images=6)
    clip = ColourOracle()
    result = evaluate_clip(clip, imgs, cfg)  # type: ignore[arg-type]
    assert result.images == 6
    path = write_report(result, tmp_path / "out", clip, str(root), cfg)  # type: ignore[arg-type]
    report = json.loads(path.read_text())
    assert set(report["attribute_accuracy"]) == {"colour", "fill", "shape"}
    assert report["retrieval_r1"] == result.retrieval_r1
    assert report["retrieval"]["by_form"]["full"]["count"] == result.retrieval_count
    assert report["clip"]["sha256"] == "0" * 64 and report["config"]["forms"] == ["full"]
    assert report["confusion"]["colour"]["values"] == list(COLOURS)
    assert (tmp_path / "out" / "clip_eval.png").stat().st_size > 5000
