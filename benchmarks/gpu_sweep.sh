#!/usr/bin/env bash
# One lease of a CUDA GPU (JAX preinstalled, as on the lent H100/H200), a few minutes: the cost of 1, 4
# and 16 runs of a sweep as one vmapped program against as many separate runs, for each family
# (benchmarks/sweep_cost.py), with runs 4x longer than on the CPU (--scale 4) and continual on
# Split MNIST.
# Usage: OUT=results_dir bash benchmarks/gpu_sweep.sh
# On a lent GPU machine (no package index there): run benchmarks/device_carry.sh here first and carry
# .whl (tensorboardX, which metajax's logs need) and .device_data (MNIST).
# SCALE=1 RUNS="1 4" smoke-tests it on a CPU.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
MNIST=${MNIST:-$([ -d .device_data/mnist ] && echo .device_data/mnist || echo ../shared/data/mnist)}
if compgen -G '.whl/*.whl' > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# shellcheck disable=SC2086  # RUNS is a list of numbers.
timeout "${RUN_LIMIT_S:-480}" python3 benchmarks/sweep_cost.py --scale "${SCALE:-4}" --runs ${RUNS:-1 4 16} \
  --mnist "$MNIST" --output "$OUT/sweep_cost_gpu.json" 2>&1 | grep -v -i warning | tee "$OUT/sweep_cost.log"
