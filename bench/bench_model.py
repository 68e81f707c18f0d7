"""Image-encoder and prompt-decode latency: anyseg vs the original implementation.

Same weights (a random ``--preset`` model saved once and loaded into both), same 512x512 image,
same process, same thread count. The implementations take turns; in the decode rows a turn is
5 consecutive calls after an untimed one (warm caches, as when clicking on one image). The
original is timed when ``ANYSEG_REFERENCE`` points at a checkout of
facebookresearch/segment-anything (see bench/_reference.py).

One table: the encoder at 1024 px, a one-point decode (3 masks), a box decode, and 64
single-point prompts in one ``predict_torch`` call, for anyseg's exact mode, its fast mode on
the path this machine's probe chose (and, forced, the paths it rejected), and the original; then
the peak memory of the encoder and of the 64-prompt call (bench/_memory.py), the agreement of
exact mode with the original and of fast mode with exact mode (mask IoU over the parity
fixtures' prompts), and the top ops of anyseg's exact mode (torch.profiler). The header gives
the CPU, its capability and bfloat16 support, fast mode's probe and the machine's load.

    .venv/bin/python bench/bench_model.py                 # vit_b, ours only
    OMP_WAIT_POLICY=PASSIVE ANYSEG_REFERENCE=/path/to/segment-anything \\
        .venv/bin/python bench/bench_model.py                           # the README's table
    .venv/bin/python bench/bench_model.py --checkpoint src/anyseg/weights/default.safetensors
    .venv/bin/python bench/bench_model.py --family tinyvit   # MobileSAM's vit_t next to vit_b
    .venv/bin/python bench/bench_model.py --family hq        # SAM-HQ vit_b next to vit_b

``--family`` times anyseg's model of that family (random weights, released architecture) beside
anyseg's vit_b in the same run, and the family's own code on the same weights when
``ANYSEG_MOBILESAM_REFERENCE`` / ``ANYSEG_SAMHQ_REFERENCE`` names a checkout.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_machine, load_average, median_times, other_fast_paths
from _memory import mib, peak_growth
from _reference import build_reference_sam, import_reference
from anyseg.checkpoint import load, save
from anyseg.config import get_preset
from anyseg.modeling import build_sam
from anyseg.precision import choose_fast_path, mkldnn_bf16_supported
from anyseg.predictor import SamPredictor


def test_image(size: int = 768) -> np.ndarray:
    """A deterministic photo-like image: smooth gradients plus shapes plus noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([yy * 200, xx * 180, (1 - yy) * 150], -1)
    for _ in range(12):
        cx, cy, r = [*rng.uniform(0, 1, 2).tolist(), rng.uniform(0.05, 0.2)]
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


TARGETS = {  # issue 17's targets (ratio to the original)
    "encoder 1024 px, exact": "≥ 1.6x",
    "encoder 1024 px, fast": "≥ 4x (bf16 CPU), ≥ 1.8x (other)",
    "1 point, 3 masks, exact": "≥ 2.5x",
    "64 points, one predict_torch, exact": "≥ 4x",
}


# Decode rows time blocks of this many consecutive calls per implementation (see
# bench_predictors).
DECODE_BLOCK = 5

Stages = dict[str, tuple[Callable[[object], object], int, int]]  # name: (fn, calls, block)


def bench_predictors(predictors: dict[str, object], stages: Stages) -> dict[str, dict[str, float]]:
    """Median seconds per stage for each predictor, over ``calls`` timed calls; the
    implementations take turns so that background load hits them alike.

    A turn is ``block`` consecutive timed calls, after one untimed call when ``block`` > 1: a
    call right after the other implementation's runs on caches that one has just filled with
    its own buffers, while repeated clicks on one image (what the decode rows stand for) run
    on warm caches. With ``block`` 1 single calls alternate (the encoder, the 64-prompt call).
    """
    times: dict[str, dict[str, list[float]]] = {n: {s: [] for s in stages} for n in predictors}
    for stage, (fn, n, block) in stages.items():
        for p in predictors.values():  # warm-up
            fn(p)
        for _ in range(max(1, math.ceil(n / block))):
            for name, p in predictors.items():
                if block > 1:
                    fn(p)  # the switch-over call, untimed
                for _ in range(block):
                    start = time.perf_counter()
                    fn(p)
                    times[name][stage].append(time.perf_counter() - start)
    return {n: {s: statistics.median(v) for s, v in st.items()} for n, st in times.items()}


