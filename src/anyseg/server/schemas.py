"""Request bodies of the annotation API, one Pydantic model per kind of request.

Models are strict (no type coercion: ``true`` is not a number, ``1`` is not a string), refuse
unknown fields and non-finite numbers, and describe the envelope of a request. The values'
meaning (a point inside the image, an RLE of the image's size) is checked by the service with
the validators every entry point shares (:mod:`anyseg.ops.prompts`,
:mod:`anyseg.server.validation`), so Python callers of :class:`AnnotationService` get the same
checks. The prompt fields are therefore any JSON here: the shared prompt validator judges them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: An idempotency key: what the page sends in the ``Idempotency-Key`` header.
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{8,128}$"


class Body(BaseModel):
    """Base of every request body: strict types, no unknown fields, finite numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class PromptFields(Body):
    """Point and box prompts in original-image pixels (checked by :mod:`anyseg.ops.prompts`):
    ``points`` [[x, y], ...], ``labels`` [1 | 0, ...] one per point, ``box`` [x0, y0, x1, y1];
    ``text`` a phrase (models with a text path)."""

    points: Any = None
    labels: Any = None
    box: Any = None
    text: Any = None


class PreviousPrediction(Body):
    """An earlier answer whose candidate's low-res logits feed the next prediction."""

    prediction_id: str = Field(max_length=64)
    candidate: int


class PredictRequest(PromptFields):
    """``POST /api/images/{id}/predict``: a prompt, and how many masks to return (None: three
    for one point, else one)."""

    multimask: bool | None = None
    previous: PreviousPrediction | None = None


class CocoRle(Body):
    """A compressed COCO RLE: ``size`` [h, w] and the pycocotools ``counts`` string."""

    size: list[int] = Field(min_length=2, max_length=2)
    counts: str


class MaskFields(Body):
    """A mask's fields, the one schema of ``POST /api/images/{id}/masks`` (accept: the
    segmentation is required) and ``PATCH /api/masks/{id}`` (re-edit: the fields given change).

    ``author`` is who makes this change: the creator when accepting, the editor when editing
    (the creator is kept). ``image_sha256`` is the image content the client drew on; when given,
    a mismatch (the file changed) is refused with ``image_changed``.
    """

    segmentation: CocoRle | None = None
    prompts: PromptFields | None = None
    label: str | None = None
    predicted_iou: float | None = None
    author: str | None = Field(default=None, max_length=200)
    image_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    def given(self) -> dict[str, Any]:
        """The fields the client sent (explicit nulls included) as plain JSON values."""
        return self.model_dump(exclude_unset=True)


class ProposalIds(Body):
    """``POST /api/images/{id}/proposals/accept|reject``: mask ids, or null for all."""

    ids: list[int] | None = None
