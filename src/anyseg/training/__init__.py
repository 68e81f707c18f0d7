"""Training SAM: the paper's recipe (§3, appendix A) on SA-1B-format or COCO data.

- :mod:`~anyseg.training.config`: :class:`TrainConfig` (frozen dataclasses, TOML/YAML files).
- :mod:`~anyseg.training.losses`: focal + dice (20 : 1), IoU-head MSE, min-over-3 selection.
- :mod:`~anyseg.training.prompts`: simulated interactive prompts (points, jittered boxes,
  error-region clicks, mask feedback).
- :mod:`~anyseg.training.step`: one encoder pass per image, 11 decoder passes per mask.
- :mod:`~anyseg.training.optim`: AdamW with layer-wise lr decay, warmup + step decay.
- :mod:`~anyseg.training.loop`: :func:`train` (checkpoints, resume, DDP, metrics, plots) and
  :func:`evaluate`.
"""

from anyseg.training.config import TrainConfig, config_from_dict, dump_toml, load_config, override
from anyseg.training.loop import EvalResult, TrainResult, evaluate, train
from anyseg.training.metrics import plot_training

__all__ = [
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "dump_toml",
    "evaluate",
    "load_config",
    "override",
    "plot_training",
    "train",
]
