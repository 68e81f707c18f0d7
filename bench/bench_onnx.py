"""ONNX latency: PyTorch vs onnxruntime (float32 and dynamic int8), decoder and encoder.

The decoder is the full-size SAM decoder (prompt encoder + mask decoder + upscaling; it is the
same size for vit_b, vit_l and vit_h), with random weights perturbed as the parity fixture's
(logits span about +-20, so the int8 deviation is not flattered by near-zero logits), timed
through the predictor API (``SamPredictor.predict`` vs ``OnnxPredictor.predict``) on a cached
embedding, masks upscaled to a 768x1024 image. The encoder rows time the "test" and "tiny"
presets' image encoders on one normalised image. Same thread count for PyTorch and
onnxruntime, idle threads of both sleeping instead of spinning (OMP_WAIT_POLICY=PASSIVE,
onnxruntime allow_spinning=0: on a shared, oversubscribed CPU a spinning OpenMP barrier makes
PyTorch several times slower at 2 threads); runs interleaved, median.

    .venv/bin/python bench/bench_onnx.py [--threads 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import median_times
from anyseg.config import PRESETS, SamConfig
from anyseg.export import (
    OnnxPredictor,
    compare_predictors,
    default_cases,
    export_decoder,
    export_encoder,
    quantize_decoder,
    random_image,
)
from anyseg.modeling import build_sam
from anyseg.predictor import SamPredictor

IMAGE_HW = (768, 1024)


def decoder_config() -> SamConfig:
    """vit_b's prompt encoder and decoder (1024 px, 64x64 embedding) with a small encoder:
    the decoder is what is timed, and building the vit_b encoder would only cost time."""
    cfg = dataclasses.replace(PRESETS["vit_b"], image_encoder=PRESETS["tiny"].image_encoder)
    for name in ("prompt_encoder", "mask_decoder"):
        assert getattr(cfg, name) == getattr(PRESETS["vit_h"], name)
    assert cfg.image_encoder.img_size == PRESETS["vit_b"].image_encoder.img_size
    return cfg


def bench_decoder(tmp: Path, threads: int, repeats: int) -> list[tuple[str, ...]]:
    torch.manual_seed(0)
    model = build_sam(decoder_config())
    with torch.no_grad():  # perturbed as the parity fixture, so logits span about +-20
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    export_decoder(model, tmp / "decoder.onnx")
    quantize_decoder(tmp / "decoder.onnx", tmp / "decoder_int8.onnx")
    ref = SamPredictor(model)
    ref.set_image(random_image(IMAGE_HW))
    assert ref.features is not None and ref.input_size is not None
    preds: dict[str, SamPredictor | OnnxPredictor] = {"PyTorch": ref}
    sizes = {"PyTorch": sum(p.numel() * 4 for p in model.mask_decoder.parameters())}
    for name, file in (
        ("onnxruntime fp32", "decoder.onnx"),
        ("onnxruntime int8", "decoder_int8.onnx"),
    ):
        p = OnnxPredictor(tmp / file, threads=threads)
        p.set_embedding(ref.features.numpy(), IMAGE_HW, ref.input_size)
        preds[name] = p
        sizes[name] = (tmp / file).stat().st_size
    point, labels = np.array([[400.0, 300.0]]), np.array([1])
    box = np.array([200.0, 150.0, 700.0, 600.0])
    cases = default_cases(IMAGE_HW)
    rows = []
    for prompt, call in (
        ("1 point, 3 masks", lambda p: p.predict(point, labels, multimask_output=True)),
        ("box, 1 mask", lambda p: p.predict(box=box, multimask_output=False)),
    ):
        t = median_times({n: (lambda p=p, c=call: c(p)) for n, p in preds.items()}, repeats)
        for name in preds:
            dev = "0"
            if name != "PyTorch":
                dev = f"{compare_predictors(ref, preds[name], cases).max_abs_logits:.1e}"
            size = f"{sizes[name] / 1e6:.1f} MB"
            rows.append((f"decoder ({prompt})", name, f"{t[name] * 1e3:.1f}", dev, size))
    return rows


def bench_encoder(tmp: Path, preset: str, threads: int, repeats: int) -> list[tuple[str, ...]]:
    torch.manual_seed(0)
    model = build_sam(PRESETS[preset])
    path = tmp / f"encoder_{preset}.onnx"
    export_encoder(model, path)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    s = model.img_size
    image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))

    def run_torch() -> torch.Tensor:
        with torch.inference_mode():
            return model.image_encoder(image)

    def run_ort() -> np.ndarray:
        return sess.run(None, {"image": image.numpy()})[0]

    t = median_times({"PyTorch": run_torch, "onnxruntime fp32": run_ort}, repeats)
    dev = float(np.abs(run_ort() - run_torch().numpy()).max())
    label = f"encoder {preset} ({s}x{s})"
    size = f"{path.stat().st_size / 1e6:.1f} MB"
    return [
        (label, "PyTorch", f"{t['PyTorch'] * 1e3:.1f}", "0", size),
        (label, "onnxruntime fp32", f"{t['onnxruntime fp32'] * 1e3:.1f}", f"{dev:.1e}", size),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for both runtimes")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per row")
    parser.add_argument(
        "--encoder-repeats", type=int, default=5, help="timed calls per encoder row"
    )
    parser.add_argument(
        "--encoder-presets",
        default="test,tiny",
        help="comma-separated presets whose image encoder is timed (vit_b is slow on a CPU)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    unknown = [p for p in args.encoder_presets.split(",") if p not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; known: {sorted(PRESETS)}")

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = bench_decoder(tmp, args.threads, args.repeats)
        for preset in args.encoder_presets.split(","):
            rows += bench_encoder(tmp, preset, args.threads, args.encoder_repeats)
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
        f"CPU ({os.cpu_count()} cores seen), OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
        f"decoder masks upscaled to {IMAGE_HW[0]}x{IMAGE_HW[1]}"
    )
    header = ("what", "runtime", "median ms", "max |logit| dev", "model size")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
