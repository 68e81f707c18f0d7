"""The Ray engine's throughput and overhead: single process vs Ray with 1 and 2 workers.

    .venv/bin/python bench/bench_engine.py                     # bundled model, 24 scenes, CPU
    .venv/bin/python bench/bench_engine.py --images 200 --device cuda --gpus-per-worker 1

Labels the same images (synthetic scenes from ``anyseg.data.synthetic``, 512x512, the kind the
bundled model was trained on) three ways, each into a fresh folder, with the same generator
settings and the same torch threads per model replica (``--threads``):

- single process: ``anyseg auto``'s loop (:func:`anyseg.automatic.job.label_image` per image),
  model loaded beforehand;
- ``label_dataset`` on a local Ray instance (started once, before the timed runs) with 1 worker,
  then with 2 workers.

Per row: images per minute end to end (actor start-up and shipping the model included) and in
the steady state (the images after the first ``--batch-size``, over the time after them: the
first images also warm the model up, in every run), and the time per image. The engine's
per-image overhead is the 1-worker steady time per image over the worker's own time per image
(measured in the same run), and over the single-process time per image, minus one. Records are
checked to be identical to the single-process ones. A 2-core machine shared with other work
gives noisy numbers: run it when the machine is quiet, and say so when not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from anyseg.automatic import AmgConfig, SamAutomaticMaskGenerator
from anyseg.automatic.job import LabelJobConfig, label_image
from anyseg.checkpoint import load_model
from anyseg.data.synthetic import generate_scene
from anyseg.engine import EngineConfig, label_dataset
from anyseg.io import write_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model replica")
    ap.add_argument("--batch-size", type=int, default=4, help="images per Ray task")
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = ap.parse_args()

    import ray

    amg = AmgConfig(points_per_side=args.points_per_side)
    job = LabelJobConfig()
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    images = work / "images"
    images.mkdir()
    for i in range(args.images):
        write_image(images / f"sa_{i}.png", generate_scene(i).image)

    # Single process: anyseg auto's per-image job, the model loaded beforehand.
    torch.set_num_threads(args.threads)
    generator = SamAutomaticMaskGenerator(load_model(args.checkpoint, args.device), config=amg)
    single_out = work / "single"
    single_out.mkdir()
    start = time.perf_counter()
    steady_start = start
    with torch.inference_mode():
        for i, path in enumerate(sorted(images.iterdir())):
            if i == args.batch_size:  # steady from the same point as a Ray run's
                steady_start = time.perf_counter()
            result = label_image(generator, path, single_out, job)
            assert result.error is None, result.error
    end = time.perf_counter()
    steady_images = args.images - args.batch_size

    ray_start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - ray_start
    rows = [("single process", end - start, end - steady_start, steady_images)]
    mismatches = 0
    inside: list[float] = []  # the workers' own time per image
    for workers in (1, 2):
        out = work / f"ray{workers}"
        engine = EngineConfig(
            workers=workers,
            cpus_per_worker=float(args.threads),
            gpus_per_worker=args.gpus_per_worker,
            batch_size=args.batch_size,
        )
        s = label_dataset(
            [images],
            out,
            amg=amg,
            job=job,
            engine=engine,
            checkpoint=args.checkpoint,
            device=args.device,
            progress=False,
        )
        assert (s.labelled, s.failed) == (args.images, 0)
        rows.append((f"Ray, {workers} worker(s)", s.seconds, s.labelling_seconds, steady_images))
        inside.append(s.worker_seconds / s.labelled)
        mismatches += sum(
            (out / p.name).read_bytes() != p.read_bytes() for p in single_out.glob("*.json")
        )
    ray.shutdown()

    print(
        f"{args.images} images 512x512, points_per_side {args.points_per_side}, "
        f"{args.threads} torch thread(s) per replica, batch {args.batch_size}, device "
        f"{args.device}, {os.cpu_count()} CPUs; Ray start-up {ray_start:.1f} s (not in the rows)"
    )
    print("| run | images/min end to end | images/min steady | s/image steady |")
    print("|---|---|---|---|")
    for name, total, steady, steady_images in rows:
        print(
            f"| {name} | {60 * args.images / total:.1f} | {60 * steady_images / steady:.1f} | "
            f"{steady / steady_images:.3f} |"
        )
    per_single = rows[0][2] / rows[0][3]
    per_ray = rows[1][2] / rows[1][3]
    print(
        f"engine overhead per image at 1 worker: {100 * (per_ray / inside[0] - 1):+.1f}% over "
        f"the worker's own time on an image ({per_ray:.3f} s vs {inside[0]:.3f} s), "
        f"{100 * (per_ray / per_single - 1):+.1f}% over the single process ({per_single:.3f} s)"
    )
    print(
        "2 workers / 1 worker, steady: "
        f"{(rows[2][3] / rows[2][2]) / (rows[1][3] / rows[1][2]):.2f}x"
    )
    print(f"records identical to the single process: {'yes' if not mismatches else 'NO'}")


if __name__ == "__main__":
    main()
