"""Optional dependencies of the export package, imported only where they are needed.

``onnx`` and ``onnxruntime`` are not required by the rest of anyseg; a missing one is reported
with the install command instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from anyseg.errors import AnysegError

INSTALL_HINT = "pip install anyseg[onnx]"


class MissingDependencyError(AnysegError, ImportError):
    """An optional package (onnx, onnxruntime) is not installed.

    Both an ``ImportError`` (for code that probes optional features) and an ``AnysegError``
    (so the CLI prints it as a one-line error).
    """


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``"onnxruntime"``) or raise :class:`MissingDependencyError`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"ONNX export needs the optional package {top!r}, which is not installed "
            f"({exc}); install it with: {INSTALL_HINT}"
        ) from None
