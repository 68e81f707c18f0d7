"""The annotation API's routes, one :class:`fastapi.APIRouter` per concern.

- :mod:`.images`: info, the image list, one image, its file and its embedding;
- :mod:`.predict`: masks for a prompt;
- :mod:`.masks`: accept, list, re-edit and delete masks;
- :mod:`.prefill`: automatic proposals and their review;
- :mod:`.export`: the zip download.

Each route takes its request body as a model of :mod:`anyseg.server.schemas` and the service as
a dependency; errors are raised as exceptions and answered by :mod:`anyseg.server.app`.
"""

from __future__ import annotations

from fastapi import APIRouter

from anyseg.server.routes import export, images, masks, predict, prefill

ROUTERS: tuple[APIRouter, ...] = (
    images.router,
    predict.router,
    masks.router,
    prefill.router,
    export.router,
)
