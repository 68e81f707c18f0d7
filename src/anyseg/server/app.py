"""HTTP API and static page of the annotation tool (FastAPI), built by :func:`create_app`.

Endpoints (JSON unless noted; errors are ``{"error": message}`` with a 4xx status)::

    GET    /                                   the annotation page (static HTML/CSS/JS modules)
    GET    /api/info                           model, folders, author
    GET    /api/images                         images with their accepted/proposal counts
    GET    /api/images/by-name/{file_name}     one image by its file name
    GET    /api/images/{id}                    one image
    GET    /api/images/{id}/file               the image bytes (upright)
    GET    /api/images/{id}/embedding          {"state": memory|disk|computing|missing}
    POST   /api/images/{id}/embedding          compute or load it: {"source", "seconds"}
    POST   /api/images/{id}/predict            {points, labels, box, multimask} -> candidates
    GET    /api/images/{id}/masks              {"accepted": [...], "proposals": [...]}
    POST   /api/images/{id}/masks              accept a mask {segmentation, prompts, label, ...}
    GET    /api/masks/{mask_id}                one mask
    PATCH  /api/masks/{mask_id}                re-edit {segmentation, prompts, label, ...}
    DELETE /api/masks/{mask_id}                delete
    POST   /api/images/{id}/prefill            automatic proposals for the image
    POST   /api/images/{id}/proposals/accept   {"ids": [...] | null (all)}
    POST   /api/images/{id}/proposals/reject   {"ids": [...] | null (all)}
    GET    /api/export?format=sa1b|coco|both   zip of the export (application/zip)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anyseg._version import __version__
from anyseg.errors import AnysegError
from anyseg.server.config import ServerConfig
from anyseg.server.images import browser_image
from anyseg.server.storage import NotFoundError

if TYPE_CHECKING:
    from anyseg.modeling import Sam
    from anyseg.server.service import AnnotationService

STATIC_DIR = Path(__file__).parent / "static"


class BadRequest(AnysegError):
    """A request body that is not the JSON the endpoint expects."""


class BodyLimitMiddleware:
    """Answers 413 to request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, {"error": "invalid Content-Length header"})
                return
            if too_big:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read at most max_bytes, then replay the body.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        await _send_json(send, 413, {"error": f"request body larger than {self.max_bytes} bytes"})


