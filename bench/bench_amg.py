"""Automatic mask generation: anyseg (exact and fast modes) vs the original, one image.

Same weights (a random ``--preset`` model built with a fixed seed, saved once and loaded into
both implementations), same image (``skimage.data.astronaut()``, 512x512), same process, same
thread count, default generator settings. The original is timed when ``ANYSEG_REFERENCE``
points at a checkout of facebookresearch/segment-anything (see bench/_reference.py); a full
vit_b run of it takes minutes on a 2-core CPU.

The table gives per-stage wall times (encoder = the image encoder's forward; decode and filter
= everything else), the ratio to the original, the records each run returned, the peak memory
each ``generate`` call added to the process (set_image included; bench/_memory.py) and how the
records compare. Random weights give few or no confident masks at the default thresholds, so a
second run without filters (``points_per_side=8``, IoU/stability thresholds 0, NMS off: all 192
masks) compares exact mode with the original record by record, and measures how far fast
mode's masks move from exact mode's: for each fast-mode record, the best mask IoU among the
exact-mode records of the same prompt point.

    .venv/bin/python bench/bench_amg.py --quick          # smoke test: tiny model, seconds
    ANYSEG_REFERENCE=/work/ref .venv/bin/python bench/bench_amg.py     # vit_b, with the original
    ANYSEG_REFERENCE=/work/ref .venv/bin/python bench/bench_amg.py --preset vit_h  # memory row

On a CPU shared with other work, OpenMP's default spin-waiting makes every multi-threaded op
wait for descheduled threads; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) avoids it
for both implementations. The header line records the policy used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_machine, load_average
from _memory import mib, peak_growth
from _reference import build_reference_sam, import_reference
from anyseg.automatic import SamAutomaticMaskGenerator
from anyseg.checkpoint import load, save
from anyseg.config import get_preset
from anyseg.modeling import build_sam
from anyseg.ops.rle import decode_rle

NO_FILTERS = {
    "points_per_side": 8,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 1.0,
}


class StageTimer:
    """Accumulates the wall time spent in a module's forward, through forward hooks.

    Hooks, not a wrapped ``forward``: fast mode runs a deep copy of the encoder (bfloat16 or
    int8), and a copy keeps its own hooks, which call back into this timer; a wrapped forward
    would be copied as the original module's bound method and run the float32 weights.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds = 0.0
        self._start = 0.0

        def start(_module: torch.nn.Module, _args: Any) -> None:
            self._start = time.perf_counter()

        def stop(_module: torch.nn.Module, _args: Any, _out: Any) -> None:
            self.seconds += time.perf_counter() - self._start

        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)


def run(make: Callable[[], Any], image: np.ndarray, encoder: StageTimer) -> dict[str, Any]:
    """Time one ``generate`` call; returns stage times and the records (COCO RLE)."""
    generator = make()
    encoder.seconds = 0.0
    timed: dict[str, float] = {}

    def generate() -> list[dict]:
        start = time.perf_counter()  # peak_growth's clean-up before the call is not timed
        records = generator.generate(image)
        timed["total"] = time.perf_counter() - start
        return records

    records, peak = peak_growth(generate)
    return {"encoder": encoder.seconds, "total": timed["total"], "records": records, "peak": peak}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_in_order(ours: list[dict], ref: list[dict]) -> str:
    """Exact mode vs the original: same records in the same order?"""
    if len(ours) != len(ref):
        return f"{len(ours)} vs {len(ref)} records"
    if not ours:
        return "both empty"
    ious = [
        mask_iou(decode_rle(a["segmentation"]), decode_rle(b["segmentation"]))
        for a, b in zip(ours, ref, strict=True)
    ]
    score = max(
        max(
            abs(a["predicted_iou"] - b["predicted_iou"]),
            abs(a["stability_score"] - b["stability_score"]),
        )
        for a, b in zip(ours, ref, strict=True)
    )
    return f"same count; mask IoU min {min(ious):.4f}; max score diff {score:.1e}"


