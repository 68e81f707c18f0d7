"""Per-step metrics to CSV and TensorBoard, and the loss-curve plot.

``metrics.csv`` has one row per optimizer step (columns :data:`TRAIN_COLUMNS`); ``eval.csv`` one
row per held-out evaluation (:data:`EVAL_COLUMNS`). Rows are appended and flushed as they come, so
a resumed run continues the same files.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRAIN_COLUMNS = (
    "step",
    "lr",
    "loss",
    "focal",
    "dice",
    "iou_mse",
    "iou_first",
    "iou_last",
    "masks",
    "steps_per_s",
    "elapsed_s",
    "text_iou_first",
)
EVAL_COLUMNS = ("step", "loss", "iou_first", "iou_last", "masks", "images")


class CsvLog:
    """A CSV file of rows with fixed columns, flushed per row; on resume, rows after
    ``resume_from`` are dropped first."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_from: int | None) -> None:
        self.columns = columns
        rows: list[dict[str, str]] = []
        if resume_from is not None and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_from]
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


class MetricsLogger:
    """Writes ``metrics.csv``/``eval.csv`` (and TensorBoard events when available) in
    ``out_dir``. On resume, rows after ``resume_step`` are dropped first."""

    def __init__(self, out_dir: Path, tensorboard: bool, resume_step: int | None = None) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.train_csv = CsvLog(out_dir / "metrics.csv", TRAIN_COLUMNS, resume_step)
        self.eval_csv = CsvLog(out_dir / "eval.csv", EVAL_COLUMNS, resume_step)
        self.tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # tensorboard is an optional dependency
                self.tb = None

    def log_train(self, row: Mapping[str, Any]) -> None:
        self.train_csv.write(row)
        if self.tb is not None:
            for k in ("lr", "loss", "focal", "dice", "iou_mse", "iou_first", "iou_last"):
                self.tb.add_scalar(f"train/{k}", row[k], row["step"])

    def log_eval(self, row: Mapping[str, Any]) -> None:
        self.eval_csv.write(row)
        if self.tb is not None:
            for k in ("loss", "iou_first", "iou_last"):
                self.tb.add_scalar(f"val/{k}", row[k], row["step"])

    def close(self) -> None:
        self.train_csv.close()
        self.eval_csv.close()
        if self.tb is not None:
            self.tb.close()


def read_rows(path: Path) -> list[dict[str, float]]:
    """The rows of a metrics CSV as floats (NaN for empty cells); [] when there is no file."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def smooth(values: list[float], window: int) -> list[float]:
    """Running mean over the last ``window`` values."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_training(run_dir: str | Path, png_path: str | Path | None = None) -> Path:
    """Draw the loss curve and first/last-interaction IoU of a run into a PNG.

    Reads ``metrics.csv`` (and ``eval.csv`` when it has rows) of ``run_dir``; writes
    ``run_dir/loss_curve.png`` unless ``png_path`` says otherwise. Returns the PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train = read_rows(run_dir / "metrics.csv")
    if not train:
        raise FileNotFoundError(f"{run_dir / 'metrics.csv'} has no rows to plot")
    evals = read_rows(run_dir / "eval.csv")
    steps = [r["step"] for r in train]
    window = max(1, len(train) // 50)
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    ax_loss.plot(steps, [r["loss"] for r in train], color="#9ecae1", lw=0.8, label="loss (step)")
    ax_loss.plot(
        steps,
        smooth([r["loss"] for r in train], window),
        color="#08519c",
        lw=1.6,
        label=f"loss (mean of {window})",
    )
    if evals:
        ax_loss.plot(
            [r["step"] for r in evals],
            [r["loss"] for r in evals],
            "o-",
            color="#d94801",
            label="held-out loss",
        )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (weighted focal + dice + IoU MSE)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    for key, color in (("iou_first", "#74c476"), ("iou_last", "#006d2c")):
        ax_iou.plot(
            steps,
            smooth([r[key] for r in train], window),
            color=color,
            label=f"train {key.replace('_', ' ')}",
        )
        if evals:
            ax_iou.plot(
                [r["step"] for r in evals],
                [r[key] for r in evals],
                "o--",
                color=color,
                label=f"held-out {key.replace('_', ' ')}",
            )
    ax_iou.set_xlabel("step")
    ax_iou.set_ylabel("mask IoU")
    ax_iou.set_ylim(0, 1)
    ax_iou.grid(alpha=0.3)
    ax_iou.legend()
    fig.suptitle(f"anyseg train: {run_dir.name}")
    fig.tight_layout()
    out = Path(png_path) if png_path is not None else run_dir / "loss_curve.png"
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


if __name__ == "__main__":  # python -m anyseg.training.metrics RUN_DIR [PNG]
    import sys

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m anyseg.training.metrics RUN_DIR [OUT.png]")
    print(plot_training(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None))
