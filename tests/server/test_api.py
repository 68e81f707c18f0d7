"""HTTP API of the annotation server, endpoint by endpoint, including bad input."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anyseg.data.coco import coco_to_records
from anyseg.data.sa1b import ImageRecord
from anyseg.io import read_image
from anyseg.ops.prompts import validate_prompt
from anyseg.ops.rle import decode_rle, encode_mask
from anyseg.predictor import SamPredictor

from .._prompt_cases import INVALID, SIZE_HW, VALID
from .conftest import error_of


def _first_image(client: Any) -> dict[str, Any]:
    images = client.get("/api/images").json()["images"]
    return next(i for i in images if i["file_name"] == "scene_a.png")


def _accept_click(client: Any, image_id: int, xy: list[float], label: str | None = None) -> dict:
    pred = client.post(f"/api/images/{image_id}/predict", json={"points": [xy], "labels": [1]})
    assert pred.status_code == 200, pred.text
    cand = pred.json()["candidates"][pred.json()["best"]]
    res = client.post(
        f"/api/images/{image_id}/masks",
        json={
            "segmentation": cand["segmentation"],
            "prompts": {"points": [xy], "labels": [1], "box": None},
            "label": label,
            "predicted_iou": cand["score"],
        },
    )
    assert res.status_code == 201, res.text
    return res.json()


def test_page_and_static_files(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/js/app.js"' in page.text
    for path in (
        "/static/js/app.js",
        "/static/js/rle.js",
        "/static/js/draw.js",
        "/static/js/input.js",
        "/static/js/state.js",
        "/static/js/api.js",
        "/static/js/lists.js",
        "/static/style.css",
    ):
        assert client.get(path).status_code == 200, path
    # Nothing outside the static folder is reachable through it; no CDN is referenced.
    assert client.get("/static/../service.py").status_code == 404
    assert client.get("/static/%2e%2e/service.py").status_code == 404
    assert "http" not in page.text.replace("http-equiv", "")


def test_info_and_images(client: Any, image_dir: Path) -> None:
    info = client.get("/api/info").json()
    assert info["author"] == "tester" and info["model"]["img_size"] == 256
    assert len(info["model"]["fingerprint"]) == 16
    images = client.get("/api/images").json()["images"]
    assert [i["file_name"] for i in images] == ["scene_a.png", "scene_b.jpg"]
    assert images[0]["width"] == 128 and images[0]["height"] == 96
    assert images[0]["num_accepted"] == 0
    one = client.get(f"/api/images/{images[0]['id']}").json()
    assert one["file_name"] == "scene_a.png" and one["embedding"] == "missing"
    by_name = client.get("/api/images/by-name/scene_b.jpg").json()
    assert by_name["id"] == images[1]["id"]
    data = client.get(f"/api/images/{images[0]['id']}/file")
    assert data.headers["content-type"] == "image/png"
    assert data.content == (image_dir / "scene_a.png").read_bytes()
    # A file added while serving shows up on the next listing.
    (image_dir / "scene_c.png").write_bytes((image_dir / "scene_a.png").read_bytes())
    assert len(client.get("/api/images").json()["images"]) == 3


def test_embedding_computed_once_then_cached(client: Any, service: Any) -> None:
    image = _first_image(client)
    url = f"/api/images/{image['id']}/embedding"
    assert client.get(url).json() == {"state": "missing"}
    first = client.post(url).json()
    assert first["source"] == "computed"
    assert client.get(url).json() == {"state": "memory"}
    assert client.post(url).json()["source"] == "memory"
    files = list(service.embeddings.directory.glob("*.safetensors"))
    assert [f.name for f in files] == [
        f"{service.get_image(image['id']).sha256}-{service.model_fingerprint}.safetensors"
    ]
    service.embeddings._memory.clear()  # as after a restart: the disk copy is used
    assert client.get(url).json() == {"state": "disk"}
    assert client.post(url).json()["source"] == "disk"


def test_predict_matches_the_predictor(client: Any, service: Any, image_dir: Path) -> None:
    image = _first_image(client)
    res = client.post(
        f"/api/images/{image['id']}/predict", json={"points": [[40, 45]], "labels": [1]}
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["multimask"] is True and len(body["candidates"]) == 3
    assert body["timing"]["decode_ms"] > 0
    # Same masks and scores as the predictor run directly on the image.
    predictor = SamPredictor(service.model)
    predictor.set_image(read_image(image_dir / "scene_a.png"))
    masks, scores, _ = predictor.predict(np.array([[40.0, 45.0]]), np.array([1]))
    for cand, mask, score in zip(body["candidates"], masks, scores, strict=True):
        assert np.array_equal(decode_rle(cand["segmentation"]), mask)
        assert cand["score"] == pytest.approx(float(score), abs=1e-5)
        assert cand["area"] == int(mask.sum())
    assert body["best"] == int(np.argmax(scores))
    # Two points or a box: one mask; multimask can be forced.
    two = client.post(
        f"/api/images/{image['id']}/predict",
        json={"points": [[40, 45], [100, 10]], "labels": [1, 0]},
    ).json()
    assert len(two["candidates"]) == 1 and two["multimask"] is False
    box = client.post(
        f"/api/images/{image['id']}/predict", json={"box": [10, 15, 65, 75], "multimask": True}
    ).json()
    assert len(box["candidates"]) == 3


def test_predict_feeds_back_a_previous_mask(client: Any, service: Any, image_dir: Path) -> None:
    image = _first_image(client)
    url = f"/api/images/{image['id']}/predict"
    first = client.post(url, json={"points": [[40, 45]], "labels": [1]}).json()
    assert first["used_previous"] is False and len(first["prediction_id"]) == 32
    two_points = {"points": [[40, 45], [100, 10]], "labels": [1, 0]}
    previous = {"prediction_id": first["prediction_id"], "candidate": 2}
    res = client.post(url, json={**two_points, "previous": previous})
    assert res.status_code == 200, res.text
    fed = res.json()
    assert fed["used_previous"] is True
    # The same as the predictor given that candidate's low-res logits as mask_input.
    predictor = SamPredictor(service.model)
    predictor.set_image(read_image(image_dir / "scene_a.png"))
    _, _, low = predictor.predict(np.array([[40.0, 45.0]]), np.array([1]))
    pts, lbl = np.array(two_points["points"], float), np.array(two_points["labels"])
    masks, scores, _ = predictor.predict(pts, lbl, mask_input=low[2:3], multimask_output=False)
    assert np.array_equal(decode_rle(fed["candidates"][0]["segmentation"]), masks[0])
    assert fed["candidates"][0]["score"] == pytest.approx(float(scores[0]), abs=1e-5)
    plain = client.post(url, json=two_points).json()
    assert plain["candidates"][0]["score"] != pytest.approx(fed["candidates"][0]["score"])


def test_predict_previous_bad_input(client: Any, service: Any) -> None:
    images = client.get("/api/images").json()["images"]
    url = f"/api/images/{images[0]['id']}/predict"
    first = client.post(url, json={"points": [[40, 45]], "labels": [1]}).json()
    pid = first["prediction_id"]
    point = {"points": [[40, 45]], "labels": [1]}
    cases = [
        ({"prediction_id": "nope", "candidate": 0}, 404, "prediction_expired"),
        ({"prediction_id": pid, "candidate": 3}, 400, "invalid_input"),
        ({"prediction_id": pid, "candidate": True}, 400, "invalid_request"),
        ({"prediction_id": pid}, 400, "invalid_request"),
        ("abc", 400, "invalid_request"),
    ]
    other = f"/api/images/{images[1]['id']}/predict"  # the fixture folder holds two images
    res = client.post(other, json={**point, "previous": {"prediction_id": pid, "candidate": 0}})
    assert error_of(res)[:2] == (400, "invalid_input") and "belongs to image" in res.text
    for previous, status, code in cases:
        res = client.post(url, json={**point, "previous": previous})
        assert error_of(res)[:2] == (status, code), (previous, res.text)
    # Only the latest predictions are kept.
    for _ in range(service.config.recent_predictions):
        client.post(url, json=point)
    res = client.post(url, json={**point, "previous": {"prediction_id": pid, "candidate": 0}})
    assert error_of(res)[:2] == (404, "prediction_expired")


@pytest.mark.parametrize(
    "body, code, message",
    [
        (b"{not json", "invalid_json", "malformed JSON"),
        (b"[1, 2]", "invalid_json", "JSON object"),
        (b"", "invalid_json", "needs a JSON object"),
        (b"\xff\xfe{}", "invalid_json", "malformed JSON"),
        (b'{"box": [1, 1, 5, NaN]}', "invalid_json", "finite numbers only"),
        (b'{"box": [1, 1, 5, Infinity]}', "invalid_json", "finite numbers only"),
        (b'{"box": [1, 1, 5, 1e999]}', "invalid_json", "out of range"),
        (b'{"box": [1, 1, 5, ' + b"9" * 5000 + b"]}", "invalid_json", "out of range"),
        (b'{"box": [1, 1, 5, 9223372036854775808]}', "invalid_json", "out of range"),
        (b'{"box": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json", "nested deeper"),
        (b'{"box": ' + b"[" * 40 + b"]" * 40 + b"}", "invalid_json", "nested deeper"),
        (b'{"points": [[1, 1]], "labels": [1], "note": "\\ud800"}', "invalid_json", "surrogate"),
        (json.dumps({"points": [], "labels": [], "extra": 1}).encode(), "invalid_request", "extra"),
        (
            json.dumps({"box": [1, 1, 5, 5], "multimask": "yes"}).encode(),
            "invalid_request",
            "multimask",
        ),
        (json.dumps({}).encode(), "invalid_input", "at least one point"),
    ],
)
def test_predict_bad_input(client: Any, body: bytes, code: str, message: str) -> None:
    image = _first_image(client)
    res = client.post(
        f"/api/images/{image['id']}/predict",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert error_of(res)[:2] == (400, code), res.text
    assert message in error_of(res)[2]


@pytest.mark.parametrize(("points", "labels", "box"), VALID)
def test_predict_accepts_the_shared_valid_prompts(
    client: Any, points: Any, labels: Any, box: Any
) -> None:
    image = _first_image(client)
    assert (image["height"], image["width"]) == SIZE_HW
    body = {
        k: v for k, v in (("points", points), ("labels", labels), ("box", box)) if v is not None
    }
    res = client.post(f"/api/images/{image['id']}/predict", json=body)
    assert res.status_code == 200, res.text


@pytest.mark.parametrize(("points", "labels", "box", "message", "in_json"), INVALID)
def test_predict_refuses_the_shared_invalid_prompts(
    client: Any, points: Any, labels: Any, box: Any, message: str, in_json: bool
) -> None:
    """The server and the predictor judge prompts with one validator: same cases, same words."""
    image = _first_image(client)
    body = {
        k: v for k, v in (("points", points), ("labels", labels), ("box", box)) if v is not None
    }
    text = json.dumps(body, allow_nan=True)  # what a careless client sends
    res = client.post(
        f"/api/images/{image['id']}/predict",
        content=text.encode(),
        headers={"Content-Type": "application/json"},
    )
    status, code, got = error_of(res)
    if not in_json:
        assert (status, code) == (400, "invalid_json"), res.text
        return
    with pytest.raises(ValueError) as direct:
        validate_prompt(points, labels, box, SIZE_HW)
    assert (status, code, got) == (400, "invalid_input", str(direct.value))


def test_unknown_ids_and_escaping_paths(client: Any) -> None:
    huge = str(2**63)  # beyond SQLite's integers: no such row, not a crash
    for method, url in (
        ("get", "/api/images/999"),
        ("get", "/api/images/999/file"),
        ("get", "/api/images/999/embedding"),
        ("post", "/api/images/999/embedding"),
        ("get", "/api/images/999/masks"),
        ("post", "/api/images/999/prefill"),
        ("get", "/api/masks/999"),
        ("delete", "/api/masks/999"),
        ("get", "/api/images/by-name/nope.png"),
        ("get", "/api/nothing-here"),
        ("get", f"/api/images/{huge}"),
        ("get", f"/api/images/-{huge}1/masks"),
        ("get", f"/api/masks/{huge}"),
        ("delete", f"/api/masks/{huge}"),
        ("post", f"/api/images/{huge}/prefill"),
    ):
        res = getattr(client, method)(url)
        assert error_of(res)[:2] == (404, "not_found"), (url, res.text)
    res = client.patch(f"/api/masks/{huge}", json={"label": "x"})
    assert error_of(res)[:2] == (404, "not_found")
    res = client.post("/api/images/999/predict", json={"points": [[1, 1]], "labels": [1]})
    assert error_of(res)[:2] == (404, "not_found") and "no image with id 999" in res.text
    res = client.post(
        f"/api/images/{huge}/masks", json={"segmentation": {"size": [1, 1], "counts": "1"}}
    )
    assert error_of(res)[:2] == (404, "not_found")
    res = client.get("/api/images/" + "9" * 5000)
    assert error_of(res)[0] in (400, 404)
    image = _first_image(client)
    res = client.post(f"/api/images/{image['id']}/proposals/accept", json={"ids": [2**62]})
    assert error_of(res)[:2] == (404, "not_found")
    assert error_of(client.put("/api/masks/1"))[:2] == (405, "method_not_allowed")
    for url in (
        "/api/images/by-name/..%2F..%2Fetc%2Fpasswd",
        "/api/images/by-name/..%2Fimages%2Fscene_a.png",
        "/api/images/by-name/.hidden",
        "/api/images/by-name/%FF.png",
        "/api/images/..%2F..%2Fetc%2Fpasswd/file",
        "/api/images/abc",
    ):
        res = client.get(url)
        assert 400 <= error_of(res)[0] < 500, url


def test_huge_request_is_refused(client: Any) -> None:
    image = _first_image(client)
    big = {"points": [[1.0, 1.0]] * 200_000, "labels": [1] * 200_000}
    res = client.post(f"/api/images/{image['id']}/predict", json=big)
    assert error_of(res)[:2] == (413, "body_too_large")

    def chunks():  # no Content-Length: streamed body, also cut off
        for _ in range(40):
            yield b" " * 65536

    res = client.post(f"/api/images/{image['id']}/predict", content=chunks())
    assert error_of(res)[:2] == (413, "body_too_large")
    # The server keeps serving.
    assert client.get("/api/health").json() == {"ok": True}


def test_accept_list_edit_delete(client: Any, service: Any) -> None:
    image = _first_image(client)
    saved = _accept_click(client, image["id"], [40, 45], label="red box")
    assert saved["status"] == "accepted" and saved["author"] == "tester"
    assert saved["label"] == "red box" and saved["area"] > 0
    assert saved["point_coords"] == [[40.0, 45.0]]
    assert saved["crop_box"] == [0.0, 0.0, 128.0, 96.0]
    listed = client.get(f"/api/images/{image['id']}/masks").json()
    assert [m["id"] for m in listed["accepted"]] == [saved["id"]] and listed["proposals"] == []
    assert _first_image(client)["num_accepted"] == 1
    # Re-edit: a new mask and label.
    new = np.zeros((96, 128), bool)
    new[10:20, 10:30] = True
    res = client.patch(
        f"/api/masks/{saved['id']}", json={"segmentation": encode_mask(new), "label": "strip"}
    )
    assert res.status_code == 200, res.text
    edited = res.json()
    assert edited["label"] == "strip" and edited["area"] == 200
    assert edited["bbox"] == [10.0, 10.0, 20.0, 10.0]
    assert client.get(f"/api/masks/{saved['id']}").json()["area"] == 200
    assert client.delete(f"/api/masks/{saved['id']}").json() == {"deleted": saved["id"]}
    assert client.get(f"/api/images/{image['id']}/masks").json()["accepted"] == []


def test_accept_bad_input(client: Any) -> None:
    image = _first_image(client)
    url = f"/api/images/{image['id']}/masks"
    good = encode_mask(np.eye(96, 128, dtype=bool))
    cases = [
        ({"label": "x"}, "invalid_request", "segmentation: required"),
        ({"segmentation": None}, "invalid_request", "segmentation: required"),
        ({"segmentation": {"size": [10, 10], "counts": "PP"}}, "invalid_input", "image's [h, w]"),
        ({"segmentation": {"size": [96, 128], "counts": "0"}}, "invalid_input", "covers"),
        ({"segmentation": {"size": [96], "counts": "0"}}, "invalid_request", "size"),
        ({"segmentation": {"size": [96, 128], "counts": 5}}, "invalid_request", "counts"),
        ({"segmentation": encode_mask(np.zeros((96, 128), bool))}, "invalid_input", "empty"),
        ({"segmentation": good, "label": 5}, "invalid_request", "label"),
        ({"segmentation": good, "label": "x" * 201}, "invalid_input", "at most 200"),
        (
            {"segmentation": good, "prompts": {"points": [[999, 1]], "labels": [1]}},
            "invalid_input",
            "outside",
        ),
        ({"segmentation": good, "prompts": [1, 2]}, "invalid_request", "prompts"),
        ({"segmentation": good, "prompts": {"points": [], "x": 1}}, "invalid_request", "x"),
        ({"segmentation": good, "predicted_iou": "high"}, "invalid_request", "predicted_iou"),
        ({"segmentation": good, "predicted_iou": True}, "invalid_request", "predicted_iou"),
        ({"segmentation": good, "author": 7}, "invalid_request", "author"),
        ({"segmentation": good, "author": True}, "invalid_request", "author"),
        ({"segmentation": good, "image_sha256": "abc"}, "invalid_request", "image_sha256"),
        ({"segmentation": good, "colour": "red"}, "invalid_request", "unknown field 'colour'"),
    ]
    for body, code, message in cases:
        res = client.post(url, json=body)
        assert error_of(res)[:2] == (400, code), (body, res.text)
        assert message in error_of(res)[2], (body, res.json())
    assert client.get(f"/api/images/{image['id']}/masks").json()["accepted"] == []


def test_patch_takes_the_same_schema_as_accept(client: Any) -> None:
    """PATCH refuses what POST refuses (wrong types, unknown fields): one request schema."""
    image = _first_image(client)
    saved = _accept_click(client, image["id"], [40, 45], label="kept")
    url = f"/api/masks/{saved['id']}"
    for body, code in (
        ({"predicted_iou": "high"}, "invalid_request"),
        ({"predicted_iou": True}, "invalid_request"),
        ({"predicted_iou": [0.5]}, "invalid_request"),
        ({"author": True}, "invalid_request"),
        ({"author": 12}, "invalid_request"),
        ({"label": {"a": 1}}, "invalid_request"),
        ({"status": "x"}, "invalid_request"),
        ({"segmentation": None}, "invalid_input"),
        ({"segmentation": {"size": [1, 1], "counts": "1"}}, "invalid_input"),
    ):
        res = client.patch(url, json=body)
        assert error_of(res)[:2] == (400, code), (body, res.text)
    for text in (b'{"predicted_iou": NaN}', b'{"predicted_iou": 1e999}', b'{"label": "a"'):
        res = client.patch(url, content=text, headers={"Content-Type": "application/json"})
        assert error_of(res)[:2] == (400, "invalid_json"), text
    assert client.get(url).json() == saved  # nothing changed
    assert client.patch(url, json={"predicted_iou": 1}).json()["predicted_iou"] == 1.0


def test_non_finite_numbers_never_reach_the_export(client: Any) -> None:
    image = _first_image(client)
    url = f"/api/images/{image['id']}/masks"
    good = encode_mask(np.eye(96, 128, dtype=bool))
    for iou in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        text = (
            b'{"segmentation": ' + json.dumps(good).encode() + b', "predicted_iou": ' + iou + b"}"
        )
        res = client.post(url, content=text, headers={"Content-Type": "application/json"})
        assert error_of(res)[:2] == (400, "invalid_json"), iou
    assert client.get(url).json()["accepted"] == []
    _accept_click(client, image["id"], [40, 45])
    export = zipfile.ZipFile(io.BytesIO(client.get("/api/export?format=both").content))

    def no_constant(constant: str) -> None:
        pytest.fail(f"{constant} in the export")

    for name in ("annotations/scene_a.json", "coco_instances.json"):
        json.loads(export.read(name), parse_constant=no_constant)


def test_edit_keeps_the_creator_and_records_the_editor(client: Any) -> None:
    image = _first_image(client)
    saved = _accept_click(client, image["id"], [40, 45])
    assert (saved["author"], saved["edited_by"]) == ("tester", None)
    edited = client.patch(f"/api/masks/{saved['id']}", json={"label": "car", "author": "bob"})
    assert (edited.json()["author"], edited.json()["edited_by"]) == ("tester", "bob")
    again = client.patch(f"/api/masks/{saved['id']}", json={"label": "van"}).json()
    assert (again["author"], again["edited_by"]) == ("tester", "tester")  # the server's author
    other = client.post(
        f"/api/images/{image['id']}/masks",
        json={"segmentation": saved["segmentation"], "author": "carol"},
    ).json()
    assert (other["author"], other["edited_by"]) == ("carol", None)


def test_accept_is_idempotent_with_a_key(client: Any, service: Any) -> None:
    """A client retrying an accept whose answer was lost gets the same mask, not a second."""
    image = _first_image(client)
    url = f"/api/images/{image['id']}/masks"
    body = {"segmentation": encode_mask(np.eye(96, 128, dtype=bool)), "label": "once"}
    first = client.post(url, json=body, headers={"Idempotency-Key": "page-0001-abcdef"})
    retry = client.post(url, json=body, headers={"Idempotency-Key": "page-0001-abcdef"})
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert [m["id"] for m in client.get(url).json()["accepted"]] == [first.json()["id"]]
    # The same key for another request is a conflict; another key is another mask.
    res = client.post(
        url, json={**body, "label": "twice"}, headers={"Idempotency-Key": "page-0001-abcdef"}
    )
    assert error_of(res)[:2] == (409, "idempotency_conflict")
    other = client.post(url, json=body, headers={"Idempotency-Key": "page-0002-abcdef"})
    assert other.json()["id"] != first.json()["id"]
    assert error_of(client.post(url, json=body, headers={"Idempotency-Key": "x"}))[:2] == (
        400,
        "invalid_input",
    )
    assert len(client.get(url).json()["accepted"]) == 2
    # Concurrent retries of one accept (the page retrying while the first is in flight).
    from concurrent.futures import ThreadPoolExecutor

    def send(_: int) -> int:
        res = client.post(url, json=body, headers={"Idempotency-Key": "burst-key-0001"})
        assert res.status_code == 201, res.text
        return int(res.json()["id"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = set(pool.map(send, range(8)))
    assert len(ids) == 1 and len(client.get(url).json()["accepted"]) == 3


def test_prefill_and_review(client: Any) -> None:
    image = _first_image(client)
    # An accepted mask equal to the first fake proposal: pre-fill must not propose it again.
    first = np.zeros((96, 128), bool)
    first[20:70, 15:60] = True
    client.post(f"/api/images/{image['id']}/masks", json={"segmentation": encode_mask(first)})
    res = client.post(f"/api/images/{image['id']}/prefill")
    assert res.status_code == 200, res.text
    proposals = res.json()["proposals"]
    assert len(proposals) == 1 and proposals[0]["status"] == "proposal"
    assert proposals[0]["bbox"] == [80.0, 30.0, 29.0, 35.0]  # the generator's convention
    assert proposals[0]["stability_score"] == pytest.approx(0.97)
    assert _first_image(client)["num_proposals"] == 1
    # Accept one by id, then pre-fill again and reject all.
    acc = client.post(
        f"/api/images/{image['id']}/proposals/accept", json={"ids": [proposals[0]["id"]]}
    )
    assert acc.json() == {"accepted": [proposals[0]["id"]]}
    masks = client.get(f"/api/images/{image['id']}/masks").json()
    assert len(masks["accepted"]) == 2 and masks["proposals"] == []
    assert masks["accepted"][1]["source"] == "prefill"
    client.delete(f"/api/masks/{proposals[0]['id']}")
    again = client.post(f"/api/images/{image['id']}/prefill").json()["proposals"]
    rej = client.post(f"/api/images/{image['id']}/proposals/reject", json={"ids": None})
    assert rej.json() == {"rejected": [again[0]["id"]]}
    bad = client.post(f"/api/images/{image['id']}/proposals/accept", json={"ids": [123456]})
    assert error_of(bad)[:2] == (404, "not_found")
    for body in ({"ids": "all"}, {"idz": None}, {"ids": [True]}, {"ids": [1.5]}):
        bad = client.post(f"/api/images/{image['id']}/proposals/accept", json=body)
        assert error_of(bad)[:2] == (400, "invalid_request"), body


def test_export_zip(client: Any) -> None:
    image = _first_image(client)
    saved = _accept_click(client, image["id"], [40, 45], label="box")
    res = client.get("/api/export?format=both")
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    assert "anyseg-export-both.zip" in res.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(res.content))
    assert sorted(zf.namelist()) == [
        "annotations/scene_a.json",
        "coco_instances.json",
        "images/scene_a.png",
    ]
    record = ImageRecord.from_json_dict(json.loads(zf.read("annotations/scene_a.json")))
    (ann,) = record.annotations
    assert ann.id == saved["id"] and ann.label == "box"
    assert ann.segmentation == saved["segmentation"]
    (coco,) = coco_to_records(json.loads(zf.read("coco_instances.json")))
    assert coco.annotations[0].segmentation["counts"] == saved["segmentation"]["counts"]
    assert coco.annotations[0].label == "box"
    only_coco = zipfile.ZipFile(io.BytesIO(client.get("/api/export?format=coco").content))
    assert "annotations/scene_a.json" not in only_coco.namelist()
    assert error_of(client.get("/api/export?format=voc"))[:2] == (400, "invalid_input")


def test_other_sites_cannot_change_anything(client: Any) -> None:
    image = _first_image(client)
    url = f"/api/images/{image['id']}/proposals/accept"
    evil = client.post(url, headers={"Origin": "http://evil.example"})
    assert error_of(evil)[:2] == (403, "forbidden_origin")
    own = client.post(url, headers={"Origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200
    # DNS rebinding: a foreign host name pointing at the loopback server.
    rebound = client.get("/api/images", headers={"Host": "evil.example:8000"})
    assert error_of(rebound)[:2] == (403, "forbidden_host")
    assert client.get("/api/images", headers={"Host": "localhost:8000"}).status_code == 200
    # A loopback server without --require-token needs no token.
    assert client.app.state.access.token is None


def test_internal_errors_are_json(client: Any, service: Any, monkeypatch: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(service, "predict", broken)
    image = _first_image(client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client_no_raise = type(client)(
            client.app, base_url=str(client.base_url), raise_server_exceptions=False
        )
    res = client_no_raise.post(f"/api/images/{image['id']}/predict", json={"box": [1, 1, 5, 5]})
    assert error_of(res)[:2] == (500, "internal_error") and "model exploded" in res.text
    assert client.get("/api/health").status_code == 200
