#!/usr/bin/env bash
# Train a default model on CPU only (configs/default_model_cpu.toml: the recipe of the first
# bundled model; the model bundled now was trained on a GPU, see scripts/train_default_model_gpu.sh)
# from scratch: synthetic data, the starting weights, training, packaging to runs/, and the
# held-out evaluation. About 1 hour on 2 CPU cores.
#
#   bash scripts/train_default_model_cpu.sh            # from the repository root, after `make setup`
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
BIN=.venv/bin

# 1. Data: 5,000 training scenes (seed 1) and 300 held-out scenes (a seed never used for training).
[ -d data/synth_train ] || $BIN/anyseg synth data/synth_train --count 5000 --seed 1 --size 256 --workers 2
[ -d data/synth_heldout ] || $BIN/anyseg synth data/synth_heldout --count 300 --seed 987654 --size 256 --workers 2

# 2. Starting weights: the config's architecture, seed 0, prompt-localizing initialisation.
$BIN/python scripts/make_init_checkpoint.py --config configs/default_model_cpu.toml -o data/init_default.safetensors

# 3. Training (paper recipe with the deviations documented in the config).
$BIN/anyseg train --config configs/default_model_cpu.toml --out runs/default_model

# 4. Packaging: float16 safetensors with the exact config in its metadata.
$BIN/python - <<'PY'
import anyseg
model = anyseg.load("runs/default_model/model.safetensors")
print(anyseg.save(model, "runs/default_model/default.safetensors", half=True))
PY

# 5. Held-out evaluation (to use these weights as the default, copy them over
#    src/anyseg/weights/default.safetensors).
$BIN/anyseg eval data/synth_heldout --checkpoint runs/default_model/default.safetensors \
    -o runs/default_model/eval --max-images 100 --max-masks-per-image 16 --points 9 --seed 0
$BIN/anyseg eval data/synth_heldout --checkpoint runs/default_model/default.safetensors \
    -o runs/default_model/eval_amg --protocols amg --max-images 10 --seed 0
