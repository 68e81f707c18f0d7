"""Write the starting weights of a from-scratch training run (``anyseg train --init FILE``).

    python scripts/make_init_checkpoint.py --config configs/default_model_cpu.toml -o init.safetensors

Builds the architecture of the training config's ``[model]`` table with a fixed seed, applies
:func:`anyseg.modeling.init.prompt_localizing_init`, and saves it in the official layout.
"""

from __future__ import annotations

import argparse

import torch

from anyseg.checkpoint import save
from anyseg.modeling import build_sam
from anyseg.modeling.init import prompt_localizing_init
from anyseg.training.config import load_config
from anyseg.training.state import sam_config_from_spec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="training config (.toml/.yaml)")
    parser.add_argument("-o", "--output", required=True, help=".safetensors or .pth to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attention-gain", type=float, default=3.0)
    parser.add_argument("--embedding-scale", type=float, default=0.1)
    args = parser.parse_args()
    cfg = load_config(args.config)
    torch.manual_seed(args.seed)
    model = build_sam(sam_config_from_spec(cfg.model, cfg.optim.drop_path_rate))
    prompt_localizing_init(model, args.attention_gain, args.embedding_scale, args.seed)
    print(save(model, args.output))


if __name__ == "__main__":
    main()
