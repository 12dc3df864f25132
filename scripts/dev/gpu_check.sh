#!/usr/bin/env bash
# The device check, in one run: everything loce must show on a GPU, with a log and a JSON summary in $OUT.
#
# On the lent GPU machine (no network; Python 3.12 + torch 2.11 there), with the wheels from
# scripts/dev/gpu_kit.sh in .gpukit/ (name it in the device tool's `carry`):
#     bash scripts/dev/gpu_check.sh
# On any machine with loce installed: KIT_PY=.venv/bin/python bash scripts/dev/gpu_check.sh
# Rehearsal without a GPU (same steps on the CPU): GPU_FLAGS= BENCH_DEVICE=cpu KIT_PY=... bash scripts/dev/gpu_check.sh
# Steps (each time-limited, each logged, a failure does not stop the rest):
#   doctor; the gpu-marked tests (CUDA sync-free step, host memory with a CUDA model, routed RoIAlign/NMS on
#   CUDA vs mmcv on CPU, mmcv's scatter, an NCCL DDP train step, RNG states from the GPU); base training, LOCE fine-tune and evaluation
#   with --gpus 1 on a tiny synthetic set;
#   bench_core on CUDA (EBL vs CE, memory push+sample vs a copy, LVIS v1 scale, with a profile of the step);
#   bench_postprocess on CUDA (mask paste + RLE at 1333x800 with 300 masks: loce's path vs mmdet's, identical RLEs);
#   mixed precision (docs/MIXED_PRECISION.md): tests/mmdet_ext/test_amp_gpu.py as its own step (fp16/bf16 steps,
#   sync-free tracker/memory under autocast, GradScaler through a resume, 2 ranks sharing the GPU over gloo);
#   then a LOCE fine-tune with --amp fp16 and its eval with --amp bf16, and bench_amp (fp32 vs bf16 vs fp16 iteration
#   time and peak memory, synthetic config and the R50 LVIS config at real shape).
# Within a 10-minute device call: ONLY="env synth train_base amp_gpu_tests finetune_fp16 eval_bf16 bench_amp" bash
# scripts/dev/gpu_check.sh runs just the mixed-precision part (finetune_fp16 needs train_base's checkpoint).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/loce-gpu-check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
PY="${KIT_PY:-python3}"
if [ -z "${KIT_PY:-}" ] && [ -d .gpukit ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/loce-site \
    .gpukit/*.whl >>"$LOG" 2>&1 || { echo "gpu_check: installing .gpukit failed (see $LOG)"; exit 1; }
  export PYTHONPATH="/tmp/loce-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
LOCE=("$PY" -m loce_cli --debug)  # a failure shows its traceback in the log
read -r -a GPU <<< "${GPU_FLAGS---gpus 1}"
BENCH_DEVICE="${BENCH_DEVICE:-cuda}"
W="${LOCE_GPU_WORK:-/tmp/loce-gpu-work}"
rm -rf "$W"
mkdir -p "$W"
declare -A RESULT

run() {  # run NAME SECONDS CMD...   (ONLY="name name ..." runs just those steps: one device call each share)
  local name="$1" limit="$2"
  shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then RESULT[$name]="skipped"; return 0; fi
  echo "=== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  RESULT[$name]="rc=$rc s=$((SECONDS - t0))"
  echo "=== $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$LOG"
  return $rc
}

D="$W/data"
TINY=(--cfg-options "data.train.ann_file=$D/annotations/lvis_v1_train.json" --cfg-options "data.train.img_prefix=$D/"
      --cfg-options "data.test.ann_file=$D/annotations/lvis_v1_val.json" --cfg-options "data.test.img_prefix=$D/"
      --cfg-options model.roi_head.bbox_head.num_classes=6 --cfg-options model.roi_head.mask_head.num_classes=6
      --cfg-options data.samples_per_gpu=4 --cfg-options data.workers_per_gpu=2 --cfg-options lr_config.warmup_iters=5
      --cfg-options log_config.interval=5)
BASE=configs/synthetic/mask_rcnn_r18_fpn_normed_synth.py
FT=configs/synthetic/loce_mask_rcnn_r18_fpn_normed_synth.py

# in GPU mode the env step fails without a usable CUDA device (the gpu tests would only be skipped)
REQUIRE_CUDA=$([ "$BENCH_DEVICE" = cuda ] && echo 1 || echo 0)
run env 60 "$PY" -c 'import sys, torch, torchvision, numpy; ok = torch.cuda.is_available(); print("torch", torch.__version__, "cuda", torch.version.cuda, ok, torch.cuda.get_device_name(0) if ok else "-", "torchvision", torchvision.__version__, "numpy", numpy.__version__); sys.exit(0 if ok or sys.argv[1] == "0" else 3)' "$REQUIRE_CUDA"
run doctor 120 "${LOCE[@]}" doctor
run gpu_tests 150 "$PY" -m pytest -q -rs -m gpu -p no:cacheprovider --ignore tests/mmdet_ext/test_amp_gpu.py tests
run amp_gpu_tests 420 "$PY" -m pytest -q -rs -m gpu -p no:cacheprovider tests/mmdet_ext/test_amp_gpu.py
run synth 120 "${LOCE[@]}" data synth --out "$D" --num-classes 6 --train-images 40 --val-images 16 --image-size 64 --seed 3
run train_base 150 "${LOCE[@]}" train base "$BASE" "${GPU[@]}" --work-dir "$W/base" --cfg-options runner.max_epochs=2 "${TINY[@]}" --json
run finetune 150 "${LOCE[@]}" finetune "$FT" --from "$W/base/latest.pth" "${GPU[@]}" --work-dir "$W/loce" --cfg-options runner.max_epochs=1 "${TINY[@]}" --json
run resume 150 "${LOCE[@]}" finetune "$FT" --from "$W/base/latest.pth" "${GPU[@]}" --work-dir "$W/loce" --resume --cfg-options runner.max_epochs=2 "${TINY[@]}" --json
run eval 150 "${LOCE[@]}" eval "$FT" "$W/loce/latest.pth" "${GPU[@]}" --out "$W/eval" "${TINY[@]}" --json
run inspect 120 "${LOCE[@]}" inspect memory "$W/loce/latest.pth" --json
run bench_core 150 "$PY" bench/bench_core.py --device "$BENCH_DEVICE" --repeats 20 --profile --json "$OUT/bench_core_$BENCH_DEVICE.json"
AMP_TRAIN=$([ "$BENCH_DEVICE" = cuda ] && echo fp16 || echo bf16)  # the CPU rehearsal: fp16 needs CUDA
AMP_CONFIGS=$([ "$BENCH_DEVICE" = cuda ] && echo synth,lvis || echo synth)
run finetune_fp16 150 "${LOCE[@]}" finetune "$FT" --from "$W/base/latest.pth" "${GPU[@]}" --amp "$AMP_TRAIN" --work-dir "$W/loce_fp16" --cfg-options runner.max_epochs=1 "${TINY[@]}" --json
run eval_bf16 150 "${LOCE[@]}" eval "$FT" "$W/loce_fp16/latest.pth" "${GPU[@]}" --amp bf16 --out "$W/eval_bf16" "${TINY[@]}" --json
run bench_amp 240 "$PY" bench/bench_amp.py --device "$BENCH_DEVICE" --configs "$AMP_CONFIGS" --iters 5 --json "$OUT/bench_amp_$BENCH_DEVICE.json"
run bench_postprocess 150 "$PY" bench/bench_postprocess.py --device "$BENCH_DEVICE" --threads 0 --rounds 10 --model-rounds 3 --json "$OUT/bench_postprocess_$BENCH_DEVICE.json"

{
  echo "{"
  first=1
  for k in env doctor gpu_tests amp_gpu_tests synth train_base finetune resume eval inspect bench_core finetune_fp16 eval_bf16 bench_amp bench_postprocess; do
    [ $first = 1 ] || echo ","
    first=0
    printf '  "%s": "%s"' "$k" "${RESULT[$k]:-not run}"
  done
  echo
  echo "}"
} > "$OUT/gpu_check_summary.json"
cp "$W"/base/*.log "$W"/loce/*.log "$W"/eval/metrics.json "$OUT/" 2>/dev/null
cat "$OUT/gpu_check_summary.json"
grep -q '"rc=[1-9]' "$OUT/gpu_check_summary.json" && exit 1 || exit 0
