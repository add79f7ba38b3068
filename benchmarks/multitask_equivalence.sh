#!/bin/bash
# The same multi-task commands with an earlier checkout ($1) and this one: are the summaries' numbers equal?
# (git worktree add /tmp/old COMMIT; bash benchmarks/multitask_equivalence.sh /tmp/old)
# Each line: "old arguments | new arguments" (they differ where a flag moved: --pcgrad became --weighting pcgrad
# at 0b2ca7b; the lines below compare 4316715 with the registries of multi-task models and datasets).
set -e
OLD=${1:?usage: multitask_equivalence.sh OLD_CHECKOUT}
NEW=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mktemp -d)
D=$NEW/../shared/data/census_income
cases=(
 "mmoe|mmoe"
 "mmoe --weighting uncertainty|mmoe --weighting uncertainty"
 "mmoe --weighting gradnorm|mmoe --weighting gradnorm"
 "mmoe --weighting pcgrad|mmoe --weighting pcgrad"
 "mmoe --model ple --weighting gradnorm|mmoe --model ple --weighting gradnorm"
 "mmoe --model shared-bottom --tower-layers 2|mmoe --model shared-bottom --tower-layers 2"
 "mmoe --dataset census --data-dir $D --epochs 3|mmoe --dataset census --data-dir $D --epochs 3"
 "mmoe --dataset census --data-dir $D --epochs 2 --model shared-bottom --census-tasks income,college|mmoe --dataset census --data-dir $D --epochs 2 --model shared-bottom --census-tasks income,college"
)
i=0
for pair in "${cases[@]}"; do
  i=$((i+1)); old_args=${pair%%|*}; new_args=${pair##*|}
  (cd "$OLD" && PYTHONPATH=$OLD python -m metajax.cli $old_args --no-progress --workdir $OUT/old$i > /dev/null)
  (cd "$NEW" && python -m metajax.cli $new_args --no-progress --workdir $OUT/new$i > /dev/null)
  python - "$OUT" "$i" "$new_args" <<'PY'
import json, sys
out, i, args = sys.argv[1:]
old = json.load(open(f"{out}/old{i}/summary.json")); new = json.load(open(f"{out}/new{i}/summary.json"))
keys = ["tasks", "validation_tasks", "final_epoch_tasks", "best_epoch", "mean_gate_weights"]
same = all(old.get(k) == new.get(k) for k in keys)
def numbers(d):
    return [v for t in d.values() for v in t.values()]
diff = max(abs(a - b) for k in ("tasks", "final_epoch_tasks") for a, b in zip(numbers(old[k]), numbers(new[k])))
print(f"{'bit-identical' if same else 'DIFFERENT'}  max |score difference| {diff:.2e}  : {args}")
PY
done