_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _host_name(netloc: str) -> str:
    """Host part of ``host[:port]`` / ``[v6]:port``, lower case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class OriginGuardMiddleware:
    """Keeps other web sites out of a server that listens on this machine only.

    - A change (POST/PUT/PATCH/DELETE) sent by a page of another origin is refused (403): the
      browser names the page's origin, and it must be this server's own.
    - When listening on loopback, a request whose Host is not a loopback name is refused (403),
      which defeats DNS rebinding (a foreign name resolving to 127.0.0.1).
    """

    def __init__(self, app: ASGIApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            host = headers.get(b"host", b"").decode("latin-1")
            if self.loopback_only and _host_name(host) not in _LOOPBACK_NAMES:
                await _send_json(send, 403, {"error": f"host {host!r} is not served here"})
                return
            origin = headers.get(b"origin")
            if scope["method"] in _UNSAFE_METHODS and origin is not None:
                origin_netloc = origin.decode("latin-1").split("://", 1)[-1].rstrip("/").lower()
                if origin_netloc != host.lower():
                    await _send_json(
                        send, 403, {"error": "requests from other web pages are not accepted"}
                    )
                    return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json_body(request: Request, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadRequest("this endpoint needs a JSON object body")
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _image_json(row: Any, state: str | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "file_name": row.file_name,
        "width": row.width,
        "height": row.height,
        "num_accepted": row.num_accepted,
        "num_proposals": row.num_proposals,
    }
    if state is not None:
        out["embedding"] = state
    return out


def create_app(
    config: ServerConfig | None = None,
    *,
    service: AnnotationService | None = None,
    model: Sam | None = None,
) -> FastAPI:
    """Build the annotation app around one :class:`AnnotationService`.

    Give either ``config`` (the service is created here, loading ``config.checkpoint`` or
    ``model``) or a ready ``service``. Nothing is created at import time.
    """
    if service is None:
        if config is None:
            raise ValueError("create_app needs a ServerConfig or an AnnotationService")
        from anyseg.server.service import AnnotationService

        service = AnnotationService(config, model=model)
    svc = service
    app = FastAPI(title="anyseg annotate", version=__version__, docs_url=None, redoc_url=None)
    app.state.service = svc
    app.add_middleware(BodyLimitMiddleware, max_bytes=svc.config.max_body_bytes)
    loopback = _host_name(svc.config.host) in _LOOPBACK_NAMES
    app.add_middleware(OriginGuardMiddleware, loopback_only=loopback)

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(AnysegError)
    async def _bad_input(_: Request, exc: AnysegError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"error": f"internal error ({type(exc).__name__}): {exc}"}, status_code=500
        )

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=400)

    # ---- page -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ---- images -----------------------------------------------------------------------------

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "image_dir": str(svc.image_dir),
            "project_dir": str(svc.project_dir),
            "author": svc.config.author,
            "model": {
                "name": svc.model_name,
                "fingerprint": svc.model_fingerprint,
                "img_size": int(svc.model.image_encoder.img_size),
            },
            "prefill": {"points_per_side": svc.config.prefill.points_per_side},
        }

    @app.get("/api/images")
    def images() -> dict[str, Any]:
        svc.rescan()
        return {"images": [_image_json(r) for r in svc.list_images()]}

    @app.get("/api/images/by-name/{file_name:path}")
    def image_by_name(file_name: str) -> dict[str, Any]:
        return _image_json(svc.image_by_name(file_name))

    @app.get("/api/images/{image_id}")
    def image(image_id: int) -> dict[str, Any]:
        return _image_json(svc.get_image(image_id), svc.embedding_state(image_id))

    @app.get("/api/images/{image_id}/file")
    def image_file(image_id: int) -> Response:
        data, media = browser_image(svc.image_path(image_id))
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=60"})

    @app.get("/api/images/{image_id}/embedding")
    def embedding_state(image_id: int) -> dict[str, Any]:
        return {"state": svc.embedding_state(image_id)}

    @app.post("/api/images/{image_id}/embedding")
    def embedding(image_id: int) -> dict[str, Any]:
        got = svc.ensure_embedding(image_id)
        return {"source": got.source, "seconds": got.seconds}

    # ---- prompts ----------------------------------------------------------------------------

    @app.post("/api/images/{image_id}/predict")
    async def predict(image_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        unknown = set(body) - {"points", "labels", "box", "multimask", "previous"}
        if unknown:
            raise BadRequest(f"unknown prompt fields {sorted(unknown)}")
        multimask = body.get("multimask")
        if multimask is not None and not isinstance(multimask, bool):
            raise BadRequest("multimask must be true, false or null")
        t0 = time.perf_counter()
        result = await run_in_threadpool(
            svc.predict,
            image_id,
            body.get("points"),
            body.get("labels"),
            body.get("box"),
            multimask,
            body.get("previous"),
        )
        out = result.to_json()
        out["timing"]["server_ms"] = 1000.0 * (time.perf_counter() - t0)
        return out

    # ---- masks ------------------------------------------------------------------------------

    @app.get("/api/images/{image_id}/masks")
    def masks(image_id: int) -> dict[str, Any]:
        accepted, proposals = svc.list_masks(image_id)
        return {
            "accepted": [m.to_json() for m in accepted],
            "proposals": [m.to_json() for m in proposals],
        }

    @app.post("/api/images/{image_id}/masks", status_code=201)
    async def accept(image_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        unknown = set(body) - {"segmentation", "prompts", "label", "predicted_iou", "author"}
        if unknown:
            raise BadRequest(f"unknown mask fields {sorted(unknown)}")
        if "segmentation" not in body:
            raise BadRequest("accepting a mask needs its segmentation (COCO RLE)")
        iou = body.get("predicted_iou")
        if iou is not None and (isinstance(iou, bool) or not isinstance(iou, (int, float))):
            raise BadRequest("predicted_iou must be a number or null")
        author = body.get("author")
        if author is not None and not isinstance(author, str):
            raise BadRequest("author must be a string")
        row = await run_in_threadpool(
            svc.accept_mask,
            image_id,
            body["segmentation"],
            body.get("prompts"),
            body.get("label"),
            iou,
            author,
        )
        return row.to_json()

    @app.get("/api/masks/{mask_id}")
    def get_mask(mask_id: int) -> dict[str, Any]:
        return svc.get_mask(mask_id).to_json()

    @app.patch("/api/masks/{mask_id}")
    async def update_mask(mask_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        return (await run_in_threadpool(svc.update_mask, mask_id, body)).to_json()

    @app.delete("/api/masks/{mask_id}")
    def delete_mask(mask_id: int) -> dict[str, Any]:
        svc.delete_mask(mask_id)
        return {"deleted": mask_id}

    # ---- pre-fill ---------------------------------------------------------------------------

    @app.post("/api/images/{image_id}/prefill")
    def prefill(image_id: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        rows = svc.prefill(image_id)
        return {"proposals": [m.to_json() for m in rows], "seconds": time.perf_counter() - t0}

    async def _ids(request: Request) -> Any:
        body = await _json_body(request, required=False)
        unknown = set(body) - {"ids"}
        if unknown:
            raise BadRequest(f"unknown fields {sorted(unknown)}: expected {{'ids': [...] | null}}")
        return body.get("ids")

    @app.post("/api/images/{image_id}/proposals/accept")
    async def accept_proposals(image_id: int, request: Request) -> dict[str, Any]:
        ids = await _ids(request)
        return {"accepted": await run_in_threadpool(svc.resolve_proposals, image_id, ids, True)}

    @app.post("/api/images/{image_id}/proposals/reject")
    async def reject_proposals(image_id: int, request: Request) -> dict[str, Any]:
        ids = await _ids(request)
        return {"rejected": await run_in_threadpool(svc.resolve_proposals, image_id, ids, False)}

    # ---- export -----------------------------------------------------------------------------

    @app.get("/api/export")
    def export(format: str = "both") -> Response:
        data = svc.export_zip(format)
        name = f"anyseg-export-{format}.zip"
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return app
