"""One export of the "test" model through the CLI, shared by the export tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# onnx and onnxruntime come with `make setup` (the onnx extra): missing, the export tests fail.
import onnx  # noqa: F401  (imported here so a missing package is one clear error)
import onnxruntime  # noqa: F401
import pytest
import torch

# Parity is measured on one thread: the tests must not depend on (or fight over) the CPU count.
ORT_THREADS = 1


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """PyTorch on one thread inside the block; the previous count is restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@dataclass(frozen=True)
class Exported:
    """What ``anyseg export --encoder --quantize`` wrote for the test checkpoint."""

    out_dir: Path
    checkpoint: Path
    stdout: str

    @property
    def decoder(self) -> Path:
        return self.out_dir / "decoder.onnx"

    @property
    def encoder(self) -> Path:
        return self.out_dir / "encoder.onnx"

    @property
    def decoder_int8(self) -> Path:
        return self.out_dir / "decoder_int8.onnx"


@pytest.fixture(scope="session")
def exported(test_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The test model exported with encoder and int8 decoder (the CLI path, run once)."""
    import io

    from anyseg.cli.main import main

    out = tmp_path_factory.mktemp("onnx") / "export"
    buf = io.StringIO()
    with one_torch_thread(), contextlib.redirect_stdout(buf):
        code = main(
            [
                "export",
                "--checkpoint",
                str(test_checkpoint),
                "-o",
                str(out),
                "--encoder",
                "--quantize",
                "--threads",
                str(ORT_THREADS),
            ]
        )
    assert code == 0, buf.getvalue()
    return Exported(out, test_checkpoint, buf.getvalue())
