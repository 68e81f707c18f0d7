"""Sizing the actor pool from the cluster's resources; Ray missing; engine flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from anyseg.cli.main import main
from anyseg.engine.config import EngineConfig
from anyseg.engine.ray_runner import import_ray, plan_workers
from anyseg.errors import InvalidInputError


def test_cpu_workers_leave_room_for_ray_data_tasks() -> None:
    two_cpus = [{"CPU": 2.0}]
    # The measured deadlock: actors holding whole CPUs starve Ray Data's own tasks.
    plan = plan_workers(EngineConfig(workers=2), two_cpus)
    assert (plan.workers, plan.cpus_per_worker, plan.threads) == (2, 0.75, 1)
    assert plan.workers * plan.cpus_per_worker < 2
    assert plan_workers(EngineConfig(), two_cpus).workers == 1  # one per CPU, less the reserve
    cluster = [{"CPU": 16.0}, {"CPU": 16.0}]
    plan = plan_workers(EngineConfig(), cluster)
    assert plan.workers == 31 and plan.cpus_per_worker <= 16 - 0.5
    assert plan_workers(EngineConfig(workers=1), cluster).cpus_per_worker == 15.5  # fits a node
    assert plan_workers(EngineConfig(workers=2, cpus_per_worker=0.5), two_cpus).threads == 1


def test_gpu_workers_follow_each_nodes_gpus() -> None:
    nodes = [{"CPU": 4.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 16.0, "GPU": 4.0}]  # head + 2 GPU
    plan = plan_workers(EngineConfig(gpus_per_worker=1), nodes)
    assert (plan.workers, plan.gpus_per_worker) == (5, 1.0)
    assert plan.cpus_per_worker == 3.87  # (16 - 0.5) / 4: fits four on the big node
    assert plan_workers(EngineConfig(gpus_per_worker=0.5), nodes).workers == 10
    with pytest.raises(InvalidInputError, match="has 0 GPUs"):
        plan_workers(EngineConfig(gpus_per_worker=1), [{"CPU": 8.0}])


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(InvalidInputError, match=r"pip install 'anyseg\[ray\]'"):
        import_ray()


def test_engine_options_need_the_ray_engine(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["auto", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--shards", "2"]) == 1
    assert "need --engine ray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert (
        main(
            [
                "auto",
                str(tmp_path),
                "-o",
                str(tmp_path / "o"),
                "--engine",
                "ray",
                "--batch-size",
                "0",
            ]
        )
        == 1
    )
    assert "batch_size must be >= 1" in capsys.readouterr().err


def test_a_cuda_device_needs_gpu_workers(tmp_path: Path) -> None:
    from anyseg.engine import label_dataset

    with pytest.raises(InvalidInputError, match="--gpus-per-worker 1"):
        label_dataset([tmp_path], tmp_path / "out", device="cuda", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written
