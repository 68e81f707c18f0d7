#!/usr/bin/env bash
# The CPU fine-tune that calibrated the bundled model's IoU head (configs/default_model_calibrate.toml):
# data, training with the image encoder frozen (embeddings cached on disk), packaging as the
# bundled float16 weights, and the held-out evaluation before and after.
#
#   bash scripts/calibrate_default_model.sh [STEPS]      # from the repository root, after `make setup`
#
# STEPS overrides the config's step count. Writes runs/default_model_calibrate/ and
# runs/calibrate_eval_{before,after}/, and replaces src/anyseg/weights/default.safetensors
# (the previous weights are kept as runs/default_model_calibrate/before.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
BIN=${BIN:-.venv/bin}
WEIGHTS=src/anyseg/weights/default.safetensors
OUT=runs/default_model_calibrate
EVAL=(--max-images 100 --max-masks-per-image 16 --points 9 --seed 0 --device cpu --quiet)
[ -d data/synth_heldout ] || $BIN/anyseg synth data/synth_heldout --count 300 --seed 987654 --size 256 --workers 2
[ -d data/synth_calib ] || $BIN/anyseg synth data/synth_calib --count 3000 --seed 2 --size 256 --workers 2
mkdir -p "$OUT"
[ -f "$OUT/before.safetensors" ] || cp "$WEIGHTS" "$OUT/before.safetensors"
[ -f runs/calibrate_eval_before/report.json ] || \
    $BIN/anyseg eval data/synth_heldout --checkpoint "$OUT/before.safetensors" -o runs/calibrate_eval_before "${EVAL[@]}"
$BIN/anyseg train --config configs/default_model_calibrate.toml --init "$OUT/before.safetensors" \
    ${1:+--steps "$1"}
$BIN/python -c "import anyseg; anyseg.save(anyseg.load('$OUT/model.safetensors'), '$WEIGHTS', half=True)"
$BIN/anyseg eval data/synth_heldout -o runs/calibrate_eval_after "${EVAL[@]}"
