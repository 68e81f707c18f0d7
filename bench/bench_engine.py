"""The Ray engine's throughput and overhead: single process vs Ray with 1 and 2 workers.

    .venv/bin/python bench/bench_engine.py                     # bundled model, 24 scenes, CPU
    .venv/bin/python bench/bench_engine.py --images 200 --device cuda --gpus-per-worker 1 \
        --threads 4 --points-per-batch 256

Labels the same images (synthetic scenes from ``anyseg.data.synthetic``, 512x512, the kind the
bundled model was trained on) three ways, each into a fresh folder, with the same generator
settings and the same torch threads per model replica (``--threads``):

- single process: ``anyseg auto``'s loop (:func:`anyseg.automatic.job.label_image` per image),
  model loaded beforehand;
- ``label_dataset`` on a local Ray instance (started once, before the timed runs) with 1 worker,
  then with 2 workers.

Per row: images per minute while labelling (from the first image's start to the last result:
Ray, the actors and shipping the model excluded) and end to end (everything but starting Ray),
the time per image, and the engine's overhead: the labelling time over the workers' own time
on the images in the same run (divided by the worker count), minus one. The 1-worker run is
also compared with the single process, which runs before and after the Ray runs (both times are
shown: a machine whose load drifts shows it). Records are checked to be identical to the
single-process ones. A 2-core machine shared with other work gives noisy numbers: run it when
the machine is quiet, and say so when not.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model replica")
    ap.add_argument("--batch-size", type=int, default=4, help="images per Ray task")
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = ap.parse_args()

    import ray

    amg = AmgConfig(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch)
    job = LabelJobConfig()
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    images = work / "images"
    images.mkdir()
    for i in range(args.images):
        write_image(images / f"sa_{i}.png", generate_scene(i).image)

    # Single process: anyseg auto's per-image job, the model loaded beforehand; run before and
    # after the Ray runs, so that a machine whose load drifts shows it.
    torch.set_num_threads(args.threads)
    generator = SamAutomaticMaskGenerator(load_model(args.checkpoint, args.device), config=amg)
    single_out = work / "single"

    def single_process() -> float:
        shutil.rmtree(single_out, ignore_errors=True)
        single_out.mkdir()
        start = time.perf_counter()
        with torch.inference_mode():
            for path in sorted(images.iterdir()):
                result = label_image(generator, path, single_out, job)
                assert result.error is None, result.error
        return time.perf_counter() - start

    single_before = single_process()

    ray_start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - ray_start
    runs = []
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
        same = all((out / p.name).read_bytes() == p.read_bytes() for p in single_out.glob("*.json"))
        runs.append((workers, s, same))
    ray.shutdown()
    single_after = single_process()
    single = (single_before + single_after) / 2

    n = args.images
    print(
        f"{n} images 512x512, points_per_side {args.points_per_side}, {args.threads} torch "
        f"thread(s) per replica, batch {args.batch_size}, device {args.device}, "
        f"{os.cpu_count()} CPUs; Ray start-up {ray_start:.1f} s (in no row)"
    )
    print("| run | images/min, labelling | images/min, end to end | s per image | overhead |")
    print("|---|---|---|---|---|")
    print(
        f"| single process (before / after: {single_before:.1f} / {single_after:.1f} s) | "
        f"{60 * n / single:.1f} | | {single / n:.3f} | |"
    )
    for workers, s, _ in runs:
        ideal = s.worker_seconds / workers  # the workers' own time, perfectly parallel
        print(
            f"| Ray, {workers} worker(s) | {60 * n / s.labelling_seconds:.1f} | "
            f"{60 * n / s.seconds:.1f} | {s.labelling_seconds / n:.3f} | "
            f"{100 * (s.labelling_seconds / ideal - 1):+.1f}% |"
        )
    one = runs[0][1]
    print(
        "overhead: labelling time over the workers' own time on the images (same run); "
        f"1 worker vs the single process: {100 * (one.labelling_seconds / single - 1):+.1f}%; "
        f"2 workers / 1 worker: {one.labelling_seconds / runs[1][1].labelling_seconds:.2f}x"
    )
    print(f"records identical to the single process: {all(same for *_, same in runs)}")


if __name__ == "__main__":
    main()
