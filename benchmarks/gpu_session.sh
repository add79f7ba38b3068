#!/usr/bin/env bash
# One lease of a CUDA GPU (JAX and torch preinstalled, as on the lent H100/H200), about 9 minutes:
#  1. Omniglot 5-way 1-shot and 5-shot with the Reptile paper's full schedule
#     (100k meta-iterations), scored transductively and not on 10,000 test tasks;
#     on an H200 each took about 160 s (commit 4237b84).
#  2. meta-training throughput against the PyTorch per-task loop on the same GPU.
# Usage: OUT=results_dir DATA=folder_with_omniglot_npz bash benchmarks/gpu_session.sh
# At most 7 files land in OUT (the device tool brings back 8, two folders deep).
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The torch peer and JAX share the GPU in the throughput step: allocate on demand.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DATA=${DATA:-../shared/data/omniglot}
RUN_LIMIT_S=${RUN_LIMIT_S:-200}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

for shots in 1 5; do
  name="omniglot_5w${shots}s"
  timeout "$RUN_LIMIT_S" python3 -m metajax.cli reptile --dataset omniglot --data-dir "$DATA" --ways 5 \
    --shots "$shots" --train-shots 10 --meta-iters 100000 --eval-tasks 10000 --eval-chunk 2000 --log-every 5000 \
    --transductive --no-progress --workdir "/tmp/$name" 2>&1 | grep -v -i warning | tail -8
  cp "/tmp/$name/summary.json" "$OUT/${name}_summary.json"
  cp "/tmp/$name/metrics.jsonl" "$OUT/${name}_metrics.jsonl"
done

python3 benchmarks/reptile_throughput.py --device gpu --meta-batch 5 25 --impls slices patches lax \
  --iters 40 --repeats 3 2>&1 | grep -v -i warning | tee "$OUT/throughput.log" | tail -14
cp benchmarks/results/reptile_throughput_gpu.json "$OUT/"
