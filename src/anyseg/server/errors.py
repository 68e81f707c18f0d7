"""Errors of the annotation server and the stable codes its JSON errors carry.

Every error answer has the body ``{"error": {"code": CODE, "message": TEXT}}``: the page and the
tests match on ``code`` (stable), people read ``message`` (may change). The codes:

=====================  ======  =============================================================
code                   status  meaning
=====================  ======  =============================================================
invalid_json           400     the body is not JSON, not an object, too deep, or holds a
                               non-finite or out-of-range number
invalid_request        400     the JSON does not match the endpoint's schema (unknown field,
                               wrong type)
invalid_input          400     the values are well-formed but wrong (a point outside the
                               image, an RLE of the wrong size, ...)
unauthorized           401     no valid access token (see :mod:`anyseg.server.security`)
forbidden_host         403     the Host header names a host this server does not serve
forbidden_origin       403     a change sent by a page of another origin
not_found              404     no such image, mask, file or route
prediction_expired     404     ``previous`` names a prediction the server no longer keeps
method_not_allowed     405     the route exists, the method does not
image_changed          409     the image file changed on disk since the client saw it, or the
                               mask belongs to an earlier version of the file
idempotency_conflict   409     an ``Idempotency-Key`` reused for a different request
body_too_large         413     the request body exceeds ``max_body_bytes``
internal_error         500     a bug or a broken model; the message says what happened
=====================  ======  =============================================================
"""

from __future__ import annotations

from typing import Any

from anyseg.errors import AnysegError

INVALID_JSON = "invalid_json"
INVALID_REQUEST = "invalid_request"
INVALID_INPUT = "invalid_input"
UNAUTHORIZED = "unauthorized"
FORBIDDEN_HOST = "forbidden_host"
FORBIDDEN_ORIGIN = "forbidden_origin"
NOT_FOUND = "not_found"
PREDICTION_EXPIRED = "prediction_expired"
METHOD_NOT_ALLOWED = "method_not_allowed"
IMAGE_CHANGED = "image_changed"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
BODY_TOO_LARGE = "body_too_large"
INTERNAL_ERROR = "internal_error"

#: The code of a bare HTTP status (routing errors, middleware answers).
CODE_OF_STATUS = {
    400: INVALID_REQUEST,
    401: UNAUTHORIZED,
    403: FORBIDDEN_HOST,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: IMAGE_CHANGED,
    413: BODY_TOO_LARGE,
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": {"code": code, "message": message}}


class ApiError(AnysegError):
    """An error with its HTTP status and stable code (subclasses set both)."""

    status = 400
    code = INVALID_INPUT


class BadJsonError(ApiError):
    """A request body that is not a JSON object of finite, in-range numbers."""

    code = INVALID_JSON


class NotFoundError(ApiError):
    """An image, mask or prediction id that the project does not hold."""

    status = 404
    code = NOT_FOUND


class PredictionExpiredError(NotFoundError):
    """A ``previous`` prediction id the server no longer keeps (or never gave)."""

    code = PREDICTION_EXPIRED


class ImageChangedError(ApiError):
    """The image file changed since the client (or the mask) saw it."""

    status = 409
    code = IMAGE_CHANGED


class IdempotencyConflictError(ApiError):
    """An idempotency key sent again with a different request."""

    status = 409
    code = IDEMPOTENCY_CONFLICT
