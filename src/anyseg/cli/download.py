"""``anyseg download``: fetch a released checkpoint of any family and verify it."""

from __future__ import annotations

import argparse
from typing import Any

from anyseg.releases import RELEASED_CHECKPOINTS


def _describe(key: str) -> str:
    info = RELEASED_CHECKPOINTS[key]
    size = f", {info.size_bytes / 1e6:.0f} MB" if info.size_bytes else ""
    return f"{key} ({info.name}, {info.family}{size})"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "download",
        help="download a released checkpoint (SAM vit_b/l/h, MobileSAM, SAM-HQ)",
        description=(
            "Download a released checkpoint from its publisher's URL and verify it before "
            "keeping it: SAM's files by their published SHA-256; MobileSAM's and SAM-HQ's, which "
            "publish none, by git's blob id (mobile_sam.pt) and by loading strictly as their "
            "architecture (pin a SHA-256 with --sha256). Checkpoints: "
            + "; ".join(_describe(k) for k in RELEASED_CHECKPOINTS)
        ),
    )
    p.add_argument("model", choices=list(RELEASED_CHECKPOINTS), help="which checkpoint")
    p.add_argument("-o", "--output-dir", default=".", help="folder to save into (default: .)")
    p.add_argument("--url", help="download from this mirror instead (still verified)")
    p.add_argument("--sha256", help="require this SHA-256 (overrides the published one)")
    p.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from anyseg.checkpoint import sha256_file
    from anyseg.releases import download, verification

    path = download(
        args.model, args.output_dir, url=args.url, sha256=args.sha256, timeout=args.timeout
    )
    info = RELEASED_CHECKPOINTS[args.model]
    print(f"{path} ({verification(info, args.sha256)}; sha256 {sha256_file(path)})")
    return 0
