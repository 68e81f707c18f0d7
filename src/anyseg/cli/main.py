"""Entry point of the ``anyseg`` command.

Each subcommand lives in its own module of this package and exposes ``add_parser(subparsers)``,
which registers an ``argparse`` parser with ``set_defaults(run=...)``. Subcommand modules import
torch and friends inside ``run`` only, so ``anyseg --help`` stays fast.

Errors: a user-facing error (:class:`anyseg.errors.AnysegError`, ``ValueError``, ``OSError``) is
printed as one line on stderr and the exit status is non-zero; a traceback is shown only with
``ANYSEG_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# (module name, subcommand) in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "segment",
    "auto",
    "train",
    "eval",
    "calibrate",
    "synth",
    "clip",
    "serve",
    "export_annotations",
    "export",
    "info",
    "download",
    "convert",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anyseg",
        description=(
            "Segment Anything: promptable segmentation, automatic mask generation, training, "
            "evaluation and annotation. Every command uses the bundled default model unless "
            "--checkpoint names another (e.g. an official sam_vit_b_01ec64.pth)."
        ),
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"anyseg.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from anyseg._version import __version__

        print(__version__)
        return 0
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("anyseg: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("ANYSEG_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"anyseg {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
