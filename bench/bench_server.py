"""Click-to-mask latency of the annotation server (``anyseg serve``), over HTTP on loopback.

For each model preset a random-weight checkpoint is saved, ``anyseg serve`` is started on a free
127.0.0.1 port exactly as a user starts it, the image embedding is computed once, then clicks are
sent as the page sends them. Reported per prompt kind (1 point -> 3 masks; 3 points -> 1 mask):

- decode: the predictor call under the model lock (prompt encoder + mask decoder + upscaling to
  the original resolution + threshold), measured in the server;
- encode: COCO RLE encoding of the masks, in the server;
- server: the whole request handler; round trip: what the browser waits for (client-measured).

The mask decoder is the same size for every SAM (vit_b/l/h), so random vit_b weights time the
decode of the official models; only the embedding time depends on the encoder.

    .venv/bin/python bench/bench_server.py                        # test and vit_b presets
    .venv/bin/python bench/bench_server.py --presets vit_b --clicks 50 --image 1500x1000
    .venv/bin/python bench/bench_server.py --browser          # + clicks in headless Chromium
    .venv/bin/python bench/bench_server.py --presets vit_b --thread-ab   # + the thread A/B below

``--thread-ab`` also times, in this process and paired click by click, one-point decodes called
from a plain thread (a request thread: no lanes, as the server decoded before it had a compute
thread) and from the thread that ``anyseg serve`` runs its model work on
(``anyseg.ops.threads.ComputeThread``). The HTTP rows move by more than that difference from
one run to the next on a shared 2-core host; the paired ratio does not.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As `anyseg serve` sets it for itself; here read once, when torch loads OpenMP (the thread A/B).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import numpy as np
import torch
from PIL import Image

from anyseg.checkpoint import save
from anyseg.config import get_preset
from anyseg.modeling import build_sam

URL_RE = re.compile(r"open (http://127\.0\.0\.1:\d+/)")


def make_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A photo-sized scene of random ellipses (JPEG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    for _ in range(25):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(20, width / 5), rng.uniform(20, height / 5)
        img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = rng.integers(0, 255, 3)
    Image.fromarray(img).save(path, quality=92)


def start_server(
    image_dir: Path, checkpoint: Path, threads: int | None, decode_threads: int | None
) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "anyseg.cli.main", "serve", str(image_dir), "--port", "0",
           "--checkpoint", str(checkpoint), "--project", str(image_dir / "proj")]  # fmt: skip
    if threads:
        cmd += ["--threads", str(threads)]
    if decode_threads:
        cmd += ["--decode-threads", str(decode_threads)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # raw reads: a buffered readline could sit on the URL line
    deadline = time.monotonic() + 300
    seen = b""
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 65536)
            if match := URL_RE.search(seen.decode(errors="replace")):
                return proc, match.group(1)
    proc.kill()
    raise RuntimeError("anyseg serve did not start:\n" + seen.decode(errors="replace"))


def browser_clicks(url: str, clicks: int, width: int, height: int) -> list[float]:
    """Click-to-mask as a person sees it: headless Chromium clicks the page's canvas; the page
    reports the time from the click to the mask drawn (request, JS RLE decode, rendering)."""
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(2)
    times = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1280, "height": 800},
        )
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(
            "document.querySelector('#canvas').dataset.state === 'ready'", timeout=600_000
        )
        box = page.locator("#canvas").bounding_box()
        assert box is not None
        for i in range(clicks + 2):
            page.keyboard.press("Escape")  # one point per prompt: the ambiguous, 3-mask case
            done = int(page.evaluate("document.querySelector('#canvas').dataset.predictions || 0"))
            x, y = rng.uniform(0.05, 0.95, 2)
            page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
            page.wait_for_function(
                f"Number(document.querySelector('#canvas').dataset.predictions) > {done}"
            )
            if i >= 2:
                times.append(
                    float(page.evaluate("document.querySelector('#canvas').dataset.clickToMaskMs"))
                )
        context.close()
    return times


def stats(values: list[float]) -> str:
    arr = np.asarray(values)
    return f"{np.median(arr):7.1f} {np.percentile(arr, 90):7.1f}"


def bench_preset(
    preset: str,
    width: int,
    height: int,
    clicks: int,
    threads: int | None,
    decode_threads: int | None,
    browser: bool = False,
) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="anyseg-bench-server-") as tmp:
        folder = Path(tmp)
        make_image(folder / "photo.jpg", width, height)
        torch.manual_seed(0)
        checkpoint = save(build_sam(get_preset(preset)), folder / f"{preset}.safetensors")
        proc, url = start_server(folder, checkpoint, threads, decode_threads)
        try:
            with httpx.Client(base_url=url, timeout=600) as http:
                image_id = http.get("/api/images").json()["images"][0]["id"]
                t0 = time.perf_counter()
                first = http.post(f"/api/images/{image_id}/embedding").json()
                embed_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                again = http.post(f"/api/images/{image_id}/embedding").json()
                reopen_ms = 1000 * (time.perf_counter() - t0)
                print(
                    f"{preset}: embedding {first['source']} in {embed_s:.2f} s; "
                    f"reopen ({again['source']}) {reopen_ms:.1f} ms",
                    file=sys.stderr,
                )
                rng = np.random.default_rng(1)
                for kind, npts in (("1 point, 3 masks", 1), ("3 points, 1 mask", 3)):
                    timings: dict[str, list[float]] = {
                        "decode": [], "encode": [], "server": [], "round trip": []
                    }  # fmt: skip
                    for i in range(clicks + 2):
                        pts = rng.uniform([0, 0], [width, height], size=(npts, 2)).round(1)
                        body = {"points": pts.tolist(), "labels": [1] + [0] * (npts - 1)}
                        t0 = time.perf_counter()
                        res = http.post(f"/api/images/{image_id}/predict", json=body)
                        rt = 1000 * (time.perf_counter() - t0)
                        res.raise_for_status()
                        if i < 2:
                            continue  # warm-up
                        timing = res.json()["timing"]
                        timings["decode"].append(timing["decode_ms"])
                        timings["encode"].append(timing["encode_ms"])
                        timings["server"].append(timing["server_ms"])
                        timings["round trip"].append(rt)
                    rows.append(
                        f"| {preset} | {width}x{height} | {kind} | "
                        + " | ".join(stats(v) for v in timings.values())
                        + f" | {embed_s:.2f} s |"
                    )
            if browser:
                page_ms = browser_clicks(url, clicks, width, height)
                rows.append(
                    f"| {preset} | {width}x{height} | browser click, 3 masks: click-to-mask "
                    f"(request + JS decode + drawing) | | | | {stats(page_ms)} | |"
                )
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return rows


def thread_ab(preset: str, width: int, height: int, clicks: int) -> str:
    """One row: median decode ms on a plain thread and on a compute thread, and the median of
    the paired per-click ratios (plain / compute)."""
    from concurrent.futures import ThreadPoolExecutor

    from anyseg.ops.threads import ComputeThread
    from anyseg.predictor import SamPredictor

    torch.manual_seed(0)
    predictor = SamPredictor(build_sam(get_preset(preset)).eval())
    with tempfile.TemporaryDirectory(prefix="anyseg-bench-server-") as tmp:
        make_image(Path(tmp) / "photo.jpg", width, height)
        rgb = np.asarray(Image.open(Path(tmp) / "photo.jpg").convert("RGB"))
    with torch.inference_mode():
        predictor.set_image(rgb)
    rng = np.random.default_rng(2)

    def decode(xy: np.ndarray) -> float:
        t0 = time.perf_counter()
        predictor.predict(point_coords=xy, point_labels=np.array([1]), multimask_output=True)
        return 1000 * (time.perf_counter() - t0)

    plain, compute = ThreadPoolExecutor(1), ComputeThread("bench-compute")
    try:
        times: dict[str, list[float]] = {"plain": [], "compute": []}
        for i in range(clicks + 3):
            xy = rng.uniform([0, 0], [width, height], size=(1, 2))
            for name, pool in (("plain", plain), ("compute", compute)):
                ms = pool.submit(decode, xy).result()
                if i >= 3:  # warm-up
                    times[name].append(ms)
    finally:
        plain.shutdown()
        compute.shutdown()
    ratio = float(np.median(np.array(times["plain"]) / np.array(times["compute"])))
    return (
        f"| {preset} | {width}x{height} | {stats(times['plain'])} | {stats(times['compute'])} "
        f"| {ratio:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="test,vit_b", help="comma-separated model presets")
    parser.add_argument("--image", default="1024x768", help="image size WxH (default 1024x768)")
    parser.add_argument("--clicks", type=int, default=30, help="prompts per kind (default 30)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the server")
    parser.add_argument("--decode-threads", type=int, default=None, help="threads per decode")
    parser.add_argument(
        "--browser", action="store_true", help="also time clicks in headless Chromium"
    )
    parser.add_argument(
        "--thread-ab",
        action="store_true",
        help="also time one-point decodes on a plain thread against the compute thread, paired",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.image.lower().split("x"))
    rows = []
    for preset in args.presets.split(","):
        rows += bench_preset(
            preset.strip(),
            width,
            height,
            args.clicks,
            args.threads,
            args.decode_threads,
            args.browser,
        )
    threads = f"{args.threads or 'default'} (decode: {args.decode_threads or 'same'})"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs (load average {load}), "
        f"server threads: {threads}, OMP_WAIT_POLICY {os.environ['OMP_WAIT_POLICY']}"
    )
    print("times in ms: median p90")
    print("| model | image | prompt | decode | encode | server | round trip | first embedding |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.thread_ab:
        ab = [thread_ab(p.strip(), width, height, args.clicks) for p in args.presets.split(",")]
        print("\none-point decode in ms (median p90), in this process, paired click by click")
        print("| model | image | plain thread | compute thread | paired ratio |")
        print("|---|---|---|---|---|")
        print("\n".join(ab))


if __name__ == "__main__":
    main()