def stages_for(
    image: np.ndarray, points64: torch.Tensor, repeats: int, decode_repeats: int
) -> Stages:
    point, labels = np.array([[300.0, 200.0]]), np.array([1])
    box = np.array([100.0, 150.0, 400.0, 450.0])
    labels64 = torch.ones(points64.shape[:2], dtype=torch.int)

    def many(p: Any) -> object:
        with torch.inference_mode():
            return p.predict_torch(points64, labels64, multimask_output=True)

    return {
        "encoder 1024 px": (lambda p: p.set_image(image), repeats, 1),  # type: ignore[attr-defined]
        "1 point, 3 masks": (
            lambda p: p.predict(point, labels, multimask_output=True),  # type: ignore[attr-defined]
            decode_repeats,
            DECODE_BLOCK,
        ),
        "box, 1 mask": (
            lambda p: p.predict(box=box, multimask_output=False),  # type: ignore[attr-defined]
            decode_repeats,
            DECODE_BLOCK,
        ),
        "64 points, one predict_torch": (many, repeats, 1),
    }


def fixture_prompts() -> list[tuple[np.ndarray, list[dict[str, np.ndarray]]]]:
    """(image, prompt kwargs) of the parity fixtures' cases (../shared/fixtures), or []."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
    if not (root / "manifest.json").is_file():
        return []
    from anyseg.io import read_image

    out = []
    for name in ("astronaut", "coffee_crop"):
        ref = np.load(root / f"ref_{name}.npz")
        cases = [_fixture_case(ref, case) for case in ("pt1_mm", "pt3_single", "box", "box_neg")]
        out.append((read_image(root / f"{name}.png"), cases))
    return out


def _fixture_case(ref: Any, case: str) -> dict[str, np.ndarray]:
    keys = ("point_coords", "point_labels", "box")
    return {k: ref[f"{case}.{k}"] for k in keys if f"{case}.{k}" in ref}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def fast_fidelity(exact: SamPredictor, fast: SamPredictor) -> str:
    """Mean and min mask IoU of fast vs exact mode over the fixture prompts."""
    ious = []
    for image, cases in fixture_prompts():
        exact.set_image(image)
        fast.set_image(image)
        for kw in cases:
            multi = "box" not in kw and len(kw.get("point_labels", [])) == 1
            a = exact.predict(multimask_output=multi, **kw)[0]
            b = fast.predict(multimask_output=multi, **kw)[0]
            ious += [mask_iou(x, y) for x, y in zip(a, b, strict=True)]
    if not ious:
        return "n/a (../shared/fixtures not found)"
    return f"mean {np.mean(ious):.4f}, min {np.min(ious):.4f} over {len(ious)} masks"


def top_ops(fn: Callable[[], object], rows: int = 8) -> str:
    """The ``rows`` ops with the most self CPU time in one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return "; ".join(
        f"{e.key} {e.self_cpu_time_total / 1e3:.0f} ms ({100 * e.self_cpu_time_total / total:.0f}%)"
        for e in events[:rows]
    )


