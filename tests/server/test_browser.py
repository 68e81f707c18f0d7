"""End to end in a real browser: headless Chromium (Debian's package) driven by Playwright.

Open an image, click a point, the mask appears on the canvas, accept it with a label, it shows
in the list, pre-fill proposals can be accepted, and the export downloaded from the page holds
the masks. A screenshot is saved to ``test-artifacts/annotation-tool.png``.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``
(``scripts/install-browser.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anyseg.ops.rle import decode_rle, encode_mask

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def _require_browser() -> Any:
    """Playwright's sync API, or fail (CI) / skip (elsewhere) with the reason."""
    missing = None
    if not CHROMIUM.is_file():
        missing = f"{CHROMIUM} is missing: run scripts/install-browser.sh (Debian's chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright

            return sync_playwright
        except ImportError:
            missing = "the Python package playwright is not installed (pip install playwright)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests must run in CI: {missing}")
    pytest.skip(missing)


@pytest.fixture()
def browser_images(tmp_path: Path) -> Path:
    """Two 320x240 scenes: shapes large enough to click on in a screenshot-sized page."""
    folder = tmp_path / "images"
    folder.mkdir()
    yy, xx = np.mgrid[:240, :320]
    img = np.zeros((240, 320, 3), np.uint8)
    img[:] = (28, 34, 48)
    img[50:190, 40:150] = (215, 60, 50)
    img[(yy - 120) ** 2 + (xx - 235) ** 2 < 55**2] = (60, 190, 90)
    Image.fromarray(img).save(folder / "shapes.png")
    Image.fromarray(img[::-1].copy()).save(folder / "shapes_flipped.png")
    return folder


@pytest.fixture()
def live_server(
    browser_images: Path, tmp_path: Path, test_model: Any, fake_generator: Any
) -> Iterator[str]:
    """The app on 127.0.0.1 with a free port, served by uvicorn in a thread, requiring its access
    token (as a server reachable from others does); yields the URL with the token."""
    from anyseg.server import ServerConfig, create_app
    from anyseg.server.service import AnnotationService

    config = ServerConfig(
        image_dir=browser_images, project_dir=tmp_path / "proj", author="e2e", require_token=True
    )
    service = AnnotationService(config, model=test_model, mask_generator=fake_generator)
    app = create_app(service=service)
    token = app.state.access.token
    with _serving(app, service) as url:
        yield f"{url}?token={token}"


@contextlib.contextmanager
def _serving(app: Any, service: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yields its URL and
    closes the service at the end."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        service.close()


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 760},
            accept_downloads=True,
        )
        try:
            pg = context.new_page()
            pg.set_default_timeout(20_000)
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            pg.js_errors = errors
            yield pg
        finally:
            context.close()


def _click_image(page: Any, x: float, y: float, **kwargs: Any) -> None:
    """Click at (x, y) pixels of the image shown on the canvas."""
    box = page.locator("#canvas").bounding_box()
    w, h = page.evaluate(
        "[document.querySelector('#canvas').width, document.querySelector('#canvas').height]"
    )
    page.mouse.click(box["x"] + x * box["width"] / w, box["y"] + y * box["height"] / h, **kwargs)


def _drag_image(page: Any, a: tuple[float, float], b: tuple[float, float]) -> None:
    """Press at image pixel ``a``, move to ``b`` in steps, release."""
    box = page.locator("#canvas").bounding_box()
    w, h = page.evaluate(
        "[document.querySelector('#canvas').width, document.querySelector('#canvas').height]"
    )
    to_screen = lambda p: (box["x"] + p[0] * box["width"] / w, box["y"] + p[1] * box["height"] / h)  # noqa: E731
    page.mouse.move(*to_screen(a))
    page.mouse.down()
    page.mouse.move(*to_screen(b), steps=8)
    page.mouse.up()


def _predictions(page: Any) -> int:
    """How many predictions the page has drawn so far."""
    return int(page.evaluate("document.querySelector('#canvas').dataset.predictions || 0"))


# Compares the canvas with the bare image inside and outside the chosen candidate's mask.
_CANVAS_CHECK = """() => {
  const s = window.anyseg.state;
  const cand = s.candidates[s.chosen];
  const canvas = document.querySelector('#canvas');
  const shown = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const base = document.createElement('canvas');
  base.width = canvas.width; base.height = canvas.height;
  const bctx = base.getContext('2d');
  bctx.drawImage(s.imgEl, 0, 0);
  const bare = bctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const m = cand.decoded.data;
  let area = 0, changedIn = 0;
  for (let i = 0; i < m.length; i++) {
    if (!m[i]) continue;
    area++;
    const o = 4 * i;
    let diff = 0;
    for (let c = 0; c < 3; c++) diff += Math.abs(shown[o + c] - bare[o + c]);
    if (diff > 6) changedIn++;
  }
  return {area, changedIn, serverArea: cand.area, n: s.candidates.length};
}"""


