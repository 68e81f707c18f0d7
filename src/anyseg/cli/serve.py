"""``anyseg serve IMAGE_DIR``: the annotation tool (a local web app around one SAM model)."""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyseg.cli.common import add_model_arguments, model_options, report_mode
from anyseg.server.config import ServerConfig
from anyseg.settings import add_arguments, from_arguments

if TYPE_CHECKING:
    from anyseg.server.results import FolderReport


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
    add_model_arguments(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice, one per core)",
    )
    add_arguments(
        parser.add_argument_group(
            "server options (ServerConfig; --prefill-* set pre-fill's generator, an AmgConfig)"
        ),
        ServerConfig,
        nested=True,
        base=ServerConfig(image_dir=Path(".")),
    )
    parser.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The :class:`ServerConfig` of the command line (the author defaults to the login name)."""
    options = model_options(args)
    config = from_arguments(
        ServerConfig, args, base=ServerConfig(image_dir=args.image_dir, model=options)
    )
    prefill = replace(config.prefill, amg=replace(config.prefill.amg, mode=options.mode))
    author = config.author
    if author is None:
        import getpass

        try:
            author = getpass.getuser()
        except (KeyError, OSError):
            author = None
    return replace(config, prefill=prefill, author=author)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from anyseg.errors import InvalidInputError
    from anyseg.server import create_app

    if not args.image_dir.is_dir():
        raise InvalidInputError(f"image folder {args.image_dir} does not exist or is not a folder")
    if args.threads is not None:
        if args.threads < 1:
            raise InvalidInputError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    config = build_config(args)
    print(f"anyseg serve: loading the model and scanning {args.image_dir} ...", flush=True)
    app = create_app(config)
    service = app.state.service
    report_mode(service.predictor.describe_mode(), config.model.mode)
    access = app.state.access
    sock = listening_socket(config.host, config.port)
    port = sock.getsockname()[1]
    report_folder(service.folder_report())
    if access.exposed:
        print(exposed_warning(config.host), file=sys.stderr, flush=True)
        remote = access.url(f"http://{_url_host(socket.gethostname())}:{port}/")
        print(f"anyseg serve: from other machines: {remote}", flush=True)
    local = access.url(f"http://{_url_host(config.host)}:{port}/")
    print(
        f"anyseg serve: {len(service.list_images())} images, project {service.project_dir}\n"
        f"anyseg serve: open {local} in a browser (Ctrl+C to stop)",
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


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and already listening.

    Bound first so the printed URL carries the real port (also with port 0); listening before
    the URL is printed so that a client which connects the moment it reads the URL is queued by
    the kernel until the server accepts, instead of refused while uvicorn is still starting.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
    # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _url_host(host: str) -> str:
    """The host as a URL shows it (wildcards as this machine's loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def exposed_warning(host: str) -> str:
    """What a person must know before serving beyond this machine."""
    return (
        f"anyseg serve: warning: listening on {host}, reachable from other machines. Anyone "
        "with the URL's token can see every image of the folder and add, change or delete "
        "masks; the traffic is plain HTTP, so the token can be read on the network. Prefer "
        "--host 127.0.0.1 with an SSH tunnel, or a TLS proxy (--allowed-host NAME)."
    )


def report_folder(report: FolderReport) -> None:
    """Say which files are not served and which images changed after they were annotated."""
    for skipped in report.skipped:
        print(f"anyseg serve: skipped {skipped.name}: {skipped.reason}", file=sys.stderr)
    for name, count in report.changed:
        print(
            f"anyseg serve: warning: {name} changed since it was annotated: its {count} earlier "
            "masks are kept apart (not shown as accepted, never exported)",
            file=sys.stderr,
        )
