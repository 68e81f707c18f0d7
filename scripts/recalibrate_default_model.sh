#!/usr/bin/env bash
# The IoU-head recalibration of the bundled default model (`anyseg calibrate`): the evaluation's
# point, box and interactive protocols on 40 calibration scenes that neither training nor the
# held-out set uses (seed 3), an affine correction per kind of output folded into the head, and
# the held-out evaluation of the result. Masks are unchanged; the recommended automatic-generation
# IoU threshold in the weights' metadata moves with the correction, so `anyseg auto` keeps the
# same masks.
#
#   bash scripts/recalibrate_default_model.sh [CHECKPOINT]      # from the repository root
#
# CHECKPOINT defaults to the bundled weights. Writes runs/recalibrate/{model.safetensors,
# recalibration.json,calibrate.log} and runs/recalibrate_eval/; copy the model over the bundled
# weights to ship it (scripts/write_model_card.py --recalibration runs/recalibrate then writes the
# card's section).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
BIN=${BIN:-.venv/bin}
IN=${1:-src/anyseg/weights/default.safetensors}
OUT=runs/recalibrate
[ -d data/synth_heldout ] || $BIN/anyseg synth data/synth_heldout --count 300 --seed 987654 --size 256 --workers 2
[ -d data/synth_recal ] || $BIN/anyseg synth data/synth_recal --count 100 --seed 3 --size 256 --workers 2
mkdir -p "$OUT"
rm -f "$OUT/model.safetensors"
$BIN/anyseg calibrate data/synth_recal --checkpoint "$IN" -o "$OUT/model.safetensors" --half \
    --json "$OUT/recalibration.json" --max-images 40 --max-masks-per-image 16 --points 9 --seed 0 \
    --device cpu --quiet | tee "$OUT/calibrate.log"
$BIN/anyseg eval data/synth_heldout --checkpoint "$OUT/model.safetensors" -o runs/recalibrate_eval \
    --max-images 100 --max-masks-per-image 16 --points 9 --seed 0 --device cpu --quiet
