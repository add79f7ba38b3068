#!/usr/bin/env bash
# One lease of a CUDA GPU (about 10 minutes of it) for the side-by-side figures the open issues ask
# of a GPU, each side on the same GPU, in order of what they settle:
#  1. MAML and first-order MAML meta-training against learn2learn (issue 5: at least 20x);
#  2. continual learning against Avalanche: naive, replay and EWC on Permuted MNIST (batch 128)
#     and Split MNIST (batch 10 and 128) (issue 4);
#  3. what strategies and 4 vmapped seeds cost against one (issue 4: N seeds in at most 2x one);
#  4. meta-training throughput on the one GPU through the sharded runner's path (issue 6).
# Each step has its own time limit and writes its results file as it goes, so a step cut short
# keeps what it measured and the next one still runs.
#
# Prepare here first (the GPU machine reaches no package index):
#   PY312=/path/to/python3.12 bash benchmarks/device_carry.sh   # fills .whl/ and .device_data/
# then, with the device tool: run(command="bash benchmarks/gpu_peers_session.sh",
#   carry=[".whl", ".device_data"], timeout_s=600). At most 7 files land in $OUT.
# STEP_SCALE=0.2 shortens every step's limit (a dry run of the plumbing on a CPU, where steps
# 1 and 2 refuse to start: they need a GPU).
set -uo pipefail
: "${OUT:?set OUT to the folder for the results}"
export PYTHONUNBUFFERED=1
# torch and JAX share the GPU in steps 1 and 2: JAX allocates on demand, not 75 % up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DATA=${DATA:-.device_data/mnist}
SCALE=${STEP_SCALE:-1}
mkdir -p "$OUT"
log="$OUT/session.log"

python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl \
  || { echo "installing the carried wheels failed: run benchmarks/device_carry.sh and carry .whl" | tee "$log"; exit 1; }
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import warnings; warnings.simplefilter("ignore")
import sys, jax, torch, learn2learn, avalanche, tensorboardX
print("python", sys.version.split()[0], "jax", jax.__version__, jax.devices(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available(), "learn2learn", learn2learn.__version__, "avalanche", avalanche.__version__)'
} 2>&1 | tee "$log"

step() {  # step NAME SECONDS COMMAND...: one benchmark under its time limit, its output in the log.
  local name=$1 limit
  limit=$(python3 -c "print(max(10, int($2 * $SCALE)))")
  shift 2
  echo "== $name (limit ${limit} s): $*" | tee -a "$log"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -i -E "warn|^ *$" | tee -a "$log" | tail -14
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$log"
}

step maml_vs_learn2learn 170 python3 benchmarks/maml_throughput.py --device gpu --repeats 2 \
  --output "$OUT/maml_throughput_gpu.json"
step continual_vs_avalanche 250 python3 benchmarks/continual_vs_avalanche.py --device gpu --data-dir "$DATA" \
  --cases permuted-mnist:128 split-mnist:10 split-mnist:128 --output "$OUT/continual_vs_avalanche_gpu.json"
step continual_cost 80 python3 benchmarks/continual_cost.py --data-dir "$DATA" --strategies naive replay ewc \
  --batch-sizes 10 128 --output "$OUT/continual_cost_gpu.json"
step device_scaling 50 python3 benchmarks/device_scaling.py --force-cpu-devices 0 --repeats 3
cp benchmarks/results/device_scaling/device_scaling_gpu.json "$OUT/" 2>/dev/null
