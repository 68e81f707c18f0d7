"""Routes of the image folder: server info, the image list, one image, its file, its embedding."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from anyseg._version import __version__
from anyseg.server.images import browser_image
from anyseg.server.records import ImageRow
from anyseg.server.routes.deps import Service

router = APIRouter(prefix="/api")


def image_json(row: ImageRow, state: str | None = None) -> dict[str, Any]:
    """An image as the API sends it (``embedding`` only for a single image)."""
    out: dict[str, Any] = {
        "id": row.id,
        "file_name": row.file_name,
        "width": row.width,
        "height": row.height,
        "sha256": row.sha256,
        "num_accepted": row.num_accepted,
        "num_proposals": row.num_proposals,
        "num_stale": row.num_stale,
    }
    if state is not None:
        out["embedding"] = state
    return out


@router.get("/health")
def health() -> dict[str, Any]:
    return {"ok": True}


@router.get("/info")
def info(svc: Service) -> dict[str, Any]:
    return {
        "version": __version__,
        "image_dir": str(svc.image_dir),
        "project_dir": str(svc.project_dir),
        "author": svc.config.author,
        "model": {
            "name": svc.model_name,
            "fingerprint": svc.model_fingerprint,
            "img_size": int(svc.model.image_encoder.img_size),
            "text_prompts": bool(svc.model.has_text),
        },
        "prefill": {"points_per_side": svc.config.prefill.amg.points_per_side},
    }


@router.get("/images")
def images(svc: Service) -> dict[str, Any]:
    """Every image present (the folder is scanned again), and what the scan left out."""
    svc.rescan()
    return {
        "images": [image_json(r) for r in svc.list_images()],
        **svc.folder_report().to_json(),
    }


@router.get("/images/by-name/{file_name:path}")
def image_by_name(file_name: str, svc: Service) -> dict[str, Any]:
    return image_json(svc.image_by_name(file_name))


@router.get("/images/{image_id}")
def image(image_id: int, svc: Service) -> dict[str, Any]:
    return image_json(svc.get_image(image_id), svc.embedding_state(image_id))


@router.get("/images/{image_id}/file")
def image_file(image_id: int, svc: Service) -> Response:
    """The image as the model sees it (upright, 8-bit), in a format browsers show."""
    data, media = browser_image(svc.image_path(image_id))
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=60"})


@router.get("/images/{image_id}/embedding")
def embedding_state(image_id: int, svc: Service) -> dict[str, Any]:
    return {"state": svc.embedding_state(image_id)}


@router.post("/images/{image_id}/embedding")
def embedding(image_id: int, svc: Service) -> dict[str, Any]:
    got = svc.ensure_embedding(image_id)
    return {"source": got.source, "seconds": got.seconds}
