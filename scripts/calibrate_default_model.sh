#!/usr/bin/env bash
# The CPU fine-tune of the bundled model's IoU head (configs/default_model_calibrate.toml): data,
# training with the image encoder frozen (embeddings cached on disk) and the head alone trained,
# and the held-out evaluation before and after. Its result is NOT shipped: on 100 held-out scenes
# it left the calibration error where it was (0.152 -> 0.156, Pearson r 0.70 -> 0.71) and moved
# the 1-point (most confident) mIoU from 0.427 to 0.422, so the bundled weights stay stage 3's,
# with recommended automatic-generation thresholds in their metadata instead
# (scripts/recommend_amg_thresholds.py; the model card says how they were chosen).
#
#   bash scripts/calibrate_default_model.sh [STEPS]      # from the repository root, after `make setup`
#
# STEPS overrides the config's step count. Writes runs/default_model_calibrate/ (the weights it
# started from as before.safetensors) and runs/calibrate_eval_{before,after}/.
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
$BIN/anyseg eval data/synth_heldout --checkpoint "$OUT/model.safetensors" -o runs/calibrate_eval_after \
    "${EVAL[@]}"
