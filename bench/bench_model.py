"""Image-encoder and prompt-decode latency: anyseg vs the original implementation.

Same weights (a random ``--preset`` model saved once and loaded into both), same image, same
process, same thread count. The original is timed when ``ANYSEG_REFERENCE`` points at a checkout
of facebookresearch/segment-anything (see bench/_reference.py).

    .venv/bin/python bench/bench_model.py                 # vit_b, ours only
    ANYSEG_REFERENCE=/path/to/segment-anything .venv/bin/python bench/bench_model.py
    .venv/bin/python bench/bench_model.py --checkpoint src/anyseg/weights/default.safetensors
    .venv/bin/python bench/bench_model.py --family tinyvit   # MobileSAM's vit_t next to vit_b
    .venv/bin/python bench/bench_model.py --family hq        # SAM-HQ vit_b next to vit_b

``--family`` times anyseg's model of that family (random weights, released architecture) beside
anyseg's vit_b in the same run, and the family's own code on the same weights when
``ANYSEG_MOBILESAM_REFERENCE`` / ``ANYSEG_SAMHQ_REFERENCE`` names a checkout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _reference import build_reference_sam, import_reference
from anyseg.checkpoint import load, save
from anyseg.config import get_preset
from anyseg.modeling import build_sam
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


def bench_predictors(
    predictors: dict[str, object], image, point, box, repeats: int, decode_repeats: int
) -> dict[str, dict[str, float]]:
    """Median times per stage for each predictor, runs interleaved so that background load
    hits every implementation alike."""
    labels = np.array([1])
    stages: dict[str, tuple[Callable[[object], object], int]] = {
        "encoder": (lambda p: p.set_image(image), repeats),  # type: ignore[attr-defined]
        "decode 1 point (3 masks)": (
            lambda p: p.predict(point, labels, multimask_output=True),  # type: ignore[attr-defined]
            decode_repeats,
        ),
        "decode box (1 mask)": (
            lambda p: p.predict(box=box, multimask_output=False),  # type: ignore[attr-defined]
            decode_repeats,
        ),
    }
    times: dict[str, dict[str, list[float]]] = {n: {s: [] for s in stages} for n in predictors}
    for stage, (fn, n) in stages.items():
        for p in predictors.values():  # warm-up
            fn(p)
        for _ in range(n):
            for name, p in predictors.items():
                start = time.perf_counter()
                fn(p)
                times[name][stage].append(time.perf_counter() - start)
    return {n: {s: statistics.median(v) for s, v in st.items()} for n, st in times.items()}


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

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "weights.pth"
        source = load(args.checkpoint) if args.checkpoint else build_sam(get_preset(args.preset))
        save(source.float(), ckpt)
        ours = SamPredictor(load(ckpt))
        ref_module = import_reference()
        ref = None
        if ref_module is not None and (
            args.checkpoint or args.preset in ("vit_b", "vit_l", "vit_h")
        ):
            arch = ours.model.config if args.checkpoint else args.preset
            ref = ref_module.SamPredictor(build_reference_sam(ref_module, arch, ckpt))
    name = args.checkpoint or args.preset

    image = test_image()
    point = np.array([[300.0, 400.0]])
    box = np.array([100.0, 150.0, 500.0, 600.0])
    predictors: dict[str, object] = {"anyseg": ours}
    if ref is not None:
        predictors["original"] = ref
    rows = bench_predictors(predictors, image, point, box, args.repeats, args.decode_repeats)
    if ref is not None:
        m_ours = ours.predict(point, np.array([1]), return_logits=True)[0]
        m_ref = ref.predict(point, np.array([1]), return_logits=True)[0]
        max_diff = float(np.abs(m_ours - m_ref).max())

    print(
        f"\n{name}, {image.shape[1]}x{image.shape[0]} image, {args.threads} threads, "
        f"torch {torch.__version__}, median seconds"
    )
    header = f"| {'stage':<26} | {'anyseg':>9} |"
    if ref is not None:
        header += f" {'original':>9} | {'speed-up':>8} |"
    print(header)
    print("|" + "-" * (len(header) - 2) + "|")
    for stage, t in rows["anyseg"].items():
        line = f"| {stage:<26} | {t * 1e3:>7.1f}ms |"
        if ref is not None:
            r = rows["original"][stage]
            line += f" {r * 1e3:>7.1f}ms | {r / t:>7.2f}x |"
        print(line)
    if ref is not None:
        print(f"\nmax |logit diff| anyseg vs original (1 point, full res): {max_diff:.2e}")
    else:
        print("\n(set ANYSEG_REFERENCE to a segment-anything checkout to time the original too)")


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
    image = test_image()
    point, box = np.array([[300.0, 400.0]]), np.array([100.0, 150.0, 500.0, 600.0])
    with torch.no_grad():
        rows = bench_predictors(predictors, image, point, box, repeats, decode_repeats)
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
