"""Dependencies the routes share: the service of the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from anyseg.server.http import get_service
from anyseg.server.service import AnnotationService

#: A route parameter typed ``Service`` receives the app's :class:`AnnotationService`.
Service = Annotated[AnnotationService, Depends(get_service)]