def test_annotate_in_browser(page: Any, live_server: str) -> None:
    base = live_server.split("?", 1)[0]
    denied = page.goto(base)  # without the token: nothing but an explanation
    assert denied is not None and denied.status == 401 and "token" in page.inner_text("body")
    page.goto(live_server)  # the printed URL: the token becomes a cookie, the URL loses it
    assert page.url == base
    page.wait_for_selector("#image-list li")
    names = page.locator("#image-list li .name").all_inner_texts()
    assert names == ["shapes.png", "shapes_flipped.png"]
    # Opening the first image computes its embedding once, then the canvas is ready.
    page.wait_for_function("document.querySelector('#canvas').dataset.state === 'ready'")
    assert "Embedding ready (computed" in page.inner_text("#status")
    assert page.locator("#text-tools").is_hidden()  # this model has no text path

    # One click: three candidates (ambiguous prompt) and the chosen mask is drawn.
    _click_image(page, 95, 120)
    page.wait_for_selector("#candidates button.candidate")
    assert page.locator("#candidates button.candidate").count() == 3
    drawn = page.evaluate(_CANVAS_CHECK)
    assert drawn["area"] == drawn["serverArea"] > 0  # the JS RLE decoder agrees with the server
    assert drawn["changedIn"] >= 0.95 * drawn["area"]  # the mask is on the canvas
    page.keyboard.press("2")
    assert page.evaluate("window.anyseg.state.chosen") == 1
    # A background point (right click) refines it to one mask, with the chosen candidate's
    # logits fed back as the mask prompt; undo brings back three, decoded from the clicks alone.
    first_id = page.evaluate("window.anyseg.state.previousId")
    with page.expect_request(lambda r: r.url.endswith("/predict")) as sent:
        _click_image(page, 250, 120, button="right")
    assert sent.value.post_data_json["previous"] == {"prediction_id": first_id, "candidate": 1}
    page.wait_for_function("window.anyseg.state.candidates.length === 1")
    assert page.evaluate("window.anyseg.state.labels") == [1, 0]
    assert page.get_attribute("#canvas", "data-used-previous") == "true"
    with page.expect_request(lambda r: r.url.endswith("/predict")) as sent:
        page.keyboard.press("z")
    assert "previous" not in sent.value.post_data_json
    page.wait_for_function("window.anyseg.state.candidates.length === 3")
    assert page.evaluate("window.anyseg.state.points.length") == 1
    chosen = page.evaluate(
        "(() => { const s = window.anyseg.state; return s.candidates[s.chosen].segmentation; })()"
    )

    # Accept with a label (Enter in the label field): it shows in the list and the counts. The
    # request carries an idempotency key and the image content it was drawn on.
    page.fill("#label", "red block")
    with page.expect_request(lambda r: r.url.endswith("/masks") and r.method == "POST") as sent:
        page.press("#label", "Enter")
    assert sent.value.headers["idempotency-key"].startswith("page-")
    assert len(sent.value.post_data_json["image_sha256"]) == 64
    page.wait_for_selector("#accepted-list li")
    assert "red block" in page.inner_text("#accepted-list li")
    assert page.inner_text("#image-list li.active .badge.ok") == "1"
    assert page.evaluate("window.anyseg.state.candidates.length") == 0

    # Semi-automatic: pre-fill proposals, accept all with Shift+A.
    page.keyboard.press("f")
    page.wait_for_selector("#proposal-list li")
    assert page.locator("#proposal-list li").count() == 2
    page.keyboard.press("Shift+A")
    page.wait_for_function("document.querySelectorAll('#accepted-list li').length === 3")
    assert page.locator("#proposals-section").is_hidden()

    # Re-edit the first mask: its prompts come back, one more point, accept replaces it.
    first_id = int(page.get_attribute("#accepted-list li:first-child", "data-id"))
    page.click("#accepted-list li:first-child button.edit")
    assert page.evaluate("window.anyseg.state.editingId") == first_id
    (point,) = page.evaluate("window.anyseg.state.points")
    assert point == pytest.approx([95, 120], abs=1)
    done = _predictions(page)
    _click_image(page, 60, 70)
    page.wait_for_function(
        f"Number(document.querySelector('#canvas').dataset.predictions) > {done}"
    )
    assert page.evaluate("window.anyseg.state.candidates.length") == 1
    edited = page.evaluate("window.anyseg.state.candidates[0].segmentation")
    page.keyboard.press("Enter")
    page.wait_for_function("window.anyseg.state.accepted[0].prompts.points.length === 2")
    assert page.evaluate("window.anyseg.state.editingId") is None
    assert page.locator("#accepted-list li").count() == 3
    # Delete the last (a former proposal) with its button.
    page.click("#accepted-list li:last-child button.delete")
    page.wait_for_function("document.querySelectorAll('#accepted-list li').length === 2")

    # Drag a box: one mask for the box prompt.
    done = _predictions(page)
    _drag_image(page, (175, 60), (295, 180))
    page.wait_for_function(
        f"Number(document.querySelector('#canvas').dataset.predictions) > {done}"
    )
    box = page.evaluate("window.anyseg.state.box")
    assert box == pytest.approx([175, 60, 295, 180], abs=1.5)
    assert page.evaluate("window.anyseg.state.points") == []
    assert page.evaluate("window.anyseg.state.candidates.length") == 1
    page.keyboard.press("Escape")
    assert page.evaluate("window.anyseg.state.box") is None

    # A new click for the screenshot: accepted outlines plus the current candidate.
    _click_image(page, 235, 120)
    page.wait_for_selector("#candidates button.candidate")
    page.wait_for_timeout(100)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "annotation-tool.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # Export from the page: the downloaded zip holds the accepted masks.
    with page.expect_download() as info:
        page.click("#export-both")
    data = Path(info.value.path()).read_bytes()
    zf = zipfile.ZipFile(io.BytesIO(data))
    record = json.loads(zf.read("annotations/shapes.json"))
    labels = [a.get("label") for a in record["annotations"]]
    assert labels == ["red block", None]
    assert record["annotations"][0]["id"] == first_id
    assert record["annotations"][0]["segmentation"] == edited != chosen
    coco = json.loads(zf.read("coco_instances.json"))
    assert len(coco["annotations"]) == 2 and "images/shapes.png" in zf.namelist()
    assert page.js_errors == []


