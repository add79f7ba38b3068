#!/bin/bash
# The same continual commands with an earlier checkout ($1) and this one: are the summaries' numbers equal?
# (git worktree add /tmp/old COMMIT; bash benchmarks/continual_equivalence.sh /tmp/old)
set -e
OLD=${1:?usage: continual_equivalence.sh OLD_CHECKOUT (a worktree of the commit to compare against)}
NEW=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mktemp -d)
D=$NEW/../shared/data
cmds=(
 "continual --strategy replay --seeds 3"
 "continual --strategy ewc --seeds 2"
 "continual --strategy lwf"
 "continual --strategy si"
 "continual --strategy agem"
 "continual --strategy replay-ewc --buffer-update experience"
 "continual --strategy joint"
 "continual --strategy online-ewc --ewc-decay 0.9"
 "continual --strategy replay --buffer-update step --buffer-policy class-balanced --batch-size 10 --replay-batch 20"
 "continual --benchmark split-mnist --scenario class-il --strategy replay --buffer-size 1000 --data-dir $D/mnist"
 "continual --benchmark permuted-mnist --strategy ewc --ewc-lambda 100 --experiences 3 --data-dir $D/mnist"
 "continual --benchmark split-omniglot --scenario task-il --experiences 3 --hidden 64 --batch-size 32 --data-dir $D/omniglot"
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
keys = ["final_average_accuracy", "accuracy_matrix_per_seed", "forgetting", "bwt", "fwt"]
same = all(old[k] == new[k] for k in keys)
import numpy as np
diff = np.max(np.abs(np.array(old["accuracy_matrix_per_seed"]) - np.array(new["accuracy_matrix_per_seed"])))
print(f"{'bit-identical' if same else 'DIFFERENT'}  max |accuracy difference| {diff:.2e}  final {old['final_average_accuracy']['mean']:.4f} / {new['final_average_accuracy']['mean']:.4f}  : {c}")
PY
done
