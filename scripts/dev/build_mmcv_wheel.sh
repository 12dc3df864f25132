#!/usr/bin/env bash
# Build mmcv-full's wheel from source with its compiled ops, for the torch installed in PYTHON's environment.
# Used by scripts/dev/setup.sh (this project's .venv) and scripts/dev/gpu_kit.sh (the GPU image's stack).
#
#   bash scripts/dev/build_mmcv_wheel.sh PYTHON OUT_DIR      # prints the wheel's path as its last line
#
# Environment: FORCE_CUDA=1 for the CUDA ops (default 0: CPU ops), MAX_JOBS (default: all cores),
# MMCV_VERSION (default 1.7.2). The wheel lands in OUT_DIR atomically (no half-written file under its name).
set -euo pipefail

PY="$1"
OUT_DIR="$2"
MMCV_VERSION="${MMCV_VERSION:-1.7.2}"
PIP=("$PY" -m pip --disable-pip-version-check)

BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
"${PIP[@]}" download -q "mmcv-full==$MMCV_VERSION" --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" >&2
tar -xzf "$BUILD/mmcv-full-$MMCV_VERSION.tar.gz" -C "$BUILD"
SRC="$BUILD/mmcv-full-$MMCV_VERSION"
# torch >= 2.10 headers require C++20; mmcv 1.7.2 hard-codes C++17.
sed -i 's/std=c++17/std=c++20/g; s#std:c++17#std:c++20#g' "$SRC/setup.py"
grep -q 'std=c++20' "$SRC/setup.py" || { echo "build_mmcv_wheel: could not raise the C++ standard in mmcv's setup.py" >&2; exit 1; }
# getconf, not nproc: nproc honours OMP_NUM_THREADS (a one-job build under OMP_NUM_THREADS=1)
(cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(getconf _NPROCESSORS_ONLN)}" \
   "${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$BUILD/dist" . >&2)
BUILT="$(ls "$BUILD"/dist/mmcv_full-*.whl | head -n1)"
mkdir -p "$OUT_DIR"
cp "$BUILT" "$OUT_DIR/.partial.whl"
mv "$OUT_DIR/.partial.whl" "$OUT_DIR/$(basename "$BUILT")"
echo "$OUT_DIR/$(basename "$BUILT")"
