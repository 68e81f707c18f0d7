#!/usr/bin/env bash
# Train the bundled default model's stages on one CUDA GPU within a wall-clock budget.
#
#   bash scripts/train_default_model_gpu.sh [BUDGET_SECONDS]      # from the repository root
#
# 1. makes the data if it is not there (`anyseg synth`: TRAIN_IMAGES=20000 training scenes,
#    seed 1, and HELDOUT_IMAGES=300 held-out scenes, seed 987654, in DATA_DIR=data),
# 2. times CAL_STEPS (default 60) steps of CONFIG (default configs/default_model_gpu.toml),
# 3. trains for as many steps as fit in what is left of the budget (the lr schedule is laid out
#    for that step count), writing OUT_DIR (default runs/default_model_gpu).
# STEPS=N skips the timing and trains exactly N steps (what reproduces a recorded stage);
# otherwise at least MIN_STEPS (default 100).
# ANYSEG names the command (default: .venv/bin/anyseg; `python -m anyseg` works too).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${1:-480}
ANYSEG=${ANYSEG:-.venv/bin/anyseg}
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/default_model_gpu.toml}
OUT_DIR=${OUT_DIR:-runs/default_model_gpu}
DATA_DIR=${DATA_DIR:-data}
TRAIN_IMAGES=${TRAIN_IMAGES:-20000}
HELDOUT_IMAGES=${HELDOUT_IMAGES:-300}
WORKERS=$(nproc)
export OMP_WAIT_POLICY=PASSIVE
TRAIN=$DATA_DIR/synth_train_gpu
HELDOUT=$DATA_DIR/synth_heldout

[ -d "$TRAIN" ] || $ANYSEG synth "$TRAIN" --count "$TRAIN_IMAGES" --seed 1 --size 256 --workers "$WORKERS"
[ -d "$HELDOUT" ] || $ANYSEG synth "$HELDOUT" --count "$HELDOUT_IMAGES" --seed 987654 --size 256 --workers "$WORKERS"

if [ -z "${STEPS:-}" ]; then
    CAL=$(mktemp -d)
    trap 'rm -rf "$CAL"' EXIT
    $ANYSEG train --config "$CONFIG" --data "$TRAIN" --val "$HELDOUT" --out "$CAL/run" \
        --steps "${CAL_STEPS:-60}" --quiet >/dev/null
    RATE=$($PYTHON -c "import csv, sys; print(float(list(csv.DictReader(open(sys.argv[1])))[-1]['steps_per_s']))" "$CAL/run/metrics.csv")
    NOW=$(date +%s)
    LEFT=$(( BUDGET - (NOW - START) - 45 ))   # start-up, held-out evaluations and the final save
    STEPS=$($PYTHON -c "print(max(${MIN_STEPS:-100}, int($RATE * $LEFT)))")
    echo "calibration: $RATE steps/s; training $STEPS steps in about $LEFT s"
fi
$ANYSEG train --config "$CONFIG" --data "$TRAIN" --val "$HELDOUT" --out "$OUT_DIR" --steps "$STEPS"
