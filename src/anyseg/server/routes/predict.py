"""The prompt route: masks for points, a box (original-image pixels) and a phrase."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from anyseg.server.http import json_body
from anyseg.server.routes.deps import Service
from anyseg.server.schemas import PredictRequest

router = APIRouter(prefix="/api")


@router.post("/images/{image_id}/predict")
async def predict(
    image_id: int,
    body: Annotated[PredictRequest, Depends(json_body(PredictRequest))],
    svc: Service,
) -> dict[str, Any]:
    """Candidates (3 for one point, else 1) with scores; ``previous`` feeds back an earlier
    candidate's logits as the mask prompt."""
    t0 = time.perf_counter()
    result = await run_in_threadpool(
        svc.predict,
        image_id,
        body.points,
        body.labels,
        body.box,
        body.multimask,
        None if body.previous is None else body.previous.model_dump(),
        body.text,
    )
    out = result.to_json()
    out["timing"]["server_ms"] = 1000.0 * (time.perf_counter() - t0)
    return out
