"""``anyseg serve`` argument errors: one line on stderr, exit status 1, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from anyseg.cli.main import main


def test_serve_rejects_bad_arguments(tmp_path: Path, image_dir: Path, capsys: Any) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(image_dir), "--port", "70000"]) == 1
    assert "port must be in 0..65535, got 70000 (--port 70000)" in capsys.readouterr().err
    assert main(["serve", str(image_dir), "--threads", "0"]) == 1
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert main(["serve", str(image_dir), "--prefill-pred-iou-thresh", "1.5"]) == 1
    err = capsys.readouterr().err
    assert "pred_iou_thresh must be a number in [0, 1]" in err
    assert "(--prefill-pred-iou-thresh 1.5)" in err
    assert main(["serve", str(image_dir), "--prefill-stability-score-thresh", "-0.1"]) == 1
    assert "(--prefill-stability-score-thresh -0.1)" in capsys.readouterr().err


def test_serve_reports_a_busy_port(
    image_dir: Path, tmp_path: Path, test_checkpoint: Path, capsys: Any
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["serve", str(image_dir), "--port", str(port), "--checkpoint", str(test_checkpoint)]
        assert main([*args, "--project", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]


def test_the_printed_port_already_accepts_connections() -> None:
    """The socket whose URL `anyseg serve` prints is listening before uvicorn runs: a client that
    connects the moment it reads the URL is queued, not refused (CI once saw the refusal)."""
    from anyseg.cli.serve import listening_socket

    with listening_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        # Nobody accepts yet; the kernel's backlog takes the connection.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            sock.settimeout(5)
            conn, _ = sock.accept()
            with conn:
                assert conn.recv(64).startswith(b"GET / HTTP/1.1")


def test_server_and_cli_agree_on_a_rotated_jpeg(
    image_dir: Path, tmp_path: Path, test_checkpoint: Path, capsys: Any
) -> None:
    """An EXIF orientation-6 JPEG: the server lists it upright, serves it upright, and its mask
    for a click equals `anyseg segment`'s for the same click (one reader, one policy)."""
    import dataclasses
    import json

    import numpy as np
    from PIL import Image

    from anyseg.checkpoint import ModelOptions
    from anyseg.io import read_image
    from anyseg.ops.rle import decode_rle
    from anyseg.predictor import SamPredictor
    from anyseg.server.config import ServerConfig
    from anyseg.server.service import AnnotationService

    from .conftest import make_client, scene

    stored = scene(80, 120)  # stored sideways: viewers rotate it 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = image_dir / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    upright = read_image(path)
    assert upright.shape == (120, 80, 3)

    config = ServerConfig(
        image_dir=image_dir,
        project_dir=tmp_path / "project",
        model=ModelOptions(checkpoint=test_checkpoint, device="cpu"),
    )
    svc = AnnotationService(dataclasses.replace(config))
    try:
        image = svc.image_by_name("rotated.jpg")
        assert (image.width, image.height) == (80, 120)
        from anyseg.server.app import create_app

        with make_client(create_app(service=svc)) as client:
            served = client.get(f"/api/images/{image.id}/file")
        with Image.open(__import__("io").BytesIO(served.content)) as img:
            assert np.array_equal(np.asarray(img.convert("RGB")), upright)
        pred = svc.predict(image.id, [[30, 90]], [1], multimask=False)
        server_mask = decode_rle(pred.candidates[0].segmentation)
        # The embedding equals the predictor's on the file path (the Python API's reader).
        reference = SamPredictor(svc.model)
        reference.set_image(str(path))
        emb, _ = svc.embeddings.get(image.sha256)
        assert emb is not None and np.allclose(emb.features, reference.features, atol=1e-6)
    finally:
        svc.close()

    out = tmp_path / "segment"
    args = ["segment", str(path), "--point", "30,90", "--checkpoint", str(test_checkpoint)]
    assert main([*args, "--device", "cpu", "-o", str(out)]) == 0
    capsys.readouterr()
    (record,) = json.loads((out / "rotated.json").read_text())["masks"]
    cli_mask = decode_rle(record["segmentation"])
    assert cli_mask.shape == server_mask.shape == (120, 80)
    assert np.array_equal(cli_mask, server_mask)


@pytest.mark.slow
def test_serve_reports_skipped_files_and_prints_the_token_url(
    image_dir: Path, tmp_path: Path, test_checkpoint: Path, serve_process: Any
) -> None:
    (image_dir / "odd\\name.png").write_bytes((image_dir / "scene_a.png").read_bytes())
    proc, url = serve_process.start(image_dir, tmp_path / "project", test_checkpoint)
    assert "?token=" not in url  # loopback: no token unless --require-token
    assert "skipped odd\\name.png: the name holds a backslash" in proc.output
    serve_process.stop(proc)
    proc, url = serve_process.start(
        image_dir, tmp_path / "project", test_checkpoint, "--require-token"
    )
    assert "?token=" in url and "warning" not in proc.output
    serve_process.stop(proc)
