#!/usr/bin/env bash
# Every benchmark on a CUDA GPU in one go: bf16 autocast, channels_last, compiled contenders; prints
# images/s, ratios to torchvision eager, and achieved FLOP/s as a share of the bf16 dense peak
# (H100 SXM / H200: ~989 TFLOP/s; set PEAK_TFLOPS for another GPU). Never run by the tests or CI.
#
#   bench/gpu.sh                       # the CPU benches' sizes, plus resnet50 inference at batch 256
#   bench/gpu.sh --device cpu --quick  # the same code path on the CPU, tiny sizes (a smoke test)
#
# Extra options go to every python -m bench.* call (the last occurrence of an option wins).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
PEAK=${PEAK_TFLOPS:-989}
BIG_BATCH=${BIG_BATCH:-256}

device=cuda
for arg in "$@"; do
  if [ "${prev:-}" = "--device" ]; then device=$arg; fi
  prev=$arg
done
if [ "${device%%:*}" = "cuda" ]; then
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "bench/gpu.sh: torch sees no CUDA device here; run it on a GPU machine, or add --device cpu --quick" >&2
    exit 2
  }
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
common=(--device cuda --amp bf16 --peak-tflops "$PEAK" --warmup 3 --repeats 20)

echo "== resnet50, batch 8 at 224 (the CPU target's shape) =="
"$PY" -m bench.backbone "${common[@]}" --channels-last --profile "$@"
echo "== resnet50, batch $BIG_BATCH at 224 (throughput) =="
"$PY" -m bench.backbone "${common[@]}" --channels-last --batch "$BIG_BATCH" "$@"
echo "== FCOS R-50-FPN at 512 batch 2, the demo's R-18-FPN at 96 batch 8 =="
"$PY" -m bench.fcos "${common[@]}" --compile --profile "$@"
