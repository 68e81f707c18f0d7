"""The data engine's annotation tool: an HTTP service around one SAM predictor and a web page.

``anyseg serve IMAGE_DIR`` runs it; :func:`create_app` builds the FastAPI app from a
:class:`ServerConfig` (nothing is created at import time); :class:`AnnotationService` is the
model + cache + storage core, usable without HTTP; :func:`export_project` writes the accepted
masks as SA-1B per-image JSON and/or COCO instances JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anyseg.server.config import PrefillConfig, ServerConfig

if TYPE_CHECKING:
    from anyseg.server.app import create_app
    from anyseg.server.export import export_project
    from anyseg.server.service import AnnotationService

__all__ = ["AnnotationService", "PrefillConfig", "ServerConfig", "create_app", "export_project"]


def __getattr__(name: str) -> Any:
    # Lazy: importing anyseg.server must not pull in torch or FastAPI.
    if name == "create_app":
        from anyseg.server.app import create_app

        return create_app
    if name == "AnnotationService":
        from anyseg.server.service import AnnotationService

        return AnnotationService
    if name == "export_project":
        from anyseg.server.export import export_project

        return export_project
    raise AttributeError(f"module 'anyseg.server' has no attribute {name!r}")
