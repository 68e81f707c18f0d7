"""How fast mode runs on this machine: the precision it picks, and the model copies it runs.

Exact mode runs the model in float32 (the original implementation's numbers). Fast mode runs
the image encoder, and where it pays the mask decoder, in a cheaper arithmetic, chosen by what
this machine's processor does well rather than by what it claims to support:

- ``bfloat16``: a bfloat16 copy of the encoder and decoder. Only where bfloat16 matrix products
  are clearly faster than float32: CUDA devices that support it, and CPUs whose bfloat16 GEMM
  beats float32 in a short timed probe (AVX-512 BF16 or AMX). Some CPUs report bfloat16 support
  (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) yet multiply bfloat16 more slowly than
  float32; on others (AVX2 only) bfloat16 is emulated and hundreds of times slower.
- ``int8``: the encoder's linear layers dynamically quantized to int8 (weights per output
  channel, activations per call); attention, norms and the decoder stay float32. Where int8
  matrix products (fbgemm/oneDNN, VNNI) beat float32 in the probe.
- ``float32``: neither pays; fast mode computes what exact mode computes (the automatic
  generator still applies its low-resolution pre-filter).

The probe runs once per process and device type (:func:`choose_fast_path`, about 0.3 s); its
verdict, with the CPU's capability, is :meth:`FastPath.describe`, which the commands print.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from anyseg.modeling import ImageEncoding, Sam
from anyseg.modeling.mask_decoder import MaskDecoder

FastKind = Literal["bfloat16", "int8", "float32"]

#: A cheaper arithmetic is used only when its probe GEMM is at least this much faster.
MIN_SPEEDUP = 1.25


@dataclass(frozen=True)
class FastPath:
    """What fast mode does on a device, and why.

    Attributes:
        kind: ``bfloat16``, ``int8`` or ``float32`` (see the module docstring).
        reason: the evidence: the CPU's capability and the probe's speed ratios.
    """

    kind: FastKind
    reason: str

    def describe(self) -> str:
        """One line for logs and command output."""
        what = {
            "bfloat16": "bfloat16 encoder and decoder",
            "int8": "int8 linear layers in the encoder, float32 attention and decoder",
            "float32": "float32 (no cheaper arithmetic pays here)",
        }[self.kind]
        return f"fast mode: {what}; {self.reason}"


def cpu_capability() -> str:
    """The CPU's vector capability as torch reports it, and its bfloat16 support, in words
    (e.g. ``"AVX512, oneDNN bfloat16 supported"``)."""
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = "supported" if mkldnn_bf16_supported() else "not supported"
    return f"{capability}, oneDNN bfloat16 {bf16}"


def mkldnn_bf16_supported() -> bool:
    """Whether oneDNN has bfloat16 kernels on this CPU (elsewhere bfloat16 is emulated)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # builds without oneDNN
        return False


def _int8_supported() -> bool:
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


@functools.cache
def choose_fast_path(device_type: str) -> FastPath:
    """The fast path for ``device_type`` ("cpu", "cuda", ...), decided once per process."""
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return FastPath("bfloat16", "CUDA device with bfloat16")
        return FastPath("float32", "this CUDA device has no bfloat16")
    if device_type != "cpu":
        return FastPath("float32", f"no fast path for {device_type} devices")
    capability = cpu_capability()
    speeds = probe_speedups()
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in speeds.items())
    evidence = f"CPU capability {capability}; GEMM speed vs float32: {ratios or 'not probed'}"
    if speeds.get("bfloat16", 0.0) >= MIN_SPEEDUP:
        return FastPath("bfloat16", evidence)
    if speeds.get("int8", 0.0) >= MIN_SPEEDUP:
        return FastPath("int8", evidence)
    return FastPath("float32", evidence)


def probe_speedups(repeats: int = 5) -> dict[str, float]:
    """Time a linear layer of the encoder's shape (1024 tokens, 768 -> 768) in float32 and in
    each cheaper arithmetic this CPU offers; returns each one's speed relative to float32.

    Each of ``repeats`` rounds times every candidate back to back and takes its ratio to that
    round's float32 time; the result is the median ratio over the rounds. Background load on a
    shared CPU then moves both sides of a ratio alike, and one disturbed round does not decide
    (a best-of-rounds estimate read int8 at 1.13x once on a CPU where it is 1.4x-1.7x).
    """
    torch.manual_seed(0)
    x = torch.randn(1024, 768)
    layer = nn.Linear(768, 768).eval()
    candidates: dict[str, Callable[[], object]] = {"float32": lambda: layer(x)}
    if mkldnn_bf16_supported():
        x16, layer16 = x.bfloat16(), copy.deepcopy(layer).bfloat16()
        candidates["bfloat16"] = lambda: layer16(x16)
    if _int8_supported():
        quantized = quantize_linear_layers(nn.Sequential(layer))
        candidates["int8"] = lambda: quantized(x)
    ratios: dict[str, list[float]] = {name: [] for name in candidates if name != "float32"}
    with torch.inference_mode():
        for fn in candidates.values():  # warm-up (weight packing, kernel selection)
            fn()
        for _ in range(repeats):
            seconds = {}
            for name, fn in candidates.items():
                start = time.perf_counter()
                for _ in range(4):
                    fn()
                seconds[name] = time.perf_counter() - start
            for name in ratios:
                ratios[name].append(seconds["float32"] / seconds[name])
    return {name: statistics.median(r) for name, r in ratios.items()}


def quantize_linear_layers(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` dynamically quantized to int8 (weights per
    output channel; activations quantized per call). Float32 in, float32 out."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            copy.deepcopy(module), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


class FastModel:
    """The copies of a model's parts that fast mode runs (the model itself is not changed).

    Attributes:
        path: the :class:`FastPath` taken.
        encoder: the image encoder to run (a bfloat16 or int8 copy, or the model's own).
        decoder: the mask decoder to run (a bfloat16 copy, or the model's own).
    """

    def __init__(self, model: Sam, path: FastPath) -> None:
        self.model = model
        self.path = path
        encoder: nn.Module = model.image_encoder
        decoder: MaskDecoder = model.mask_decoder
        if path.kind == "bfloat16":
            encoder = copy.deepcopy(model.image_encoder).to(torch.bfloat16)
            decoder = copy.deepcopy(model.mask_decoder).to(torch.bfloat16)
        elif path.kind == "int8":
            encoder = quantize_linear_layers(model.image_encoder)
        self.encoder = encoder
        self.decoder = decoder

    @property
    def dtype(self) -> torch.dtype:
        """The encoder's input dtype."""
        return torch.bfloat16 if self.path.kind == "bfloat16" else torch.float32

    def encode(self, images: torch.Tensor) -> ImageEncoding:
        """:meth:`Sam.encode` with the fast encoder: (B, 3, S, S) preprocessed float32 images
        -> a float32 encoding (SAM-HQ's fusion runs in float32 with the model's decoder)."""
        x = images.to(self.dtype)
        early = None
        if self.model.is_hq:
            embedding, early = self.encoder.forward_with_early(x)  # type: ignore[operator]
            early = early.float()
        else:
            embedding = self.encoder(x)
        embedding = embedding.float()
        return ImageEncoding(embedding, self.model.hq_features(embedding, early))