def test_js_rle_decoder_matches_pycocotools(page: Any, live_server: str) -> None:
    rng = np.random.default_rng(1)
    masks = [rng.random((37, 53)) < p for p in (0.0, 0.02, 0.5, 0.98)]
    masks.append(np.ones((37, 53), bool))
    big = np.zeros((300, 400), bool)
    big[10:290, 5:395] = True  # runs over 2^13 need several characters per count
    masks.append(big)
    rles = [encode_mask(m) for m in masks]
    page.goto(live_server)
    page.goto(live_server.split("?", 1)[0] + "static/index.html")
    decoded = page.evaluate(
        """async (rles) => {
          const { decodeRle } = await import('/static/js/rle.js');
          return rles.map((r) => { const d = decodeRle(r); return {
            ones: Array.from(d.data.entries()).filter(([, v]) => v).map(([i]) => i),
            bbox: d.bbox }; });
        }""",
        rles,
    )
    for mask, rle, got in zip(masks, rles, decoded, strict=True):
        assert np.array_equal(decode_rle(rle), mask)
        assert got["ones"] == np.flatnonzero(mask).tolist()  # row-major indices
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert got["bbox"] == [xs.min(), ys.min(), xs.max(), ys.max()]
        else:
            assert got["bbox"] is None


def test_changed_file_and_skipped_files_are_shown(
    page: Any, live_server: str, browser_images: Path
) -> None:
    """A file replaced after it was annotated: the page marks it, lists its old masks apart;
    a file the server cannot serve is named in the image panel."""
    page.goto(live_server)
    page.wait_for_function("document.querySelector('#canvas').dataset.state === 'ready'")
    _click_image(page, 95, 120)
    page.wait_for_selector("#candidates button.candidate")
    page.keyboard.press("Enter")
    page.wait_for_selector("#accepted-list li")
    flipped = np.asarray(Image.open(browser_images / "shapes.png"))[:, ::-1].copy()
    Image.fromarray(flipped).save(browser_images / "shapes.png")
    os.utime(browser_images / "shapes.png", ns=(1, 10**18))
    (browser_images / "bad\\name.png").write_bytes(
        (browser_images / "shapes_flipped.png").read_bytes()
    )
    page.reload()
    page.wait_for_function("document.querySelector('#canvas').dataset.state === 'ready'")
    assert page.inner_text("#image-list li.active .badge.stale") == "changed"
    assert page.locator("#stale-section").is_visible()
    assert page.locator("#stale-list li").count() == 1
    assert page.locator("#accepted-list li").count() == 0
    assert "bad\\name.png: the name holds a backslash" in page.inner_text("#folder-notices")
    assert page.js_errors == []


