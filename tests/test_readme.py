"""The README's "Try every stage" block, run as written on a copy of the repository's files."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    """The commands between the readme-test markers (continuations joined, comments dropped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- readme-test:begin -->", 1)[1].split("<!-- readme-test:end -->", 1)[0]
    body = block.split("```bash", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", body)
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def test_the_block_covers_every_stage() -> None:
    names = [c[1] for c in readme_commands()]
    assert names == ["segment", "auto", "synth", "train", "eval", "export"]
    assert all(c[0] == "anyseg" for c in readme_commands())


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path: Path) -> None:
    for folder in ("examples", "configs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for argv in readme_commands():
        done = subprocess.run(
            [sys.executable, "-m", "anyseg", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stderr[-2000:]}"
        if argv[1] == "train":
            held_out = re.search(r"IoU first ([\d.]+), last ([\d.]+)", done.stdout)
            assert held_out is not None, done.stdout[-2000:]
            assert float(held_out.group(2)) > 0.5, "the README's training example did not learn"
    assert (tmp_path / "outputs/segment/scene_candidates.png").is_file()
    auto = json.loads((tmp_path / "outputs/auto/scene.json").read_text())
    assert len(auto["annotations"]) >= 1  # default thresholds keep masks on the example scene
    assert (tmp_path / "runs/test/loss_curve.png").is_file()
    report = json.loads((tmp_path / "outputs/eval/report.json").read_text())
    assert report["scores"]["point_oracle"]["miou"] > 0.5
    assert (tmp_path / "outputs/onnx/decoder.onnx").is_file()
