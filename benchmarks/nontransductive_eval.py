"""What scoring without transduction costs: each query in a batch with its support set, looped or vmapped.

Non-transductive evaluation (the Reptile paper's) predicts every query example
in a batch of its own with the task's support set, so no query example sees
another's batch-norm statistics. ``metajax.meta.base.predict_queries`` loops
over the queries (``lax.map``); the way it had before vmapped them, which keeps
every query's batch of every task of an evaluation chunk in memory at once.
Both score one chunk of ProtoNets tasks (Omniglot-shaped random images, Conv4
with 64 filters) in a process of their own, alternately; printed: the best of
``--repeats`` jitted calls after compilation, the process's peak resident
memory, and the mean accuracy (equal for both: the same predictions).

    python benchmarks/nontransductive_eval.py

Writes ``benchmarks/results/nontransductive_eval/nontransductive_eval_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from metajax.data import TaskBatch
from metajax.meta import base, protonets
from metajax.models import Conv4
from metajax.train import provenance

VARIANTS = ("loop", "vmap")


def vmapped_predict_queries(apply_fn, params, support_x, query_x, *, transductive):
    """The former non-transductive prediction: every query's batch at once."""
    del transductive
    return jax.vmap(lambda q: apply_fn(params, jnp.concatenate([support_x, q[None]]))[-1])(query_x)


def measure(variant: str, args) -> dict:
    if variant == "vmap":  # protonets looks predict_queries up in metajax.meta.protonets' namespace.
        sys.modules["metajax.meta.protonets"].predict_queries = vmapped_predict_queries
    else:
        assert sys.modules["metajax.meta.protonets"].predict_queries is base.predict_queries
    keys = jax.random.split(jax.random.key(0), 3)
    ways, shots, queries = args.ways, args.shots, args.query_shots
    tasks = TaskBatch(
        jax.random.uniform(keys[0], (args.tasks, ways * shots, 28, 28, 1)),
        jnp.tile(jnp.arange(ways).repeat(shots), (args.tasks, 1)),
        jax.random.uniform(keys[1], (args.tasks, ways * queries, 28, 28, 1)),
        jnp.tile(jnp.arange(ways).repeat(queries), (args.tasks, 1)),
    )
    model = Conv4(num_classes=None)
    learner = protonets(model.apply, ways=ways, outer_optimizer=optax.adam(1e-3), transductive=False)
    state = learner.init(model.init(keys[2], tasks.support_x[0]))
    evaluate = jax.jit(learner.evaluate)
    scores = jax.block_until_ready(evaluate(state, tasks, key=keys[0]))  # Compiles.
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(evaluate(state, tasks, key=keys[0]))
        seconds.append(time.perf_counter() - start)
    return {
        "variant": variant,
        "seconds": min(seconds),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # Linux: kilobytes.
        "accuracy": float(scores["accuracy"].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks per chunk (the runners' default --eval-chunk)")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--query-shots", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="processes per variant, alternating")
    parser.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)  # One measurement, in a child process.
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    child = [sys.executable, __file__, *sys.argv[1:]]
    runs = []
    for _ in range(args.rounds):
        for variant in VARIANTS:
            done = subprocess.run([*child, "--only", variant], check=True, capture_output=True, text=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(f"{variant:>5}: {run['seconds']:.2f} s a chunk of {args.tasks} tasks, "
                  f"peak {run['peak_rss_gb']:.2f} GB, accuracy {run['accuracy']:.4f}", flush=True)  # fmt: skip
    best = {variant: min(r["seconds"] for r in runs if r["variant"] == variant) for variant in VARIANTS}
    print(f"loop against vmap: {best['vmap'] / best['loop']:.2f}x faster")
    output = (
        Path(__file__).resolve().parent
        / "results"
        / "nontransductive_eval"
        / f"nontransductive_eval_{jax.default_backend()}.json"
    )
    output.write_text(json.dumps({**provenance(), "config": vars(args), "runs": runs}, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
