#!/usr/bin/env bash
# One prepared run on a lent GPU host (H100/H200, 16 cores): CUDA tests, the model
# benchmark in bf16/fp32 side by side with transformers, and the decode benchmark
# across all cores. Meant to finish in under 5 minutes and print a short table.
#   usage (repo root on the GPU host): bash bench/gpu.sh
# Wheels missing on the host (decord, av) travel in .whl/ (see bench/RESULTS.md).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

echo "== CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -s tests/test_model_cuda.py tests/test_preprocess.py tests/test_jobs_encoder_cuda.py 2>&1 | grep -E "^\[|passed|failed|Error" | tail -25

echo "== model benchmark"
for args in "--dtype bf16 --batch 128" "--dtype bf16 --batch 128 --compile" "--dtype fp32 --batch 128"; do
  timeout 150 python3 bench/model.py --device cuda $args 2>&1 | tail -4
done

echo "== decode benchmark (16 cores)"
timeout 170 python3 bench/decode.py --rounds 2 --no-s3 --processes "$(nproc)" --reps 3 --cache /tmp/xclip_bench 2>&1 | tail -32
