#!/usr/bin/env bash
# Reproduce the bundled default model (src/anyseg/weights/default.safetensors) from scratch:
# synthetic data, the starting weights, training, packaging, and the held-out evaluation whose
# numbers are in src/anyseg/weights/MODEL_CARD.md. About 1 hour on 2 CPU cores.
#
#   bash scripts/train_default_model.sh            # from the repository root, after `make setup`
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
BIN=.venv/bin

# 1. Data: 5,000 training scenes (seed 1) and 300 held-out scenes (a seed never used for training).
[ -d data/synth_train ] || $BIN/anyseg synth data/synth_train --count 5000 --seed 1 --size 256 --workers 2
[ -d data/synth_heldout ] || $BIN/anyseg synth data/synth_heldout --count 300 --seed 987654 --size 256 --workers 2

# 2. Starting weights: the config's architecture, seed 0, prompt-localizing initialisation.
$BIN/python scripts/make_init_checkpoint.py --config configs/default_model.toml -o data/init_default.safetensors

# 3. Training (paper recipe with the deviations documented in the config).
$BIN/anyseg train --config configs/default_model.toml --out runs/default_model

# 4. Packaging: float16 safetensors with the exact config in its metadata.
$BIN/python - <<'PY'
import anyseg
model = anyseg.load("runs/default_model/model.safetensors")
print(anyseg.save(model, "src/anyseg/weights/default.safetensors", half=True))
PY

# 5. Held-out evaluation (the model card's numbers).
$BIN/anyseg eval data/synth_heldout --checkpoint src/anyseg/weights/default.safetensors \
    -o runs/default_model/eval --max-images 100 --max-masks-per-image 16 --points 9 --seed 0
$BIN/anyseg eval data/synth_heldout --checkpoint src/anyseg/weights/default.safetensors \
    -o runs/default_model/eval_amg --protocols amg --max-images 10 --seed 0
