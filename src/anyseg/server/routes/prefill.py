"""Routes of the semi-automatic stage: pre-fill proposals, then accept or reject them."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from anyseg.server.http import json_body
from anyseg.server.routes.deps import Service
from anyseg.server.schemas import ProposalIds

router = APIRouter(prefix="/api")
Ids = Annotated[ProposalIds, Depends(json_body(ProposalIds, optional=True))]


@router.post("/images/{image_id}/prefill")
def prefill(image_id: int, svc: Service) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = svc.prefill(image_id)
    return {"proposals": [m.to_json() for m in rows], "seconds": time.perf_counter() - t0}


@router.post("/images/{image_id}/proposals/accept")
async def accept_proposals(image_id: int, body: Ids, svc: Service) -> dict[str, Any]:
    return {"accepted": await run_in_threadpool(svc.resolve_proposals, image_id, body.ids, True)}


@router.post("/images/{image_id}/proposals/reject")
async def reject_proposals(image_id: int, body: Ids, svc: Service) -> dict[str, Any]:
    return {"rejected": await run_in_threadpool(svc.resolve_proposals, image_id, body.ids, False)}
