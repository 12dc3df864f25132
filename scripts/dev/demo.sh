#!/usr/bin/env bash
# The main job: check the environment, then `loce quickstart` on the built-in synthetic long-tailed data
# (synthetic data -> base Mask R-CNN -> LOCE fine-tune). Rerunnable: finished steps are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCE="$ROOT/.venv/bin/loce"
WORK="${LOCE_DEMO_DIR:-$ROOT/work/quickstart}"

echo "== loce doctor"
"$LOCE" doctor
echo
echo "== loce quickstart --work-dir $WORK"
"$LOCE" quickstart --work-dir "$WORK"
echo
echo "== loce data stats $WORK/data/annotations/lvis_v1_train.json --plot $WORK/train_stats.png"
"$LOCE" data stats "$WORK/data/annotations/lvis_v1_train.json" --plot "$WORK/train_stats.png"
echo
echo "demo: OK (runs in $WORK/base and $WORK/loce)"
