"""Routes of masks: accept (idempotent with a key), list, get, re-edit and delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from starlette.concurrency import run_in_threadpool

from anyseg.server.http import RequestSchemaError, json_body
from anyseg.server.routes.deps import Service
from anyseg.server.schemas import MaskFields

router = APIRouter(prefix="/api")
Fields = Annotated[MaskFields, Depends(json_body(MaskFields))]


@router.get("/images/{image_id}/masks")
def masks(image_id: int, svc: Service) -> dict[str, Any]:
    """``accepted`` and ``proposals`` of the file's content, ``stale`` of earlier versions."""
    return svc.list_masks(image_id).to_json()


@router.post("/images/{image_id}/masks", status_code=201)
async def accept(
    image_id: int,
    body: Fields,
    svc: Service,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    """Store an accepted mask (on disk before the answer). A retry carrying the same
    ``Idempotency-Key`` returns the mask stored the first time."""
    if body.segmentation is None:
        raise RequestSchemaError("segmentation: required to accept a mask (COCO RLE)")
    fields = body.given()
    row = await run_in_threadpool(
        lambda: svc.accept_mask(
            image_id,
            fields["segmentation"],
            fields.get("prompts"),
            fields.get("label"),
            fields.get("predicted_iou"),
            fields.get("author"),
            image_sha256=body.image_sha256,
            idempotency_key=idempotency_key,
        )
    )
    return row.to_json()


@router.get("/masks/{mask_id}")
def get_mask(mask_id: int, svc: Service) -> dict[str, Any]:
    return svc.get_mask(mask_id).to_json()


@router.patch("/masks/{mask_id}")
async def update_mask(mask_id: int, body: Fields, svc: Service) -> dict[str, Any]:
    """Change the fields given; ``author`` is the editor (the creator is kept)."""
    return (await run_in_threadpool(svc.update_mask, mask_id, body.given())).to_json()


@router.delete("/masks/{mask_id}")
def delete_mask(mask_id: int, svc: Service) -> dict[str, Any]:
    svc.delete_mask(mask_id)
    return {"deleted": mask_id}
