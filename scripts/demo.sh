#!/usr/bin/env bash
# The main job until training lands: check the environment, generate the synthetic long-tailed dataset,
# show its class-frequency distribution. Rerunnable: the dataset is regenerated in place (--force).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCE="$ROOT/.venv/bin/loce"
WORK="${LOCE_DEMO_DIR:-$ROOT/work/demo}"

echo "== loce doctor"
"$LOCE" doctor
echo
echo "== loce data synth --out $WORK/data --force"
"$LOCE" data synth --out "$WORK/data" --force
echo
echo "== loce data stats $WORK/data/annotations/lvis_v1_train.json --plot $WORK/train_stats.png"
"$LOCE" data stats "$WORK/data/annotations/lvis_v1_train.json" --plot "$WORK/train_stats.png"
echo
echo "demo: OK (dataset in $WORK/data, plot in $WORK/train_stats.png)"
