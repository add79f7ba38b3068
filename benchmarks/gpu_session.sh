#!/usr/bin/env bash
# One lease of a CUDA GPU (JAX and torch preinstalled, as on the lent H100/H200):
#  1. meta-training throughput against the PyTorch per-task loop on the same GPU;
#  2. Omniglot 5-way 1-shot and 5-shot with the Reptile paper's settings, as
#     many of its 100k meta-iterations as fit in TRAIN_BUDGET_S (both scored
#     transductively and not on 10,000 test tasks).
# Usage: OUT=results_dir DATA=folder_with_omniglot_npz bash benchmarks/gpu_session.sh
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Several processes (JAX, the torch peer, two runs) share the GPU: allocate on demand.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DATA=${DATA:-../shared/data/omniglot}
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-300}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

python3 benchmarks/reptile_throughput.py --device gpu --meta-batch 5 25 --impls slices patches lax \
  --iters 60 --repeats 3 2>&1 | tee "$OUT/throughput.log"
cp benchmarks/results/reptile_throughput_gpu.json "$OUT/"

paper=(--dataset omniglot --data-dir "$DATA" --ways 5 --train-shots 10 --eval-tasks 10000 --eval-chunk 1000
       --log-every 1000 --transductive --no-progress)
# Calibrate: how many meta-iterations fit in the budget with two runs sharing the GPU.
python3 -m metajax.cli reptile "${paper[@]}" --shots 1 --meta-iters 3000 --eval-tasks 100 --eval-chunk 100 \
  --workdir "$OUT/calibration" > "$OUT/calibration.log" 2>&1
rate=$(python3 -c "import json; print(json.load(open('$OUT/calibration/summary.json'))['meta_tasks_per_second'])")
iters=$(python3 -c "print(min(100000, int($rate / 5 * $TRAIN_BUDGET_S / 2) // 1000 * 1000))")
echo "calibration: $rate tasks/s alone; running $iters meta-iterations per configuration" | tee "$OUT/plan.txt"
for shots in 1 5; do
  python3 -m metajax.cli reptile "${paper[@]}" --shots "$shots" --meta-iters "$iters" \
    --workdir "$OUT/omniglot_5w${shots}s" > "$OUT/omniglot_5w${shots}s.log" 2>&1 &
done
wait
for shots in 1 5; do tail -12 "$OUT/omniglot_5w${shots}s.log"; done
