"""Make the parity fixtures of MobileSAM, SAM-HQ and light HQ-SAM (tests/fixtures/families).

Each family's *own* reference code builds a small model with random, perturbed weights (seeded as
the original SAM's fixtures: see ``bench/_family_reference.py``), saves the weights in the
family's layout (``torch.save(state_dict)``, float16-exact values), and records what its
predictor gives for a few prompts on a small image: embeddings, logits, IoUs, masks. anyseg's
tests load those weight files by shape inference alone and must reproduce the outputs.

Checkouts (read-only, outside the repository), at the commits recorded in the README::

    git clone https://github.com/ChaoningZhang/MobileSAM /work/ref/MobileSAM   # 34bbbfd
    git clone https://github.com/SysCV/sam-hq /work/ref/sam-hq                # fb181f8
    PYTHONPATH=src python scripts/make_family_fixtures.py \\
        --mobilesam /work/ref/MobileSAM --samhq /work/ref/sam-hq -o tests/fixtures/families
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import _family_reference as ref  # noqa: E402

# Stored low-res logits are subsampled to 64x64 (every 4th of TinyViT's 256x256): the full-size
# logits at the image's own resolution are stored whole and carry the parity check.
LOW_RES_SIDE = 64
WEIGHTS = {
    "mobile_sam": "mobile_sam_small.pt",
    "sam_hq": "sam_hq_small.pth",
    "light_hq_sam": "sam_hq_tinyvit_small.pth",
}


def make_image() -> np.ndarray:
    """A 96x128 crop of the bundled example scene (non-square: resize and padding paths)."""
    scene = Image.open(REPO / "examples" / "scene.png").convert("RGB")
    return np.asarray(scene.crop((0, 96, 512, 480)).resize((128, 96), Image.BILINEAR))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def subsample(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in arrays.items():
        if key.endswith(".low_res_logits") and value.shape[-1] > LOW_RES_SIDE:
            step = value.shape[-1] // LOW_RES_SIDE
            out[key] = np.ascontiguousarray(value[..., ::step, ::step])
        elif key.endswith(".mask_input"):
            out[key] = value.astype(np.float16)  # exact: the case rounds it to float16
        else:
            out[key] = value
    return out


def make_family(name: str, module: Any, image: np.ndarray, out_dir: Path) -> dict[str, Any]:
    spec = ref.FIXTURE_SPECS[name]
    torch.manual_seed(0)
    model = ref.build_reference(module, spec)
    ref.perturb(model, seed=1)
    model = ref.finish(model)
    weights = out_dir / WEIGHTS[name]
    torch.save(ref.saved_state_dict(model), weights)
    predictor = module.SamPredictor(model)
    predictor.set_image(image)
    arrays = ref.run_cases(predictor, image.shape[:2], spec.hq)
    embedding = predictor.features.detach().float().numpy()
    arrays["embedding_sub2"] = np.ascontiguousarray(embedding[..., ::2, ::2])
    arrays["embedding_sum"] = np.array([embedding.sum(), np.abs(embedding).sum()], np.float64)
    np.savez_compressed(out_dir / f"ref_{name}.npz", **subsample(arrays))
    cases = sorted({k.split(".")[0] for k in arrays if "." in k})
    return {
        "reference": {
            "repository": "ChaoningZhang/MobileSAM"
            if spec.repo == "mobile_sam"
            else "SysCV/sam-hq",
            "commit": ref.MOBILESAM_COMMIT if spec.repo == "mobile_sam" else ref.SAMHQ_COMMIT,
            "package": ref.PACKAGE[spec.repo],
        },
        "spec": dataclasses.asdict(spec),
        "weights": {
            "file": weights.name,
            "sha256": sha256(weights.read_bytes()),
            "tensors": len(model.state_dict()),
            "params": sum(p.numel() for p in model.parameters()),
        },
        "cases": cases,
        "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in subsample(arrays).items()},
        "embedding_shape": list(embedding.shape),
    }


def git_head(path: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mobilesam", required=True, help="checkout of ChaoningZhang/MobileSAM")
    parser.add_argument("--samhq", required=True, help="checkout of SysCV/sam-hq")
    parser.add_argument("-o", "--out", default=str(REPO / "tests" / "fixtures" / "families"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, commit in ((args.mobilesam, ref.MOBILESAM_COMMIT), (args.samhq, ref.SAMHQ_COMMIT)):
        head = git_head(Path(path))
        if head != commit:
            print(f"warning: {path} is at {head}, the fixtures document {commit}", file=sys.stderr)
    image = make_image()
    Image.fromarray(image).save(out_dir / "image.png", optimize=True)
    modules = {
        "mobile_sam": ref.import_reference("mobile_sam", args.mobilesam),
        "sam_hq": ref.import_reference("sam_hq", args.samhq),
    }
    manifest: dict[str, Any] = {
        "image": {
            "file": "image.png",
            "size_hw": list(image.shape[:2]),
            "sha256_pixels": sha256(image.tobytes()),
        },
        "low_res_side": LOW_RES_SIDE,
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "threads": args.threads,
        },
        "families": {},
    }
    with torch.no_grad():
        for name, spec in ref.FIXTURE_SPECS.items():
            manifest["families"][name] = make_family(name, modules[spec.repo], image, out_dir)
            print(f"{name}: {manifest['families'][name]['weights']}")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