def best_match_ious(fast: list[dict], exact: list[dict]) -> list[float]:
    """For each fast record, the best mask IoU among exact records of the same prompt point."""
    by_point: dict[tuple[float, float], list[np.ndarray]] = {}
    for r in exact:
        by_point.setdefault(tuple(r["point_coords"][0]), []).append(decode_rle(r["segmentation"]))
    out = []
    for r in fast:
        mask = decode_rle(r["segmentation"])
        candidates = by_point.get(tuple(r["point_coords"][0]), [])
        out.append(max((mask_iou(mask, m) for m in candidates), default=0.0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="vit_b", help="model size (vit_b, vit_l, vit_h, tiny)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 'test' preset, 8x8 grid")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--no-reference", action="store_true", help="skip the original")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = describe_machine(args.threads)  # before the runs: its load average is the start's
    preset = "test" if args.quick else args.preset
    options: dict[str, Any] = {"output_mode": "coco_rle"}
    if args.quick:
        options["points_per_side"] = 8

    from skimage import data

    image = np.ascontiguousarray(data.astronaut())
    if args.quick:
        image = np.ascontiguousarray(image[::4, ::4])

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "weights.pth"
        save(build_sam(get_preset(preset)), ckpt)
        ours = load(ckpt)
        ref_module = None if args.no_reference else import_reference()
        ref = build_reference_sam(ref_module, preset, ckpt) if ref_module is not None else None

    ours_enc = StageTimer(ours.image_encoder)
    rows: dict[str, dict[str, Any]] = {}
    with torch.inference_mode():
        if ref is not None:
            ref_enc = StageTimer(ref.image_encoder)
            print("running the original ...", file=sys.stderr, flush=True)
            rows["original"] = run(
                lambda: ref_module.SamAutomaticMaskGenerator(ref, **options), image, ref_enc
            )
        for mode in ("exact", "fast"):
            print(f"running anyseg {mode} ...", file=sys.stderr, flush=True)
            rows[f"anyseg {mode}"] = run(
                lambda mode=mode: SamAutomaticMaskGenerator(ours, mode=mode, **options),
                image,
                ours_enc,
            )
        print("fidelity run (no filters) ...", file=sys.stderr, flush=True)
        loose = {**options, **NO_FILTERS}
        exact_all = SamAutomaticMaskGenerator(ours, **loose).generate(image)
        fast_all = SamAutomaticMaskGenerator(ours, mode="fast", **loose).generate(image)
        ref_all = None
        if ref is not None:
            ref_all = ref_module.SamAutomaticMaskGenerator(ref, **loose).generate(image)

    base = rows.get("original", rows["anyseg exact"])["total"]
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "default (spinning)")
    print(
        f"\nAMG, {preset} (random weights, seed {args.seed}), {image.shape[1]}x{image.shape[0]} "
        f"astronaut, {args.threads} threads, OMP_WAIT_POLICY {wait_policy}, "
        f"torch {torch.__version__}, seconds"
    )
    print("\n".join(header) + "\n")
    print("| run | encoder | decode and filter | total | speed-up | records | peak memory |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        speed = base / r["total"]
        rest = r["total"] - r["encoder"]
        print(
            f"| {name} | {r['encoder']:.1f} | {rest:.1f} | {r['total']:.1f} | {speed:.2f}x "
            f"| {len(r['records'])} | {mib(r['peak'])} |"
        )
    if "original" in rows:
        print(
            "\nexact vs original: "
            + compare_in_order(rows["anyseg exact"]["records"], rows["original"]["records"])
        )
    else:
        print("\n(set ANYSEG_REFERENCE to a segment-anything checkout to time the original too)")
    default_fast = best_match_ious(rows["anyseg fast"]["records"], rows["anyseg exact"]["records"])
    if default_fast:
        print(
            f"fast vs exact, default settings: mean best-match mask IoU {np.mean(default_fast):.4f}"
        )
    if ref_all is not None:
        print("exact vs original, no filters: " + compare_in_order(exact_all, ref_all))
    ious = best_match_ious(fast_all, exact_all)
    print(
        f"fast vs exact, no filters ({len(fast_all)} vs {len(exact_all)} records): mean "
        f"best-match mask IoU {np.mean(ious):.4f}, min {np.min(ious):.4f}"
    )
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
