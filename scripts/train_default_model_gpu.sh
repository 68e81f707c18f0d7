#!/usr/bin/env bash
# Train the bundled default model on one CUDA GPU within a fixed wall-clock budget.
#
#   bash scripts/train_default_model_gpu.sh [BUDGET_SECONDS]      # from the repository root
#
# 1. makes the data (`anyseg synth`: 20,000 training scenes, seed 1; 300 held-out, seed 987654),
# 2. times CAL_STEPS (default 60) steps of $CONFIG (default configs/default_model_gpu.toml),
# 3. trains for as many steps as fit in what is left of the budget (the lr schedule is laid out
#    for that step count), writing $OUT_DIR (default runs/default_model_gpu/).
# STEPS=N skips the timing and trains exactly N steps (what reproduces a recorded run).
# ANYSEG names the command (default: .venv/bin/anyseg; `python -m anyseg` works too).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${1:-480}
ANYSEG=${ANYSEG:-.venv/bin/anyseg}
CONFIG=${CONFIG:-configs/default_model_gpu.toml}
OUT_DIR=${OUT_DIR:-runs/default_model_gpu}
WORKERS=$(nproc)
export OMP_WAIT_POLICY=PASSIVE

[ -d data/synth_train_gpu ] || $ANYSEG synth data/synth_train_gpu --count 20000 --seed 1 --size 256 --workers "$WORKERS"
[ -d data/synth_heldout ] || $ANYSEG synth data/synth_heldout --count 300 --seed 987654 --size 256 --workers "$WORKERS"

if [ -z "${STEPS:-}" ]; then
    rm -rf /tmp/anyseg_calibrate
    $ANYSEG train --config "$CONFIG" --out /tmp/anyseg_calibrate --steps "${CAL_STEPS:-60}" --quiet >/dev/null
    RATE=$(python3 - <<'PY'
import csv
rows = list(csv.DictReader(open("/tmp/anyseg_calibrate/metrics.csv")))
print(float(rows[-1]["steps_per_s"]))
PY
)
    NOW=$(date +%s)
    LEFT=$(( BUDGET - (NOW - START) - 45 ))   # start-up, held-out evaluations and the final save
    STEPS=$(python3 -c "print(max(100, int($RATE * $LEFT)))")
    echo "calibration: $RATE steps/s; training $STEPS steps in about $LEFT s"
fi
$ANYSEG train --config "$CONFIG" --out "$OUT_DIR" --steps "$STEPS"
