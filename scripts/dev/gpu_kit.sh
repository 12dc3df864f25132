#!/usr/bin/env bash
# Builds the wheels that the GPU machine lent to some sessions lacks, and a local stand-in for that machine's
# Python stack to test them on (CPU).
#
# The GPU machine has no network; its image holds Python 3.12 with torch 2.11 (CUDA 13.0), torchvision 0.26,
# numpy 2.x, scipy, matplotlib, opencv-python-headless, typer, rich, tensorboard and pytest. Missing there:
# mmcv-full (compiled ops), mmdet, lvis, pycocotools, msgspec, numba and a few small pure-Python
# packages. This script
#   1. makes $KIT/venv (python3.12) with torch 2.11 / torchvision 0.26 / numpy 2 and the packages the image has,
#   2. builds mmcv-full 1.7.2's ops against that torch, CPU only (on CUDA tensors loce runs RoIAlign and NMS
#      through torchvision's kernels, so no CUDA build of mmcv is needed: loce_cli/mmdet_ext/cuda_ops.py),
#   3. downloads the other missing cp312 wheels into $KIT/wheels and copies them into .gpukit/ in the checkout
#      (ignored by git; name it in the device tool's `carry`), and installs them and loce into $KIT/venv.
# Then `KIT_PY=$KIT/venv/bin/python bash scripts/dev/gpu_check.sh` runs the device check on the CPU stand-in.
#
#   bash scripts/dev/gpu_kit.sh          # ~4 GB of downloads, ~10-15 minutes of build on 2 cores; idempotent
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="${LOCE_GPU_KIT:-${XDG_CACHE_HOME:-$HOME/.cache}/loce/gpu-kit}"
PY312="${PY312:-}"
if [ -z "$PY312" ]; then
  for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then PY312="$c"; break; fi
  done
fi
TORCH_SPEC="torch==2.11.0 torchvision==0.26.0"
MMCV_VERSION="1.7.2"
# wheels for the GPU image (cp312, manylinux); versions as in requirements/ where pinned there
MISSING=("mmdet==2.28.2" "lvis==0.5.3" "pycocotools>=2.0.8" "msgspec>=0.18,<1"
         "numba>=0.60,<0.70" "llvmlite>=0.43,<0.51" "terminaltables>=3.1" "addict>=2.4" "yapf==0.40.1" "platformdirs" "importlib-metadata>=6,<8" "tomli"
         "typer>=0.29,<0.30" "annotated-doc" "pydantic>=2" "pydantic-core" "annotated-types" "typing-inspection"
         "shellingham" "typing-extensions")
# (typer 0.29 as in requirements/runtime.txt: loce's help and choice options build on it; the image's own may be older)
# (importlib-metadata 8+ pulls lazy_importer; yapf 0.40.1 imports importlib_metadata)
# what the image already has (installed from PyPI into the stand-in venv only)
IMAGE_HAS=("numpy>=2" "scipy" "matplotlib" "opencv-python-headless" "pillow" "pyyaml" "packaging" "six"
           "rich" "tensorboard" "pytest" "zipp")

[ -n "$PY312" ] || { echo "gpu_kit: python3.12 not found (set PY312)" >&2; exit 1; }
mkdir -p "$KIT/wheels"
if [ ! -x "$KIT/venv/bin/python" ]; then
  "$PY312" -m venv "$KIT/venv"
fi
PIP=("$KIT/venv/bin/python" -m pip --disable-pip-version-check)
echo "gpu_kit: == torch stack ($TORCH_SPEC) and the image's packages"
"${PIP[@]}" install -q "setuptools==80.9.0" wheel ninja
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC "${IMAGE_HAS[@]}"

MMCV_WHEEL="$(ls "$KIT"/wheels/mmcv_full-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$MMCV_WHEEL" ]; then
  echo "gpu_kit: == build mmcv-full $MMCV_VERSION (CPU ops) against torch 2.11"
  MMCV_WHEEL="$(FORCE_CUDA=0 MMCV_VERSION=$MMCV_VERSION bash "$ROOT/scripts/dev/build_mmcv_wheel.sh" "$KIT/venv/bin/python" "$KIT/wheels" | tail -n1)"
fi

echo "gpu_kit: == cp312 wheels of the packages the image lacks"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_24_x86_64 --platform any -d "$KIT/wheels" "${MISSING[@]}" 2>/dev/null \
  || "${PIP[@]}" download -q --no-deps --python-version 3.12 --implementation cp --only-binary=:all: \
       -d "$KIT/wheels" "${MISSING[@]}"
# lvis and mmdet may only exist as source: build them into wheels (pure Python)
for spec in "mmdet==2.28.2" "lvis==0.5.3"; do
  name="${spec%%==*}"
  ls "$KIT"/wheels/"${name}"-*.whl >/dev/null 2>&1 || "${PIP[@]}" wheel -q --no-deps -w "$KIT/wheels" "$spec"
done

echo "gpu_kit: == install the kit and loce into the stand-in venv"
"${PIP[@]}" install -q --no-deps --force-reinstall "$KIT"/wheels/*.whl
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

mkdir -p "$ROOT/.gpukit"
rm -f "$ROOT"/.gpukit/*.whl
cp "$KIT"/wheels/*.whl "$ROOT/.gpukit/"
du -sh "$ROOT/.gpukit"
"$KIT/venv/bin/python" -c 'import loce_cli.compat as c; c.apply(); import torch, numpy, mmcv.ops, mmdet, lvis; print("gpu_kit: OK torch", torch.__version__, "numpy", numpy.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__)'
