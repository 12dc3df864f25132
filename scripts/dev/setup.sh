#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for loce: .venv/ in the checkout root with torch, mmcv-full (compiled
# ops), mmdet 2.28.2, the other runtime/test dependencies and loce itself (editable).
#
# Environment variables (all optional):
#   PYTHON                  interpreter used to create .venv            (default: python3.11, else python3)
#   LOCE_TORCH_SPEC         pip requirements for torch/torchvision      (default: "torch==2.14.1 torchvision==0.29.1")
#   LOCE_CUDA=1             build mmcv-full's CUDA ops (needs nvcc matching torch.version.cuda);
#                           set TORCH_CUDA_ARCH_LIST (e.g. "9.0" for H100, "8.0" for A100) to keep the build short
#   LOCE_WHEEL_CACHE        where built mmcv-full wheels are kept       (default: ~/.cache/loce/wheels)
#   MAX_JOBS                parallel compile jobs for mmcv-full         (default: number of cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
MMCV_VERSION="1.7.2"
TORCH_SPEC="${LOCE_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
CACHE="${LOCE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loce/wheels}"
STAMP="$VENV/.loce-setup-done"

STEP="start"
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "setup: FAILED at step: $STEP (exit $rc). Fix the error above and rerun scripts/dev/setup.sh." >&2; rm -f "$STAMP"; fi' EXIT
step() { STEP="$1"; echo "setup: == $1"; }

# Fast path: nothing changed since the last successful set-up.
fingerprint() {
  cat "$ROOT/scripts/dev/setup.sh" "$ROOT/scripts/dev/build_mmcv_wheel.sh" "$ROOT/pyproject.toml" "$ROOT/requirements/"*.txt 2>/dev/null | sha256sum | cut -d' ' -f1
  echo "$TORCH_SPEC ${LOCE_CUDA:-0}"
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] && [ -x "$VENV/bin/loce" ] \
   && "$VENV/bin/python" -c 'import mmcv.ops, mmdet, lvis, loce_cli' 2>/dev/null; then
  echo "setup: .venv is up to date (rm $STAMP to force a re-check)"
  trap - EXIT
  exit 0
fi

step "create virtual environment at .venv"
if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then PY="$(command -v python3.11 || command -v python3)"; fi
  "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 9), sys.version' \
    || { echo "setup: Python >= 3.9 required (found $("$PY" --version))" >&2; exit 1; }
  "$PY" -m venv "$VENV"
fi
PYV="$VENV/bin/python"
PIP=("$PYV" -m pip --disable-pip-version-check)

step "install build tools (setuptools<81 for mmcv's pkg_resources, wheel, ninja)"
"${PIP[@]}" install -q "setuptools==80.9.0" "wheel" "ninja"

step "install torch ($TORCH_SPEC)"
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC

step "install runtime and test dependencies (requirements/runtime.txt, requirements/test.txt)"
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/test.txt"

TORCH_VER="$("$PYV" -c 'import torch; print(torch.__version__.split("+")[0])')"
TORCH_CUDA="$("$PYV" -c 'import torch; print(torch.version.cuda or "")')"
PY_TAG="$("$PYV" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
if [ "${LOCE_CUDA:-0}" = "1" ]; then
  step "check nvcc for CUDA ops"
  [ -n "$TORCH_CUDA" ] || { echo "setup: LOCE_CUDA=1 but this torch has no CUDA (torch $TORCH_VER)" >&2; exit 1; }
  command -v nvcc >/dev/null || { echo "setup: LOCE_CUDA=1 but nvcc is not on PATH (need CUDA $TORCH_CUDA)" >&2; exit 1; }
  NVCC_CUDA="$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')"
  if [ "${NVCC_CUDA%%.*}" != "${TORCH_CUDA%%.*}" ]; then
    echo "setup: nvcc is CUDA $NVCC_CUDA but torch was built with CUDA $TORCH_CUDA; install a matching toolkit" >&2
    exit 1
  fi
  FLAVOUR="cu${TORCH_CUDA//./}-${TORCH_CUDA_ARCH_LIST:-all}"
  FLAVOUR="${FLAVOUR// /_}"
else
  FLAVOUR="cpu"
fi
KEY="mmcv_full-$MMCV_VERSION-torch$TORCH_VER-$PY_TAG-$FLAVOUR"
KEY_DIR="$CACHE/$KEY"

installed_mmcv_ok() {
  "$PYV" - "$MMCV_VERSION" "$KEY" <<'PY'
import sys, pathlib
try:
    import mmcv
    from mmcv.ops import nms  # noqa: F401  (compiled ops load)
except Exception:
    sys.exit(1)
marker = pathlib.Path(mmcv.__file__).parent / ".loce-build-key"
sys.exit(0 if mmcv.__version__ == sys.argv[1] and marker.exists() and marker.read_text().strip() == sys.argv[2] else 1)
PY
}

if installed_mmcv_ok; then
  step "mmcv-full $MMCV_VERSION ($KEY) already installed"
else
  WHEEL="$(ls "$KEY_DIR"/mmcv_full-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    step "build mmcv-full $MMCV_VERSION from source ($FLAVOUR; about 10 minutes on 2 cores)"
    if [ "${LOCE_CUDA:-0}" = "1" ]; then CUDA_FLAG=1; else CUDA_FLAG=0; fi
    WHEEL="$(FORCE_CUDA=$CUDA_FLAG MMCV_VERSION=$MMCV_VERSION bash "$ROOT/scripts/dev/build_mmcv_wheel.sh" "$PYV" "$KEY_DIR" | tail -n1)"
  else
    step "reuse cached mmcv-full wheel $WHEEL"
  fi
  step "install mmcv-full $MMCV_VERSION"
  "${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL"
  "$PYV" -c 'import importlib.util as u, pathlib, sys; (pathlib.Path(u.find_spec("mmcv").origin).parent / ".loce-build-key").write_text(sys.argv[1])' "$KEY"
fi

step "install mmdet, lvis and tidecv (--no-deps: their needs are in requirements/runtime.txt and test.txt)"
"${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/nodeps.txt" -r "$ROOT/requirements/nodeps_test.txt"

step "install loce (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

step "verify: mmcv compiled ops, mmdet, lvis import; loce entry point"
"$PYV" -c 'import loce_cli.compat as c; c.apply(); import mmcv.ops, mmdet, lvis, torch; print("setup: torch", torch.__version__, "| mmcv", mmcv.__version__, "| mmdet", mmdet.__version__)'
"$VENV/bin/loce" --help >/dev/null

fingerprint > "$STAMP"
STEP="done"
echo "setup: OK  (activate with: source .venv/bin/activate)"
