#!/usr/bin/env bash
# One lease of a CUDA GPU (JAX and torch preinstalled, as on the lent H100/H200), about 12 minutes:
#  1. Omniglot with the Reptile paper's schedule (100k meta-iterations, its Table 3
#     settings) on the paper's random 1200/423 character split: 5-way and 20-way,
#     each trained with 10 shots per class and scored at 1 and 5 shots,
#     transductively and not, on 10,000 test tasks. A 5-way 100k run took about
#     160 s on an H200 (commit 4237b84); 20-way uses inner batches of 20, about 2x.
#  2. meta-training throughput against the PyTorch per-task loop on the same GPU.
# Usage: OUT=results_dir DATA=folder_with_omniglot_npz bash benchmarks/gpu_session.sh
# On a lent GPU machine (no package index there): run benchmarks/device_carry.sh here first and carry
# .whl (tensorboardX, which metajax's logs need, is not in that machine's image) and .device_data.
# META_ITERS=20 EVAL_TASKS=20 smoke-tests it on a CPU (step 2 needs a GPU and is skipped there).
# At most 7 files land in OUT (the device tool brings back 8, two folders deep).
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The torch peer and JAX share the GPU in the throughput step: allocate on demand.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DATA=${DATA:-$([ -d .device_data/omniglot ] && echo .device_data/omniglot || echo ../shared/data/omniglot)}
if compgen -G '.whl/*.whl' > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
RUN_LIMIT_S=${RUN_LIMIT_S:-400}
META_ITERS=${META_ITERS:-100000}
EVAL_TASKS=${EVAL_TASKS:-10000}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
has_gpu=$?

for ways in 5 20; do
  name="omniglot_random_${ways}w"
  timeout "$RUN_LIMIT_S" python3 -m metajax.cli reptile --dataset omniglot --data-dir "$DATA" --split random \
    --ways "$ways" --shots 1 --also-eval-shots 5 --train-shots 10 --inner-batch "$(( ways == 5 ? 10 : 20 ))" \
    --meta-iters "$META_ITERS" --eval-tasks "$EVAL_TASKS" --eval-chunk "$(( EVAL_TASKS < 2000 ? EVAL_TASKS : 2000 ))" \
    --log-every "$(( META_ITERS < 5000 ? META_ITERS : 5000 ))" --transductive --no-progress --workdir "/tmp/$name" \
    2>&1 | grep -v -i warning | tail -8
  cp "/tmp/$name/summary.json" "$OUT/${name}_summary.json"
  cp "/tmp/$name/metrics.jsonl" "$OUT/${name}_metrics.jsonl"
done

if [ "$has_gpu" -eq 0 ]; then
  python3 benchmarks/reptile_throughput.py --device gpu --meta-batch 5 25 --impls slices patches lax \
    --iters 40 --repeats 3 2>&1 | grep -v -i warning | tee "$OUT/throughput.log" | tail -14
  cp benchmarks/results/reptile_throughput/reptile_throughput_gpu.json "$OUT/"
fi
