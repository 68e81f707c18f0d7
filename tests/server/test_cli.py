"""``anyseg serve`` argument errors: one line on stderr, exit status 1, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

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
