#!/bin/bash
# The same meta-learning commands with an earlier checkout ($1) and this one: are the summaries' scores equal?
# (git worktree add /tmp/old COMMIT; bash benchmarks/meta_equivalence.sh /tmp/old)
set -e
OLD=${1:?usage: meta_equivalence.sh OLD_CHECKOUT (a worktree of the commit to compare against)}
NEW=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mktemp -d)
D=$NEW/../shared/data/omniglot
SHORT="--meta-iters 300 --log-every 100 --eval-tasks 200"
OMNI="--dataset omniglot --data-dir $D --split random --meta-iters 40 --log-every 20 --eval-tasks 100 --meta-batch 4"
cmds=(
 "reptile $SHORT"
 "maml $SHORT"
 "fomaml $SHORT"
 "anil $SHORT"
 "meta-sgd $SHORT"
 "maml $SHORT --second-order-steps 0 --inner-steps 2"
 "reptile $OMNI --train-shots 10 --also-eval-shots 5"
 "reptile $OMNI --reset-inner-optimizer --transductive"
 "maml $OMNI"
 "anil $OMNI --first-order"
 "meta-sgd $OMNI"
 "protonets $OMNI --also-eval-shots 5"
)
i=0
for c in "${cmds[@]}"; do
  i=$((i+1))
  (cd $OLD && PYTHONPATH=$OLD python -m metajax.cli $c --no-progress --workdir $OUT/old$i > /dev/null)
  (cd $NEW && python -m metajax.cli $c --no-progress --workdir $OUT/new$i > /dev/null)
  python - "$i" "$c" "$OUT" <<'PY'
import json, sys
i, c, out = sys.argv[1], sys.argv[2], sys.argv[3]
old = json.load(open(f"{out}/old{i}/summary.json")); new = json.load(open(f"{out}/new{i}/summary.json"))
keys = sorted(k for k in old if k.startswith("test_") or k == "final_training_loss")
same = all(old[k] == new[k] for k in keys) and keys == sorted(k for k in new if k.startswith("test_") or k == "final_training_loss")
head = "test_accuracy" if "test_accuracy" in old else "test_mse"
print(f"{'bit-identical' if same else 'DIFFERENT'}  {head} {old[head]:.6f} / {new[head]:.6f}  : {c}")
PY
done
