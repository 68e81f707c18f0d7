"""HTTP plumbing shared by the routes: strict JSON in and out, the body limit, the service.

- :func:`parse_json` reads request bodies strictly: JSON objects only, numbers finite (``NaN``,
  ``Infinity`` and ``1e999`` are refused) and integers within 64 bits, strings valid Unicode,
  at most :data:`MAX_DEPTH` levels deep. Every failure is a :class:`BadJsonError` (400), never a
  500.
- :func:`json_body` turns a Pydantic model (:mod:`anyseg.server.schemas`) into a FastAPI
  dependency that parses and validates the body.
- :class:`StrictJSONResponse` writes answers with :func:`anyseg.io.to_json` (no NaN either).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anyseg.io import to_json
from anyseg.server.errors import BODY_TOO_LARGE, INVALID_REQUEST, ApiError, BadJsonError
from anyseg.server.security import send_error

if TYPE_CHECKING:
    from anyseg.server.service import AnnotationService

M = TypeVar("M", bound=BaseModel)

#: Deepest nesting of arrays/objects accepted in a request body.
MAX_DEPTH = 32
_INT64 = 2**63


class RequestSchemaError(ApiError):
    """JSON that does not match the endpoint's request schema."""

    code = INVALID_REQUEST


def _no_constant(name: str) -> Any:
    raise BadJsonError(f"{name} is not a number JSON allows: send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJsonError(f"number {text[:24]} is out of range: send finite numbers only")
    return value


def _int64(text: str) -> int:
    # Checked on the text: Python refuses to convert more than 4300 digits at all.
    if len(text.lstrip("-")) > 19 or not -_INT64 <= int(text) < _INT64:
        raise BadJsonError(f"integer {text[:24]}{'...' if len(text) > 24 else ''} is out of range")
    return int(text)


def _check_tree(value: Any) -> None:
    """Depth and string checks of a parsed JSON value (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadJsonError(
                    "a string holds an unpaired surrogate (\\ud800-\\udfff)"
                ) from None
        elif isinstance(item, (list, dict)):
            if depth > MAX_DEPTH:
                raise BadJsonError(f"JSON nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)


def parse_json(raw: bytes) -> Any:
    """Parse a request body strictly (see the module docstring)."""
    try:
        data = json.loads(
            raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_int64
        )
    except BadJsonError:
        raise
    except RecursionError:
        raise BadJsonError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJsonError(f"malformed JSON body: {exc}") from None
    _check_tree(data)
    return data


def describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem: ``field.path: what is wrong``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        elif err.get("type") == "missing":
            parts.append(f"{loc}: required")
        else:
            parts.append(f"{loc}: {err.get('msg')}")
    known = ", ".join(model.model_fields)
    return "; ".join(parts) + (f" (fields: {known})" if "unknown field" in " ".join(parts) else "")


def json_body(model: type[M], *, optional: bool = False) -> Callable[[Request], Awaitable[M]]:
    """A dependency giving the request body parsed by :func:`parse_json` and validated by
    ``model``; ``optional`` lets an empty body stand for ``{}``."""

    async def parse(request: Request) -> M:
        raw = await request.body()
        if not raw.strip():
            if not optional:
                raise BadJsonError("this endpoint needs a JSON object body")
            data: Any = {}
        else:
            data = parse_json(raw)
        if not isinstance(data, dict):
            raise BadJsonError(f"the body must be a JSON object, got {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestSchemaError(describe_validation_error(exc, model)) from None

    return parse


class StrictJSONResponse(JSONResponse):
    """JSON answers without NaN or infinities (:func:`anyseg.io.to_json`)."""

    def render(self, content: Any) -> bytes:
        return to_json(content, compact=True).encode("utf-8")


def get_service(request: Request) -> AnnotationService:
    """The app's :class:`AnnotationService` (a FastAPI dependency)."""
    service: AnnotationService = request.app.state.service
    return service


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
                await send_error(send, 400, INVALID_REQUEST, "invalid Content-Length header")
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
        await send_error(
            send, 413, BODY_TOO_LARGE, f"request body larger than {self.max_bytes} bytes"
        )
