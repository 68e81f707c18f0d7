"""Who may talk to the server: the access token (URL, cookie, bearer), the Host allow-list when
exposed, same-origin changes, and what `anyseg serve` prints when it is reachable from others."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from anyseg.ops.rle import encode_mask
from anyseg.server.config import ServerConfig
from anyseg.server.security import AccessPolicy, is_loopback

from .conftest import FakeGenerator, error_of, make_client

TOKEN = "fixed-test-token-0123456789"


@pytest.fixture()
def exposed(config: ServerConfig, test_model: Any) -> Iterator[tuple[Any, Any]]:
    """A server configured for --host 0.0.0.0 (every interface), with a known token and one
    accepted mask; returns (client, service)."""
    from anyseg.server.app import create_app
    from anyseg.server.service import AnnotationService

    cfg = dataclasses.replace(
        config, host="0.0.0.0", token=TOKEN, allowed_hosts=("tunnel.example",)
    )
    svc = AnnotationService(cfg, model=test_model, mask_generator=FakeGenerator)
    image = svc.list_images()[0]
    svc.accept_mask(image.id, encode_mask(np.eye(96, 128, dtype=bool)))
    try:
        with make_client(create_app(service=svc), base_url="http://192.168.7.7:8000") as c:
            yield c, svc
    finally:
        svc.close()


def test_exposed_server_needs_the_token_for_everything(exposed: tuple[Any, Any]) -> None:
    client, svc = exposed
    mask_id = svc.store.list_masks(svc.list_images()[0].id)[0].id
    # The attack of the report: a foreign Host and Origin deleting a mask.
    foreign = {"Host": "evil.example", "Origin": "http://evil.example"}
    res = client.delete(f"/api/masks/{mask_id}", headers=foreign)
    assert error_of(res)[:2] == (403, "forbidden_host")
    res = client.delete(
        f"/api/masks/{mask_id}", headers={**foreign, "Authorization": f"Bearer {TOKEN}"}
    )
    assert error_of(res)[:2] == (403, "forbidden_host")
    # A reachable Host without the token: nothing is served, not even the page or its code.
    for method, url in (
        ("delete", f"/api/masks/{mask_id}"),
        ("get", "/api/images"),
        ("get", "/api/export"),
        ("get", "/static/js/app.js"),
        ("post", "/api/images/1/prefill"),
    ):
        res = getattr(client, method)(url)
        assert error_of(res)[:2] == (401, "unauthorized"), url
    page = client.get("/")
    assert page.status_code == 401 and "?token=" in page.text
    for bad in ("Bearer wrong-token-0123456789", "Basic " + TOKEN, TOKEN):
        assert client.get("/api/images", headers={"Authorization": bad}).status_code == 401
    assert client.get("/api/images?token=wrong").status_code == 401
    # With the token, but sent by another web page: refused too.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    res = client.delete(f"/api/masks/{mask_id}", headers={**auth, "Origin": "http://evil.example"})
    assert error_of(res)[:2] == (403, "forbidden_origin")
    assert svc.store.get_mask(mask_id).id == mask_id
    assert client.get("/api/images", headers=auth).status_code == 200
    assert client.get(f"/api/images?token={TOKEN}").status_code == 200
    assert client.delete(f"/api/masks/{mask_id}", headers=auth).json() == {"deleted": mask_id}


def test_the_token_in_the_url_becomes_a_cookie(exposed: tuple[Any, Any]) -> None:
    client, _ = exposed
    first = client.get(f"/?token={TOKEN}&x=1", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/?x=1"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and TOKEN in cookie
    client.cookies.clear()
    client.cookies.set(cookie.split("=", 1)[0], TOKEN)
    assert client.get("/").status_code == 200
    assert client.get("/static/js/app.js").status_code == 200
    assert client.get("/api/images").status_code == 200
    assert client.post("/api/images/1/embedding").status_code == 200


def test_exposed_hosts(exposed: tuple[Any, Any]) -> None:
    client, _ = exposed
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for host in ("192.168.7.7:8000", "10.1.2.3", "[fe80::1]:8000", "localhost:8000",
                 "tunnel.example:443", "127.0.0.1"):  # fmt: skip
        assert client.get("/api/health", headers={**auth, "Host": host}).status_code == 200, host
    for host in ("evil.example", "tunnel.example.evil.example", "", "127.0.0.1.nip.io"):
        res = client.get("/api/health", headers={**auth, "Host": host})
        assert error_of(res)[:2] == (403, "forbidden_host"), host


def test_policies(config: ServerConfig) -> None:
    loopback = AccessPolicy.from_config(config)
    assert loopback.token is None and not loopback.exposed
    assert loopback.host_allowed("127.0.0.1:8000") and loopback.host_allowed("[::1]:8000")
    assert not loopback.host_allowed("192.168.7.7:8000")  # an address, but not this one's
    assert not loopback.host_allowed("evil.example")
    shared = AccessPolicy.from_config(dataclasses.replace(config, require_token=True))
    again = AccessPolicy.from_config(dataclasses.replace(config, require_token=True))
    assert shared.token and again.token and shared.token != again.token  # random per run
    assert len(shared.token) >= 32 and shared.cookie_name != again.cookie_name
    assert shared.url("http://127.0.0.1:9/") == f"http://127.0.0.1:9/?token={shared.token}"
    wild = AccessPolicy.from_config(dataclasses.replace(config, host="::"))
    assert wild.exposed and wild.token is not None
    named = AccessPolicy.from_config(dataclasses.replace(config, allowed_hosts=("box.lan",)))
    assert named.host_allowed("box.lan:8000") and named.token is None
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    for bad in {"token": "short"}, {"allowed_hosts": ("a b",)}:
        with pytest.raises(ValueError):
            dataclasses.replace(config, **bad)


def test_loopback_with_require_token(config: ServerConfig, test_model: Any) -> None:
    from anyseg.server.app import create_app
    from anyseg.server.service import AnnotationService

    svc = AnnotationService(dataclasses.replace(config, require_token=True), model=test_model)
    try:
        app = create_app(service=svc)
        token = app.state.access.token
        with make_client(app) as client:
            assert error_of(client.get("/api/images"))[:2] == (401, "unauthorized")
            page = client.get(f"/?token={token}")  # follows the redirect with the cookie
            assert page.status_code == 200 and 'src="/static/js/app.js"' in page.text
            assert client.get("/api/images").status_code == 200
    finally:
        svc.close()


def test_serve_on_all_interfaces_prints_the_token_and_a_warning(
    image_dir: Path, tmp_path: Path, test_checkpoint: Path, serve_process: Any
) -> None:
    proc, url = serve_process.start(
        image_dir, tmp_path / "project", test_checkpoint, "--host", "0.0.0.0"
    )
    output = proc.output
    assert "?token=" in url and "warning: listening on 0.0.0.0" in output
    assert "from other machines: http://" in output
    base, query = url.split("?", 1)
    with httpx.Client(base_url=base, timeout=60, follow_redirects=True) as http:
        assert http.get("/api/images").status_code == 401
        res = http.get("/?" + query)  # the URL a person opens: a cookie, then the page
        assert res.status_code == 200 and 'src="/static/js/app.js"' in res.text
        assert http.get("/api/images").json()["images"]
    serve_process.stop(proc)
    assert proc.returncode == 0
