#!/usr/bin/env bash
# The fine-tune meant to give the bundled default model its text path (not learnt yet on the
# CPU: README, "SAM with text prompts"; configs/default_model_text.toml): data, training with
# the image encoder frozen (embeddings cached on disk) and 60% of the masks text-first,
# packaging as the bundled float16 weights, the held-out evaluation before and after (points,
# box, interactive, IoU-head calibration) and the text protocol, and the model card's text
# section.
#
#   bash scripts/train_default_model_text.sh [STEPS]      # from the repository root, after `make setup`
#
# STEPS overrides the config's step count. Writes runs/default_model_text/ and
# runs/text_eval_{before,after,text}/, and replaces src/anyseg/weights/default.safetensors (the
# previous weights are kept as runs/default_model_text/before.safetensors). The CLIP is the
# bundled one (src/anyseg/weights/clip_synth.safetensors; CLIP=FILE for another).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
BIN=${BIN:-.venv/bin}
WEIGHTS=src/anyseg/weights/default.safetensors
OUT=runs/default_model_text
EVAL=(--max-images 100 --max-masks-per-image 16 --points 9 --seed 0 --device cpu --quiet)
CLIP_ARGS=(${CLIP:+--clip "$CLIP"})
[ -d data/synth_heldout ] || $BIN/anyseg synth data/synth_heldout --count 300 --seed 987654 --size 256 --workers 2
[ -d data/synth_calib ] || $BIN/anyseg synth data/synth_calib --count 3000 --seed 2 --size 256 --workers 2
mkdir -p "$OUT"
[ -f "$OUT/before.safetensors" ] || cp "$WEIGHTS" "$OUT/before.safetensors"
[ -f runs/text_eval_before/report.json ] || \
    $BIN/anyseg eval data/synth_heldout --checkpoint "$OUT/before.safetensors" -o runs/text_eval_before "${EVAL[@]}"
start=$(date +%s)
$BIN/anyseg train --config configs/default_model_text.toml --init "$OUT/before.safetensors" \
    "${CLIP_ARGS[@]}" ${1:+--steps "$1"} 2>&1 | tee "$OUT/train.log"
echo "$(( $(date +%s) - start ))" > "$OUT/wall_seconds.txt"
$BIN/python -c "import anyseg; anyseg.save(anyseg.load('$OUT/model.safetensors'), '$WEIGHTS', half=True)"
$BIN/anyseg eval data/synth_heldout -o runs/text_eval_after "${EVAL[@]}"
$BIN/anyseg eval data/synth_heldout -o runs/text_eval_text --protocols text "${CLIP_ARGS[@]}" \
    --max-images 100 --max-masks-per-image 16 --seed 0 --device cpu --quiet
$BIN/python scripts/write_text_card.py --run "$OUT" --before runs/text_eval_before \
    --after runs/text_eval_after --text runs/text_eval_text --weights "$WEIGHTS"