@pytest.fixture()
def bundled_server(tmp_path: Path) -> Iterator[str]:
    """The app with the bundled default model and the real automatic generator, on a folder
    holding the bundled example scene (what a new user gets from `anyseg serve examples/`)."""
    import shutil

    from anyseg.server import ServerConfig, create_app

    folder = tmp_path / "examples"
    folder.mkdir()
    shutil.copy(REPO / "examples" / "scene.png", folder / "scene.png")
    app = create_app(ServerConfig(image_dir=folder, project_dir=tmp_path / "proj", author="new"))
    with _serving(app, app.state.service) as url:
        yield url


@pytest.mark.slow
def test_prefill_proposes_masks_with_the_bundled_model(page: Any, bundled_server: str) -> None:
    """Out of the box, the semi-automatic stage shows proposals on the example scene: the
    default pre-fill settings and the bundled model's IoU head agree."""
    page.goto(bundled_server)
    page.wait_for_function("document.querySelector('#canvas').dataset.state === 'ready'")
    page.keyboard.press("f")
    page.wait_for_selector("#proposal-list li", timeout=120_000)
    assert page.locator("#proposal-list li").count() >= 1
    assert not page.js_errors


@pytest.fixture()
def text_server(browser_images: Path, tmp_path: Path, fake_generator: Any) -> Iterator[str]:
    """The app with a text-path model and a tiny CLIP (no token needed on loopback)."""
    from anyseg.checkpoint import ModelOptions
    from anyseg.clip import ClipOptions
    from anyseg.server import ServerConfig, create_app
    from anyseg.server.service import AnnotationService

    from .._text import make_text_model, write_tiny_clip

    clip = write_tiny_clip(tmp_path / "clip.safetensors")
    config = ServerConfig(
        image_dir=browser_images,
        project_dir=tmp_path / "proj",
        author="e2e",
        model=ModelOptions(clip=ClipOptions(clip=clip)),
    )
    service = AnnotationService(config, model=make_text_model(), mask_generator=fake_generator)
    with _serving(create_app(service=service), service) as url:
        yield url


def test_a_typed_phrase_proposes_a_mask_and_clicks_refine_it(page: Any, text_server: str) -> None:
    page.goto(text_server)
    page.wait_for_function("document.querySelector('#canvas').dataset.state === 'ready'")
    assert page.locator("#text-tools").is_visible()
    page.fill("#text-prompt", "the red rectangle")
    with page.expect_request(lambda r: r.url.endswith("/predict")) as sent:
        page.press("#text-prompt", "Enter")
    assert sent.value.post_data_json["text"] == "the red rectangle"
    assert sent.value.post_data_json["points"] == []
    page.wait_for_function("window.anyseg.state.candidates.length === 3")  # text alone: 3
    assert page.input_value("#label") == "the red rectangle"  # the phrase is the label
    first_id = page.evaluate("window.anyseg.state.previousId")
    # A click refines the proposal: the phrase stays, the proposal's logits are fed back.
    with page.expect_request(lambda r: r.url.endswith("/predict")) as sent:
        _click_image(page, 95, 120)
    body = sent.value.post_data_json
    assert body["text"] == "the red rectangle" and len(body["points"]) == 1
    assert body["previous"]["prediction_id"] == first_id
    page.wait_for_function("window.anyseg.state.candidates.length === 1")
    with page.expect_request(lambda r: r.url.endswith("/masks") and r.method == "POST") as sent:
        page.keyboard.press("Enter")
    assert sent.value.post_data_json["prompts"]["text"] == "the red rectangle"
    page.wait_for_selector("#accepted-list li")
    assert "the red rectangle" in page.inner_text("#accepted-list li")
    assert page.evaluate("window.anyseg.state.accepted[0].prompts.text") == "the red rectangle"
    # A word the CLIP does not know: the server's message in the status line.
    page.fill("#text-prompt", "the crimson rectangle")
    page.press("#text-prompt", "Enter")
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "unknown word 'crimson'" in page.inner_text("#status")
    page.keyboard.press("Escape")  # clears the prompts and the phrase
    assert (
        page.input_value("#text-prompt") == "" and page.evaluate("window.anyseg.state.text") is None
    )
    assert page.js_errors == []
