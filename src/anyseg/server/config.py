"""Configuration of the annotation server (shared by the library, ``anyseg serve`` and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Name of the project folder created inside the image folder when ``--project`` is not given.
DEFAULT_PROJECT_DIRNAME = ".anyseg-project"
#: The project's SQLite file, inside the project folder.
DATABASE_NAME = "annotations.sqlite3"


@dataclass(frozen=True)
class PrefillConfig:
    """Automatic-mask-generator settings for "pre-fill".

    Lighter than the paper's defaults (32x32 points) so one image returns in seconds on a CPU;
    the thresholds are the original generator's, so only confident masks are proposed.
    """

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    # A proposal overlapping an already accepted mask by more than this IoU is not proposed again.
    skip_accepted_iou: float = 0.8


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``create_app`` needs.

    Attributes:
        image_dir: folder whose images are annotated (read only; never written by the server
            except for the default project folder inside it).
        project_dir: folder holding the SQLite file and the embedding cache; None means
            ``image_dir / DEFAULT_PROJECT_DIRNAME``.
        checkpoint: SAM checkpoint (.pth or .safetensors, official layout); None means the
            bundled default model.
        host, port: where ``anyseg serve`` listens (loopback by default).
        author: name stored with every accepted mask.
        max_body_bytes: largest request body accepted; larger ones get 413.
        embedding_lru_size: image embeddings kept in memory (the on-disk cache holds all).
        max_points: most point prompts accepted in one prediction request.
        recent_predictions: predictions whose low-res logits are kept, so that the next click
            can feed one back as the mask prompt (``previous`` in a predict request).
        device: torch device the model runs on.
        decode_threads: CPU threads for a prompt decode (None: torch's setting, as the
            encoder). The decoder is small; on a busy CPU one thread answers faster and
            steadier than several that wait for each other.
    """

    image_dir: Path
    project_dir: Path | None = None
    checkpoint: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    author: str | None = None
    max_body_bytes: int = 1 << 20
    embedding_lru_size: int = 16
    max_points: int = 64
    recent_predictions: int = 32
    device: str = "cpu"
    decode_threads: int | None = None
    prefill: PrefillConfig = PrefillConfig()

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
