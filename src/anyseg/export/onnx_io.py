"""Writing ONNX files atomically with anyseg metadata, and reading that metadata back."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from anyseg.errors import InvalidInputError
from anyseg.export._deps import require

METADATA_PREFIX = "anyseg."


def prepare_output_dir(directory: str | os.PathLike[str]) -> Path:
    """Create ``directory`` (and parents) and check that files can be written into it."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise OSError(f"output path {d} exists and is not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create output folder {d}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=d, prefix=".anyseg-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"output folder {d} is not writable: {exc.strerror or exc}") from None
    return d


def _to_json(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return value if isinstance(value, str) else json.dumps(value)


def write_onnx_atomically(
    path: Path,
    writer: Callable[[Path], None],
    metadata: Mapping[str, Any],
    output_shapes: Mapping[str, Sequence[int | str]] | None = None,
) -> Path:
    """Run ``writer(tmp_path)`` in a temporary folder beside ``path``, add ``metadata`` to the
    model's ``metadata_props`` (values JSON-encoded unless they are strings), declare
    ``output_shapes`` (ints, or names of dynamic axes) on the graph outputs, and move the
    result (and any external-data files the exporter wrote) into place.

    Nothing is left at ``path`` if the export fails.
    """
    onnx = require("onnx")
    prepare_output_dir(path.parent)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tmp = tmp_dir / path.name
        writer(tmp)
        # Over 2 GB (vit_h's encoder) the exporter writes one external file per tensor beside
        # the model; those are gathered into a single ``<name>.data`` file.
        extra = [p for p in tmp_dir.iterdir() if p.name != path.name]
        model = onnx.load(str(tmp), load_external_data=bool(extra))
        existing = {p.key for p in model.metadata_props}
        for key, value in metadata.items():
            if key in existing:
                continue
            entry = model.metadata_props.add()
            entry.key = key
            entry.value = _to_json(value)
        _declare_output_shapes(model, output_shapes or {})
        if extra:
            for p in extra:
                p.unlink()
            onnx.save_model(
                model,
                str(tmp),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=external_data_name(path),
                size_threshold=1024,
            )
        else:
            onnx.save(model, str(tmp))
        for item in sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name):
            os.replace(item, path.parent / item.name)  # the .onnx file last
        stale = path.parent / external_data_name(path)
        if not extra and stale.is_file():
            stale.unlink()  # the weights of the large model this file replaced
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def external_data_name(path: Path) -> str:
    """Name of the weights file beside ``path`` when a model is too large for one file."""
    return f"{path.name}.data"


def _declare_output_shapes(model: Any, shapes: Mapping[str, Sequence[int | str]]) -> None:
    """Replace the exporter's inferred output shapes (e.g. ``Resizemasks_dim_0``) by the
    documented ones."""
    for output in model.graph.output:
        if output.name not in shapes:
            continue
        shape = output.type.tensor_type.shape
        del shape.dim[:]
        for d in shapes[output.name]:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``anyseg.*`` metadata of an ONNX file (JSON values decoded); {} for other files."""
    onnx = require("onnx")
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InvalidInputError(f"{p} is not a readable ONNX model ({exc})") from None
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            key = prop.key[len(METADATA_PREFIX) :]
            try:
                out[key] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[key] = prop.value
    return out
