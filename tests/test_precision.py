"""Fast mode's choice of arithmetic: by what the CPU does well, said in words, never a trap."""

from __future__ import annotations

import pytest
import torch

from anyseg import precision
from anyseg.precision import FastModel, FastPath, choose_fast_path


@pytest.fixture(autouse=True)
def fresh_probe():
    """Each test decides anew (the verdict is cached per process)."""
    choose_fast_path.cache_clear()
    yield
    choose_fast_path.cache_clear()


def test_bfloat16_only_where_it_is_faster(monkeypatch) -> None:
    monkeypatch.setattr(precision, "probe_speedups", lambda: {"bfloat16": 2.0, "int8": 1.9})
    assert choose_fast_path("cpu").kind == "bfloat16"


def test_a_cpu_without_fast_bfloat16_takes_int8_and_says_so(monkeypatch) -> None:
    """An AVX2-only CPU: bfloat16 is emulated (hundreds of times slower); int8 pays."""
    monkeypatch.setattr(precision, "probe_speedups", lambda: {"bfloat16": 0.004, "int8": 1.8})
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX2, oneDNN bfloat16 not supported")
    path = choose_fast_path("cpu")
    assert path.kind == "int8"
    line = path.describe()
    assert "int8 linear layers" in line
    assert "AVX2" in line and "bfloat16 0.00x" in line and "int8 1.80x" in line


def test_nothing_pays_falls_back_to_float32(monkeypatch) -> None:
    monkeypatch.setattr(precision, "probe_speedups", lambda: {"bfloat16": 0.7, "int8": 1.1})
    path = choose_fast_path("cpu")
    assert path.kind == "float32" and "no cheaper arithmetic pays" in path.describe()


def test_the_probe_runs_once_per_process(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(precision, "probe_speedups", lambda: calls.append(1) or {"int8": 2.0})
    assert choose_fast_path("cpu") is choose_fast_path("cpu")
    assert len(calls) == 1


def test_the_real_probe_measures_each_candidate() -> None:
    speeds = precision.probe_speedups(repeats=1)
    assert set(speeds) <= {"bfloat16", "int8"}
    assert all(v > 0 for v in speeds.values())


def test_the_probe_takes_the_median_of_per_round_ratios(monkeypatch) -> None:
    """A round where float32 alone ran fast (the machine was quiet for it only) does not decide:
    rounds of (float32, int8) seconds (0.5, 0.5), (1.0, 0.5), (1.0, 0.5) give 2x, where a
    best-of-rounds estimate would give 1x and reject int8."""
    monkeypatch.setattr(precision, "mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(precision, "_int8_supported", lambda: True)
    durations = [0.5, 0.5, 1.0, 0.5, 1.0, 0.5]  # per timing, in the order the probe takes them
    clock = [0.0]
    stamps: list[float] = []
    for d in durations:
        stamps += [clock[0], clock[0] + d]
        clock[0] += d + 1.0

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return stamps.pop(0)

    monkeypatch.setattr(precision, "time", FakeTime)
    assert precision.probe_speedups(repeats=3) == {"int8": pytest.approx(2.0)}
    assert not stamps


@pytest.mark.parametrize("kind", ["bfloat16", "int8", "float32"])
def test_fast_models_encode_close_to_exact(test_model, kind: str) -> None:
    """Each path's encoding is float32 and near the exact one; the model is not changed."""
    before = {k: v.clone() for k, v in test_model.state_dict().items()}
    fast = FastModel(test_model, FastPath(kind, "test"))
    image = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        exact = test_model.encode(image).embedding
        got = fast.encode(image).embedding
    assert got.dtype == torch.float32 and got.shape == exact.shape
    rel = float((got - exact).norm() / exact.norm())
    assert rel < {"bfloat16": 0.05, "int8": 0.1, "float32": 1e-6}[kind]
    if kind == "int8":
        assert rel > 0  # really quantized
    for k, v in test_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert (fast.decoder is test_model.mask_decoder) == (kind != "bfloat16")
