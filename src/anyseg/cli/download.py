"""``anyseg download``: fetch an official SAM checkpoint and verify its SHA-256."""

from __future__ import annotations

import argparse
from typing import Any

from anyseg.checkpoint import OFFICIAL_CHECKPOINTS


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "download",
        help="download an official SAM checkpoint (vit_b, vit_l, vit_h)",
        description=(
            "Download an official Segment Anything checkpoint from its published URL and verify "
            "its SHA-256 before keeping it. Sizes: "
            + ", ".join(f"{k} {v.size_bytes / 1e6:.0f} MB" for k, v in OFFICIAL_CHECKPOINTS.items())
        ),
    )
    p.add_argument("model", choices=sorted(OFFICIAL_CHECKPOINTS), help="which checkpoint")
    p.add_argument("-o", "--output-dir", default=".", help="folder to save into (default: .)")
    p.add_argument("--url", help="download from this mirror instead (the hash is still checked)")
    p.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anyseg.checkpoint import download

    path = download(args.model, args.output_dir, url=args.url, timeout=args.timeout)
    print(f"{path} (sha256 verified)")
    return 0
