"""HTTP API and static page of the annotation tool (FastAPI), built by :func:`create_app`.

Endpoints (JSON unless noted; errors are ``{"error": {"code", "message"}}`` with a 4xx/5xx
status, codes in :mod:`anyseg.server.errors`; every request needs the access token when one is
set, see :mod:`anyseg.server.security`)::

    GET    /                                   the annotation page (static HTML/CSS/JS modules)
    GET    /api/info                           model, folders, author
    GET    /api/images                         images with their mask counts; files skipped,
                                               images changed since masks were drawn on them
    GET    /api/images/by-name/{file_name}     one image by its file name
    GET    /api/images/{id}                    one image
    GET    /api/images/{id}/file               the image bytes (upright, as the model sees it)
    GET    /api/images/{id}/embedding          {"state": memory|disk|computing|missing}
    POST   /api/images/{id}/embedding          compute or load it: {"source", "seconds"}
    POST   /api/images/{id}/predict            {points, labels, box, text, multimask, previous}
    GET    /api/images/{id}/masks              {"accepted", "proposals", "stale"}
    POST   /api/images/{id}/masks              accept a mask (header Idempotency-Key: retries)
    GET    /api/masks/{mask_id}                one mask
    PATCH  /api/masks/{mask_id}                re-edit (same fields as accepting)
    DELETE /api/masks/{mask_id}                delete
    POST   /api/images/{id}/prefill            automatic proposals for the image
    POST   /api/images/{id}/proposals/accept   {"ids": [...] | null (all)}
    POST   /api/images/{id}/proposals/reject   {"ids": [...] | null (all)}
    GET    /api/export?format=sa1b|coco|both   zip of the export (application/zip)

Request bodies: :mod:`anyseg.server.schemas`; routes: :mod:`anyseg.server.routes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from anyseg._version import __version__
from anyseg.errors import AnysegError
from anyseg.server.config import ServerConfig
from anyseg.server.errors import (
    CODE_OF_STATUS,
    INTERNAL_ERROR,
    INVALID_INPUT,
    INVALID_REQUEST,
    ApiError,
    error_body,
)
from anyseg.server.http import BodyLimitMiddleware, StrictJSONResponse
from anyseg.server.routes import ROUTERS
from anyseg.server.security import AccessGuardMiddleware, AccessPolicy

if TYPE_CHECKING:
    from anyseg.modeling import Sam
    from anyseg.server.service import AnnotationService

STATIC_DIR = Path(__file__).parent / "static"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return StrictJSONResponse(error_body(code, message), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes ``{"error": {"code", "message"}}`` with its status."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(AnysegError)
    async def _bad_input(_: Request, exc: AnysegError) -> JSONResponse:
        return _error(400, INVALID_INPUT, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Only path and query parameters reach here (bodies are parsed by json_body).
        parts = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return _error(400, INVALID_REQUEST, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_OF_STATUS.get(exc.status_code, INVALID_REQUEST)
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, INTERNAL_ERROR, f"internal error ({type(exc).__name__}): {exc}")


def create_app(
    config: ServerConfig | None = None,
    *,
    service: AnnotationService | None = None,
    model: Sam | None = None,
) -> FastAPI:
    """Build the annotation app around one :class:`AnnotationService`.

    Give either ``config`` (the service is created here, loading ``config.model.checkpoint`` or
    ``model``) or a ready ``service``. Nothing is created at import time. The access policy
    (token, allowed hosts) is ``app.state.access``; ``anyseg serve`` prints its URL.
    """
    if service is None:
        if config is None:
            raise ValueError("create_app needs a ServerConfig or an AnnotationService")
        from anyseg.server.service import AnnotationService

        service = AnnotationService(config, model=model)
    app = FastAPI(
        title="anyseg annotate",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=StrictJSONResponse,
    )
    app.state.service = service
    app.state.access = AccessPolicy.from_config(service.config)
    # Added last runs first: the access guard, then the body limit, then the routes.
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.config.max_body_bytes)
    app.add_middleware(AccessGuardMiddleware, policy=app.state.access)
    _install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app
