"""Text prompts through the annotation API: a phrase proposes a mask, clicks refine it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anyseg.checkpoint import ModelOptions
from anyseg.clip import ClipOptions
from anyseg.server.config import ServerConfig

from .._text import make_text_model, write_tiny_clip
from .conftest import error_of, make_client


@pytest.fixture()
def text_client(image_dir: Path, tmp_path: Path, fake_generator: Any) -> Iterator[Any]:
    from anyseg.server.app import create_app
    from anyseg.server.service import AnnotationService

    clip = write_tiny_clip(tmp_path / "clip.safetensors")
    config = ServerConfig(
        image_dir=image_dir,
        project_dir=tmp_path / "p",
        author="t",
        model=ModelOptions(clip=ClipOptions(clip=clip)),
    )
    svc = AnnotationService(config, model=make_text_model(), mask_generator=fake_generator)
    with make_client(create_app(service=svc)) as c:
        yield c
    svc.close()


def _first_image(client: Any) -> int:
    return int(client.get("/api/images").json()["images"][0]["id"])


def test_a_phrase_alone_then_with_a_click(text_client: Any) -> None:
    assert text_client.get("/api/info").json()["model"]["text_prompts"] is True
    image = _first_image(text_client)
    res = text_client.post(f"/api/images/{image}/predict", json={"text": "the red rectangle"})
    assert res.status_code == 200, res.text
    first = res.json()
    assert len(first["candidates"]) == 3 and first["multimask"] is True
    res = text_client.post(
        f"/api/images/{image}/predict",
        json={
            "text": "the red rectangle",
            "points": [[30, 40]],
            "labels": [1],
            "previous": {"prediction_id": first["prediction_id"], "candidate": first["best"]},
        },
    )
    assert res.status_code == 200 and len(res.json()["candidates"]) == 1
    assert res.json()["used_previous"] is True
    cand = res.json()["candidates"][0]
    res = text_client.post(
        f"/api/images/{image}/masks",
        json={
            "segmentation": cand["segmentation"],
            "prompts": {"points": [], "labels": [], "box": None, "text": "the red rectangle"},
            "label": "red block",
        },
    )
    assert res.status_code in (200, 201), res.text
    (mask,) = text_client.get(f"/api/images/{image}/masks").json()["accepted"]
    assert mask["prompts"]["text"] == "the red rectangle" and mask["prompts"]["points"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "non-empty phrase"),
        ({"text": 3}, "non-empty phrase"),
        ({"text": "x" * 201}, "at most 200"),
        ({"text": "the crimson star"}, "unknown word 'crimson'"),
    ],
)
def test_bad_phrases(text_client: Any, body: dict[str, Any], message: str) -> None:
    res = text_client.post(f"/api/images/{_first_image(text_client)}/predict", json=body)
    status, code, text = error_of(res)
    assert status == 400 and code == "invalid_input" and message in text


def test_a_model_without_a_text_path(client: Any) -> None:
    assert client.get("/api/info").json()["model"]["text_prompts"] is False
    res = client.post(f"/api/images/{_first_image(client)}/predict", json={"text": "a star"})
    status, code, text = error_of(res)
    assert status == 400 and code == "invalid_input" and "no text path" in text
