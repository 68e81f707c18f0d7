"""Dynamic int8 quantization of an exported decoder (onnxruntime.quantization).

Weights of MatMul/Gemm (and Conv) become 8-bit; activations are quantized on the fly. This is
an opt-in speed/size trade: its deviation from float32 is measured and reported, never assumed
(see :mod:`anyseg.export.parity`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from anyseg.errors import InvalidInputError
from anyseg.export._deps import require
from anyseg.export.onnx_io import prepare_output_dir

WeightType = Literal["quint8", "qint8"]


def quantize_decoder(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    weight_type: WeightType = "quint8",
    per_channel: bool = False,
) -> Path:
    """Write a dynamically int8-quantized copy of the ONNX model ``src`` to ``dst`` (atomically).

    The defaults are the original release's (unsigned 8-bit weights, per-tensor scales, no
    reduced range). The anyseg metadata of ``src`` is kept; ``anyseg.quantized`` records
    the weight type.
    """
    require("onnx")
    quantization = require("onnxruntime.quantization")
    src_p, dst_p = Path(src), Path(dst)
    if not src_p.is_file():
        raise InvalidInputError(f"ONNX model to quantize not found: {src_p}")
    types = {"quint8": quantization.QuantType.QUInt8, "qint8": quantization.QuantType.QInt8}
    if weight_type not in types:
        raise InvalidInputError(f"weight_type must be one of {sorted(types)}, got {weight_type!r}")
    prepare_output_dir(dst_p.parent)
    tmp_dir = Path(tempfile.mkdtemp(dir=dst_p.parent, prefix=f".{dst_p.name}."))
    try:
        tmp = tmp_dir / dst_p.name
        with warnings.catch_warnings(), _quiet_logging():
            warnings.filterwarnings("ignore")  # "please run pre-processing" advice
            quantization.quantize_dynamic(
                model_input=str(src_p),
                model_output=str(tmp),
                per_channel=per_channel,
                reduce_range=False,
                weight_type=types[weight_type],
            )
        _tag(tmp, weight_type)
        os.replace(tmp, dst_p)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dst_p


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Silence the root-logger advice onnxruntime.quantization prints on every call."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _tag(path: Path, weight_type: str) -> None:
    onnx = require("onnx")
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key = "anyseg.quantized"
    entry.value = f'"dynamic {weight_type}"'
    onnx.save(model, str(path))
