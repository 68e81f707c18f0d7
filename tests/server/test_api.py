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
from anyseg.ops.rle import decode_rle, encode_mask
from anyseg.predictor import SamPredictor
from anyseg.server.images import load_image_rgb


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
    predictor.set_image(load_image_rgb(image_dir / "scene_a.png"))
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
    predictor.set_image(load_image_rgb(image_dir / "scene_a.png"))
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
        ({"prediction_id": "nope", "candidate": 0}, 404, "unknown or expired"),
        ({"prediction_id": pid, "candidate": 3}, 400, "out of range"),
        ({"prediction_id": pid, "candidate": True}, 400, "previous must be"),
        ({"prediction_id": pid}, 400, "previous must be"),
        ("abc", 400, "previous must be"),
    ]
    other = f"/api/images/{images[1]['id']}/predict"  # the fixture folder holds two images
    res = client.post(other, json={**point, "previous": {"prediction_id": pid, "candidate": 0}})
    assert res.status_code == 400 and "belongs to image" in res.json()["error"]
    for previous, status, message in cases:
        res = client.post(url, json={**point, "previous": previous})
        assert res.status_code == status, (previous, res.text)
        assert message in res.json()["error"]
    # Only the latest predictions are kept.
    for _ in range(service.config.recent_predictions):
        client.post(url, json=point)
    res = client.post(url, json={**point, "previous": {"prediction_id": pid, "candidate": 0}})
    assert res.status_code == 404 and "unknown or expired" in res.json()["error"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"", 400, "needs a JSON object"),
        (json.dumps({"points": [[500, 10]], "labels": [1]}).encode(), 400, "outside"),
        (json.dumps({"points": [[-1, 10]], "labels": [1]}).encode(), 400, "outside"),
        (json.dumps({"points": [[5, 10]], "labels": [7]}).encode(), 400, "label 0"),
        (json.dumps({"points": [[5, 10]]}).encode(), 400, "one label per point"),
        (json.dumps({"box": [0, 0, 999, 10]}).encode(), 400, "outside"),
        (json.dumps({}).encode(), 400, "at least one point"),
        (json.dumps({"points": [], "labels": [], "extra": 1}).encode(), 400, "unknown"),
        (json.dumps({"box": [1, 1, 5, 5], "multimask": "yes"}).encode(), 400, "multimask"),
    ],
)
def test_predict_bad_input(client: Any, body: bytes, status: int, message: str) -> None:
    image = _first_image(client)
    res = client.post(
        f"/api/images/{image['id']}/predict",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert res.status_code == status, res.text
    assert message in res.json()["error"]


def test_unknown_ids_and_escaping_paths(client: Any) -> None:
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
    ):
        res = getattr(client, method)(url)
        assert res.status_code == 404, url
        assert res.json()["error"], url
    res = client.post("/api/images/999/predict", json={"points": [[1, 1]], "labels": [1]})
    assert res.status_code == 404 and "no image with id 999" in res.json()["error"]
    for url in (
        "/api/images/by-name/..%2F..%2Fetc%2Fpasswd",
        "/api/images/by-name/..%2Fimages%2Fscene_a.png",
        "/api/images/by-name/.hidden",
        "/api/images/..%2F..%2Fetc%2Fpasswd/file",
        "/api/images/abc",
    ):
        res = client.get(url)
        assert 400 <= res.status_code < 500, url
        assert "error" in res.json(), url


def test_huge_request_is_refused(client: Any) -> None:
    image = _first_image(client)
    big = {"points": [[1.0, 1.0]] * 200_000, "labels": [1] * 200_000}
    res = client.post(f"/api/images/{image['id']}/predict", json=big)
    assert res.status_code == 413 and "larger than" in res.json()["error"]

    def chunks():  # no Content-Length: streamed body, also cut off
        for _ in range(40):
            yield b" " * 65536

    res = client.post(f"/api/images/{image['id']}/predict", content=chunks())
    assert res.status_code == 413
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
        ({"label": "x"}, "needs its segmentation"),
        ({"segmentation": {"size": [10, 10], "counts": "PP"}}, "image's [h, w]"),
        ({"segmentation": {"size": [96, 128], "counts": "0"}}, "covers"),
        ({"segmentation": encode_mask(np.zeros((96, 128), bool))}, "empty"),
        ({"segmentation": good, "label": 5}, "label must be a string"),
        ({"segmentation": good, "prompts": {"points": [[999, 1]], "labels": [1]}}, "outside"),
        ({"segmentation": good, "prompts": [1, 2]}, "prompts must be"),
        ({"segmentation": good, "predicted_iou": "high"}, "predicted_iou"),
        ({"segmentation": good, "colour": "red"}, "unknown mask fields"),
    ]
    for body, message in cases:
        res = client.post(url, json=body)
        assert res.status_code == 400, (body, res.text)
        assert message in res.json()["error"], (body, res.json())
    assert client.patch("/api/masks/1", json={"status": "x"}).status_code in (400, 404)
    assert client.get(f"/api/images/{image['id']}/masks").json()["accepted"] == []


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
    assert bad.status_code == 404
    bad = client.post(f"/api/images/{image['id']}/proposals/accept", json={"ids": "all"})
    assert bad.status_code == 400
    bad = client.post(f"/api/images/{image['id']}/proposals/accept", json={"idz": None})
    assert bad.status_code == 400


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
    assert client.get("/api/export?format=voc").status_code == 400


def test_other_sites_cannot_change_anything(client: Any) -> None:
    image = _first_image(client)
    url = f"/api/images/{image['id']}/proposals/accept"
    evil = client.post(url, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "other web pages" in evil.json()["error"]
    own = client.post(url, headers={"Origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200
    # DNS rebinding: a foreign host name pointing at the loopback server.
    rebound = client.get("/api/images", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 403
    assert client.get("/api/images", headers={"Host": "localhost:8000"}).status_code == 200


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
    assert res.status_code == 500 and "model exploded" in res.json()["error"]
    assert client.get("/api/health").status_code == 200