def decode_breakdown(p: SamPredictor, point: np.ndarray, labels: np.ndarray, n: int) -> str:
    """Median milliseconds of each stage of a one-point decode (3 masks) in exact mode, called
    back to back on one predictor (the table's turns start on the other implementation's
    caches; here every call follows one of the same stage)."""
    from anyseg.modeling.shared_decode import decode_low_res_masks, decode_prompts
    from anyseg.ops.transforms import upscale_logits_separable

    model = p.model
    assert p.input_size is not None and p.original_size is not None
    coords = torch.as_tensor(p.transform_coords(point), dtype=torch.float)[None]
    label_t = torch.as_tensor(labels, dtype=torch.int)[None]
    with torch.inference_mode():
        sparse, _ = p.embed_prompts(coords, label_t)
        tokens = decode_prompts(model, p.image_side(), sparse, p.decoder, True)
        chosen = torch.arange(1)
        low_res = decode_low_res_masks(model, tokens, chosen, p.decoder)
        input_size, original_size = p.input_size, p.original_size
        stages: dict[str, Callable[[], object]] = {
            "prompt encoder": lambda: p.embed_prompts(coords, label_t),
            "two-way transformer and IoU head": lambda: decode_prompts(
                model, p.image_side(), sparse, p.decoder, True
            ),
            "output upscaling and hypernetworks (256x256 logits)": lambda: decode_low_res_masks(
                model, tokens, chosen, p.decoder
            ),
            "upscaling to the image size and threshold": lambda: (
                upscale_logits_separable(low_res, p.long_side, input_size, original_size)
                > model.mask_threshold
            ),
            "whole predict()": lambda: p.predict(point, labels, multimask_output=True),
        }
        times = median_times(stages, n)
    return "; ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="vit_b", help="model size (vit_b, vit_l, vit_h, tiny, test)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed encoder runs (median)")
    parser.add_argument("--decode-repeats", type=int, default=20, help="timed decode runs (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--chosen-path-only",
        action="store_true",
        help="time fast mode's chosen path only (not also the paths it rejected here)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the top-ops profile")
    parser.add_argument(
        "--family",
        choices=sorted(FAMILY_PRESETS),
        help="time this family's released architecture next to vit_b (see the docstring)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="time this checkpoint (any size, e.g. src/anyseg/weights/default.safetensors) "
        "instead of a random --preset model",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.family:
        bench_family(args.family, args.repeats, args.decode_repeats, args.threads)
        return
    header = describe_machine(args.threads)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "weights.pth"
        source = load(args.checkpoint) if args.checkpoint else build_sam(get_preset(args.preset))
        save(source.float(), ckpt)
        del source
        model = load(ckpt)
        ref_module = import_reference()
        ref = None
        if ref_module is not None and (
            args.checkpoint or args.preset in ("vit_b", "vit_l", "vit_h")
        ):
            arch = model.config if args.checkpoint else args.preset
            ref = ref_module.SamPredictor(build_reference_sam(ref_module, arch, ckpt))
    name = args.checkpoint or args.preset

    exact = SamPredictor(model)
    predictors: dict[str, object] = {"exact": exact}
    fast_paths = [choose_fast_path("cpu")] + ([] if args.chosen_path_only else other_fast_paths())
    for path in fast_paths:
        label = f"fast, {path.kind}" + ("" if path.reason == "forced" else " (chosen)")
        predictors[label] = SamPredictor(model, mode="fast", fast_path=path)
    if ref is not None:
        predictors["original"] = ref

    image = test_image(512)
    points64 = torch.rand(64, 1, 2, generator=torch.Generator().manual_seed(0)) * 1024
    stages = stages_for(image, points64, args.repeats, args.decode_repeats)
    rows = bench_predictors(predictors, stages)

    # Peak memory of the encoder and of the 64-prompt call, beyond what is already resident
    memory: dict[str, dict[str, int | None]] = {}
    for label, p in predictors.items():
        _, enc = peak_growth(lambda p=p: p.set_image(image))  # type: ignore[attr-defined]
        _, dec = peak_growth(lambda p=p: stages["64 points, one predict_torch"][0](p))
        memory[label] = {"encoder 1024 px": enc, "64 points, one predict_torch": dec}

    # Agreement: exact vs the original; fast vs exact
    agreement = []
    point, labels = np.array([[300.0, 200.0]]), np.array([1])
    if ref is not None:
        exact.set_image(image)
        ref.set_image(image)
        a = exact.predict(point, labels, return_logits=True)[0]
        b = ref.predict(point, labels, return_logits=True)[0]
        agreement.append(
            f"exact vs original, 1 point, logits at 512x512: max |diff| {np.abs(a - b).max():.2e}"
        )
        la = stages["64 points, one predict_torch"][0](exact)[2]
        lb = stages["64 points, one predict_torch"][0](ref)[2]
        diff = float((la - lb).abs().max())
        agreement.append(f"exact vs original, 64 points, low-res logits: max |diff| {diff:.2e}")
    for label, p in predictors.items():
        if label.startswith("fast"):
            agreement.append(
                f"{label} vs exact, mask IoU over the fixture prompts: {fast_fidelity(exact, p)}"
            )  # type: ignore[arg-type]

    print(f"\n{name} (random weights), {image.shape[1]}x{image.shape[0]} image, median seconds")
    for line in header:
        print(line)
    if not args.chosen_path_only and not mkldnn_bf16_supported():
        print("bfloat16 not timed: no oneDNN bfloat16 kernels on this CPU (emulated, very slow)")
    names = list(predictors)
    print("\n| stage | " + " | ".join(names) + " | speed-up exact | speed-up fast | target |")
    print("|---|" + "---:|" * (len(names) + 2) + "---|")
    fast_label = names[1]
    for stage in stages:
        cells = " | ".join(f"{rows[n][stage] * 1e3:.1f} ms" for n in names)
        ratio_exact = ratio_fast = ""
        if ref is not None:
            ratio_exact = f"{rows['original'][stage] / rows['exact'][stage]:.2f}x"
            ratio_fast = f"{rows['original'][stage] / rows[fast_label][stage]:.2f}x"
        target = TARGETS.get(f"{stage}, exact", "")
        if stage == "encoder 1024 px":
            target += "; fast " + TARGETS["encoder 1024 px, fast"]
        print(f"| {stage} | {cells} | {ratio_exact} | {ratio_fast} | {target} |")
    for stage in ("encoder 1024 px", "64 points, one predict_torch"):
        cells = " | ".join(mib(memory[n][stage]) for n in names)
        print(f"| peak memory, {stage} | {cells} | | | ≤ original |")
    print()
    for line in agreement:
        print(line)
    if ref is None:
        print("(set ANYSEG_REFERENCE to a segment-anything checkout to time the original too)")
    exact.set_image(image)
    print("\none point, 3 masks, anyseg exact by stage (warm, median):")
    print(decode_breakdown(exact, point, labels, max(args.decode_repeats, 3)))
    if not args.no_profile:
        print("\ntop ops, anyseg exact (self CPU time, torch.profiler):")
        print("- encoder: " + top_ops(lambda: exact.set_image(image)))
        print("- 1 point, 3 masks: " + top_ops(lambda: exact.predict(point, labels)))
        print("- 64 points: " + top_ops(lambda: stages["64 points, one predict_torch"][0](exact)))
    print(f"load average at end: {load_average()}")


# --family: anyseg preset, the reference repository, and its reference architecture.
FAMILY_PRESETS = {"tinyvit": "vit_t", "hq": "hq_vit_b"}


def bench_family(family: str, repeats: int, decode_repeats: int, threads: int) -> None:
    """Latency of a family's released architecture next to vit_b (see the module docstring)."""
    import _family_reference as fam

    preset = FAMILY_PRESETS[family]
    specs = {
        "tinyvit": fam.RELEASED_SPECS["mobile_sam"],
        "hq": fam.FamilySpec("sam_hq", fam.ViTSpec(), hq=True),  # SAM-HQ's vit_b
    }
    spec = specs[family]
    predictors: dict[str, object] = {}
    torch.manual_seed(0)
    predictors["anyseg vit_b"] = SamPredictor(build_sam(get_preset("vit_b")))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "weights.pth"
        save(build_sam(get_preset(preset)), ckpt)
        predictors[f"anyseg {preset}"] = SamPredictor(load(ckpt))
        module = fam.import_reference(spec.repo)
        if module is not None:
            reference = fam.build_reference(module, spec)
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            reference.load_state_dict(state, strict=True)
            predictors[f"{spec.repo} {preset}"] = module.SamPredictor(fam.finish(reference))
    image = test_image(512)
    points64 = torch.rand(64, 1, 2, generator=torch.Generator().manual_seed(0)) * 1024
    with torch.no_grad():
        rows = bench_predictors(predictors, stages_for(image, points64, repeats, decode_repeats))
    print(
        f"\n{family}: {image.shape[1]}x{image.shape[0]} image, {threads} threads, "
        f"torch {torch.__version__}, median ms (random weights)"
    )
    names = list(predictors)
    print("| stage | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for stage in rows[names[0]]:
        cells = " | ".join(f"{rows[n][stage] * 1e3:.1f}" for n in names)
        print(f"| {stage} | {cells} |")
    params = {n: sum(p.numel() for p in predictors[n].model.parameters()) for n in names[:2]}  # type: ignore[attr-defined]
    print("params: " + ", ".join(f"{n} {v / 1e6:.1f} M" for n, v in params.items()))
    if len(names) == 2:
        print(f"(set {fam.ENV[spec.repo]} to time the family's own code too)")


if __name__ == "__main__":
    main()
