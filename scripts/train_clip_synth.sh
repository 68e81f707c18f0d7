#!/usr/bin/env bash
# Reproduces the bundled CLIP, src/anyseg/weights/clip_synth.safetensors, and its model-card
# section, from scratch on a CPU (about 30-40 minutes of training on a quiet 2-core machine):
#   1. data: `anyseg synth` 5,000 training scenes (seed 1) and 300 held-out scenes (seed 987654,
#      never trained on), the folders the default SAM model's recipes use; folders written before
#      the generator recorded mask attributes are rewritten (same images, now with attributes);
#   2. `anyseg clip train` with configs/clip_synth.toml (held-out evaluation every 250 steps);
#   3. `anyseg clip eval` of the result on the held-out scenes, twice: the crops as evaluated by
#      default (background kept), and with the background zeroed;
#   4. the weights into src/anyseg/weights/ and the model card's CLIP section from the records.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/clip_synth}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$(dirname "$OUT")"

synth() {  # folder count seed
    if [ ! -d "$1" ] || ! grep -q '"attributes"' "$1/annotations/synth_000000.json" 2>/dev/null; then
        $BIN/anyseg synth "$1" --count "$2" --seed "$3" --size 256 --workers 2 --overwrite
    fi
}
synth data/synth_train 5000 1
synth data/synth_heldout 300 987654

$BIN/anyseg clip train --config configs/clip_synth.toml --data data/synth_train \
    --val data/synth_heldout --out "$OUT" 2>&1 | tee "$OUT.log"
$BIN/anyseg clip eval data/synth_heldout --clip "$OUT/clip.safetensors" -o "${OUT}_eval"
$BIN/anyseg clip eval data/synth_heldout --clip "$OUT/clip.safetensors" -o "${OUT}_eval_zeroed" \
    --zero-background
cp "$OUT/clip.safetensors" src/anyseg/weights/clip_synth.safetensors
$BIN/python scripts/write_clip_card.py --run "$OUT" --log "$OUT.log" --eval "${OUT}_eval" \
    --eval-zeroed "${OUT}_eval_zeroed" --weights src/anyseg/weights/clip_synth.safetensors
