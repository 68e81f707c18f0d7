"""Configuration of the annotation server (shared by the library, ``anyseg serve`` and tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from anyseg.automatic.config import AmgConfig
from anyseg.checkpoint import ModelOptions
from anyseg.errors import InvalidInputError
from anyseg.settings import opt

#: Name of the project folder created inside the image folder when ``--project`` is not given.
DEFAULT_PROJECT_DIRNAME = ".anyseg-project"
#: The project's SQLite file, inside the project folder.
DATABASE_NAME = "annotations.sqlite3"


def _prefill_amg() -> AmgConfig:
    # A 16x16 grid instead of the paper's 32x32, so one image returns in seconds on a CPU; every
    # other setting (the paper's thresholds included) is AmgConfig's own default.
    return AmgConfig(points_per_side=16)


@dataclass(frozen=True)
class PrefillConfig:
    """Settings of "pre-fill" (the semi-automatic stage): the automatic generator's, plus which
    proposals to leave out."""

    amg: AmgConfig = field(default_factory=_prefill_amg)
    # A proposal overlapping an already accepted mask by more than this IoU is not proposed again.
    skip_accepted_iou: float = field(
        default=0.8,
        metadata=opt("proposals overlapping an accepted mask by more IoU than this are left out"),
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.skip_accepted_iou <= 1.0:
            raise InvalidInputError(
                f"skip_accepted_iou must be in [0, 1], got {self.skip_accepted_iou}"
            )


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``create_app`` needs.

    Attributes:
        image_dir: folder whose images are annotated (read only; never written by the server
            except for the default project folder inside it).
        project_dir: folder holding the SQLite file and the embedding cache; None means
            ``image_dir / DEFAULT_PROJECT_DIRNAME``.
        model: the model to serve (checkpoint, device, mode; the commands' shared options).
        host, port: where ``anyseg serve`` listens (loopback by default).
        require_token: require the access token on loopback too (always required elsewhere).
        token: the access token (URL-safe, at least 16 characters; giving one also requires it
            on loopback); None: a random one per run where one is required.
        allowed_hosts: host names accepted in the Host header besides loopback names (and, when
            not on loopback, this machine's names and any IP address).
        follow_symlinks: serve symbolic links that lead out of the image folder.
        author: name stored with every accepted mask.
        max_body_bytes: largest request body accepted; larger ones get 413.
        embedding_lru_size: image embeddings kept in memory (the on-disk cache holds all).
        max_points: most point prompts accepted in one prediction request.
        recent_predictions: predictions whose low-res logits are kept, so that the next click
            can feed one back as the mask prompt (``previous`` in a predict request).
        decode_threads: CPU threads for a prompt decode (None: torch's setting, as the
            encoder). The decoder is small; on a busy CPU one thread answers faster and
            steadier than several that wait for each other.
    """

    image_dir: Path = field(metadata={"cli": False})  # the positional IMAGE_DIR
    project_dir: Path | None = field(
        default=None,
        metadata=opt(
            "project folder for the database and embedding cache (default: "
            "IMAGE_DIR/.anyseg-project)",
            flag="--project",
            metavar="DIR",
        ),
    )
    model: ModelOptions = field(default_factory=ModelOptions, metadata={"cli": False})
    host: str = field(
        default="127.0.0.1",
        metadata=opt("address to listen on (127.0.0.1: this machine only)", metavar="ADDR"),
    )
    port: int = field(default=8000, metadata=opt("port (0: any free port)"))
    require_token: bool = field(
        default=False,
        metadata=opt(
            "require the access token printed in the URL also on loopback (shared machines); "
            "it is always required when --host is not a loopback address"
        ),
    )
    token: str | None = field(default=None, metadata={"cli": False})
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata=opt(
            "more host names the server answers to (the Host header), e.g. a name behind a "
            "proxy or tunnel; loopback names always work, and when --host is not loopback also "
            "this machine's names and IP addresses",
            flag="--allowed-host",
            metavar="NAME[,NAME...]",
        ),
    )
    follow_symlinks: bool = field(
        default=False,
        metadata=opt("serve symbolic links in IMAGE_DIR that lead to files outside it"),
    )
    author: str | None = field(
        default=None,
        metadata=opt("name stored with every accepted mask (default: the login name)"),
    )
    max_body_bytes: int = field(default=1 << 20, metadata=opt("largest request body accepted"))
    embedding_lru_size: int = field(
        default=16, metadata=opt("image embeddings kept in memory (the disk cache keeps all)")
    )
    max_points: int = field(default=64, metadata=opt("most point prompts in one request"))
    recent_predictions: int = field(
        default=32, metadata=opt("predictions whose logits the next click can feed back")
    )
    decode_threads: int | None = field(
        default=None,
        metadata=opt(
            "CPU threads for each click's decode (default: torch's); 1 is steadier on a busy "
            "machine"
        ),
    )
    prefill: PrefillConfig = field(default_factory=PrefillConfig, metadata={"prefix": "prefill-"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"port must be in 0..65535, got {self.port}")
        for name in ("max_body_bytes", "embedding_lru_size", "max_points", "recent_predictions"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", self.token):
            raise InvalidInputError(
                "token must be at least 16 URL-safe characters (letters, digits, . _ ~ -)"
            )
        for name in self.allowed_hosts:
            if not re.fullmatch(r"[A-Za-z0-9.:_-]+", name):
                raise InvalidInputError(f"allowed host {name!r} is not a host name or address")
        if self.decode_threads is not None and self.decode_threads < 1:
            raise InvalidInputError(f"decode_threads must be at least 1, got {self.decode_threads}")

    @property
    def resolved_project_dir(self) -> Path:
        """The project folder (default inside the image folder)."""
        if self.project_dir is not None:
            return Path(self.project_dir)
        return Path(self.image_dir) / DEFAULT_PROJECT_DIRNAME

    @property
    def database_path(self) -> Path:
        return self.resolved_project_dir / DATABASE_NAME

    @property
    def embedding_dir(self) -> Path:
        return self.resolved_project_dir / ".anyseg" / "embeddings"
