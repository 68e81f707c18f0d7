"""``anyseg serve IMAGE_DIR``: the annotation tool (a local web app around one SAM model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="annotate a folder of images in the browser (the data engine's tool)",
        description=(
            "Start the annotation tool on IMAGE_DIR: click foreground/background points or drag "
            "boxes, see the mask at once, accept it; pre-fill proposes masks automatically. "
            "Accepted masks are stored in a SQLite project (default IMAGE_DIR/.anyseg-project) and "
            "exported as SA-1B or COCO from the page or with `anyseg export-annotations`."
        ),
    )
    parser.add_argument("image_dir", type=Path, metavar="IMAGE_DIR", help="folder of images")
    parser.add_argument(
        "--project",
        type=Path,
        default=None,
        metavar="DIR",
        help="project folder for the database and embedding cache "
        "(default: IMAGE_DIR/.anyseg-project)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        metavar="PATH",
        help="SAM checkpoint (.pth or .safetensors); default: the bundled model",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free)")
    parser.add_argument(
        "--decode-threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for each click's decode (default: as --threads); 1 is steadier on a "
        "busy machine",
    )
    parser.add_argument("--author", default=None, help="name stored with every accepted mask")
    parser.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice, one per core)",
    )
    parser.add_argument(
        "--prefill-points-per-side",
        type=int,
        default=16,
        metavar="N",
        help="point grid of the pre-fill generator (default 16, i.e. 256 points)",
    )
    parser.add_argument(
        "--prefill-pred-iou-thresh",
        type=float,
        default=0.88,
        metavar="T",
        help="pre-fill's predicted-IoU filter (default 0.88, the paper's; the bundled model "
        "wants about 0.35)",
    )
    parser.add_argument(
        "--prefill-stability-score-thresh",
        type=float,
        default=0.95,
        metavar="T",
        help="pre-fill's stability filter (default 0.95, the paper's; the bundled model wants "
        "about 0.85)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from anyseg.errors import InvalidInputError
    from anyseg.server import PrefillConfig, ServerConfig, create_app

    if not args.image_dir.is_dir():
        raise InvalidInputError(f"image folder {args.image_dir} does not exist or is not a folder")
    if not 0 <= args.port <= 65535:
        raise InvalidInputError(f"--port must be in 0..65535, got {args.port}")
    if args.threads is not None:
        if args.threads < 1:
            raise InvalidInputError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.decode_threads is not None and args.decode_threads < 1:
        raise InvalidInputError(f"--decode-threads must be at least 1, got {args.decode_threads}")
    if args.prefill_points_per_side < 1:
        raise InvalidInputError("--prefill-points-per-side must be at least 1")
    for flag, value in (
        ("--prefill-pred-iou-thresh", args.prefill_pred_iou_thresh),
        ("--prefill-stability-score-thresh", args.prefill_stability_score_thresh),
    ):
        if not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{flag} must be in [0, 1], got {value}")
    author = args.author
    if author is None:
        import getpass

        try:
            author = getpass.getuser()
        except (KeyError, OSError):
            author = None
    config = ServerConfig(
        image_dir=args.image_dir,
        project_dir=args.project,
        checkpoint=args.checkpoint,
        host=args.host,
        port=args.port,
        author=author,
        device=args.device,
        decode_threads=args.decode_threads,
        prefill=PrefillConfig(
            points_per_side=args.prefill_points_per_side,
            pred_iou_thresh=args.prefill_pred_iou_thresh,
            stability_score_thresh=args.prefill_stability_score_thresh,
        ),
    )
    print(f"anyseg serve: loading the model and scanning {args.image_dir} ...", flush=True)
    app = create_app(config)
    service = app.state.service
    # Bind first so the printed URL carries the real port (also with --port 0).
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
    # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(
        f"anyseg serve: {len(service.list_images())} images, project {service.project_dir}\n"
        f"anyseg serve: open http://{host}:{port}/ in a browser (Ctrl+C to stop)",
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl+C is how a person stops the server: not an error
    finally:
        service.close()
    print("anyseg serve: stopped", flush=True)
    return 0
