"""The export route: the project's accepted masks as a zip (SA-1B and/or COCO, with images)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from anyseg.server.routes.deps import Service

router = APIRouter(prefix="/api")


@router.get("/export")
def export(svc: Service, format: str = "both") -> Response:
    data = svc.export_zip(format)
    name = f"anyseg-export-{format}.zip"
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
