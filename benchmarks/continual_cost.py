"""What continual strategies and seeds cost: training time of Split MNIST, against naive and a matmul roof.

For each strategy, ``--seeds`` in {1, N} runs are trained together (vmapped, as the runner does)
through the 5 experiences of Split MNIST (class-IL, MLP 2 x 400, Adam, 1
epoch); the first experience is run once beforehand to compile, and the timed
figure is the training of all 5 experiences. Printed beside it: the FLOP/s
the naive run reaches (training FLOPs estimated as 3 x 2 x the forward
multiply-adds) and the FLOP/s of a plain jitted matmul with the MLP's largest
shape ([batch, 784] x [784, 400]).

    python benchmarks/continual_cost.py --data-dir ../shared/data/mnist

``--devices N`` splits the seed axis over N devices (the runner's
``--devices``); on a CPU force them first with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``.

Writes ``benchmarks/results/continual_cost/continual_cost_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.continual import Experience, continual_learner
from metajax.data.continual_streams import split_mnist
from metajax.data.mnist import load_mnist
from metajax.models import MLP
from metajax.options import options_read_by
from metajax.registry import CONTINUAL_STRATEGIES
from metajax.train import (
    ContinualConfig,
    build_strategy,
    device_mesh,
    place_leading_axis,
    provenance,
    shard_leading_axis,
    vmap_runs,
)

HIDDEN = (400, 400)


def time_strategy(stream, strategy_name, seeds, batch_size, args):
    model = MLP(HIDDEN, stream.num_outputs)
    options = options_read_by(CONTINUAL_STRATEGIES, strategy_name, {"ewc_lambda": 1000.0, "buffer_size": 1000})
    config = ContinualConfig(
        benchmark="split-mnist", scenario="class-il", strategy=strategy_name, strategy_options=options,
        batch_size=batch_size,
    ).resolved()  # fmt: skip
    learner = continual_learner(
        model.apply, build_strategy(config, model, stream), optax.adam(1e-3), epochs=1, batch_size=batch_size
    )
    keys = jax.random.split(jax.random.key(0), seeds)
    state = jax.vmap(learner.init)(jax.vmap(model.init, in_axes=(0, None))(keys, jnp.zeros((1, 784))))
    # With --devices, the seed axis split over that many devices, as the runner's
    # --devices does; a lone seed stays on one (replicated, every device would train it).
    mesh = device_mesh(args.devices if seeds % args.devices == 0 else 1)
    state, keys = place_leading_axis((state, keys), mesh)
    # As the runner does: vmapped over the seed axis, a lone seed squeezed out.
    train_runs = vmap_runs(lambda s, e, k: learner.train_experience(s, e, key=k), (0, None, 0))

    @jax.jit
    def train(states, experience, keys):
        states, keys = shard_leading_axis((states, keys), mesh)
        return train_runs(states, experience, keys)

    experiences = [
        Experience(jnp.asarray(stream.train_x[e]), jnp.asarray(stream.train_y[e]), jnp.asarray(stream.logit_mask[e]),
                   jnp.asarray(e))
        for e in range(stream.num_experiences)
    ]  # fmt: skip
    jax.block_until_ready(train(state, experiences[0], keys))  # compile
    seconds = []
    for _ in range(args.repeats):  # Each repeat trains the whole stream again from the initial state.
        start, trained = time.perf_counter(), state
        for experience in experiences:
            trained, _ = train(trained, experience, keys)
        jax.block_until_ready(trained)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def matmul_flops(rows: int, steps: int = 1, repeats: int = 1) -> float:
    """FLOP/s of ``steps`` plain jitted ``[rows, 784] @ [784, 400]`` matmuls (the MLP's largest shape) run
    in one ``lax.scan``, compiled first, the best of ``repeats`` timed calls."""
    x = jax.random.normal(jax.random.key(0), (steps, rows, 784))
    w = jax.random.normal(jax.random.key(1), (784, 400))
    run = jax.jit(lambda x, w: jax.lax.scan(lambda c, xb: (c + jnp.sum(xb @ w), None), 0.0, x)[0])
    jax.block_until_ready(run(x, w))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(x, w))
        seconds.append(time.perf_counter() - start)
    return steps * rows * 784 * 400 * 2 / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument(
        "--strategies", nargs="+", default=["naive", "replay", "ewc", "online-ewc", "agem", "si", "lwf"]
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 10])
    parser.add_argument("--repeats", type=int, default=1, help="time each run this often, report the median")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="split the seed axis over this many devices (on a CPU, force them with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N)",
    )
    parser.add_argument(
        "--output", default=None, help="results JSON (default results/continual_cost/continual_cost_<backend>.json)"
    )
    args = parser.parse_args()
    default = (
        Path(__file__).resolve().parent / "results" / "continual_cost" / f"continual_cost_{jax.default_backend()}.json"
    )
    output = Path(args.output) if args.output else default
    stream = split_mnist(load_mnist(args.data_dir), "class-il")
    examples = stream.train_x.shape[0] * stream.train_x.shape[1]
    flops_per_example = 6 * (784 * 400 + 400 * 400 + 400 * 10)
    rows = []
    columns = f"{'batch':>5} {'strategy':>11} {'1 seed s':>9} {f'{args.seeds} seeds s':>10}"
    print(columns + f" {'x naive':>8} {'seeds ratio':>11}")
    for batch_size in args.batch_sizes:
        naive_seconds = None
        for name in args.strategies:
            one = time_strategy(stream, name, 1, batch_size, args)
            many = time_strategy(stream, name, args.seeds, batch_size, args)
            naive_seconds = naive_seconds or one
            row = {
                "batch_size": batch_size,
                "strategy": name,
                "seconds_1_seed": one,
                f"seconds_{args.seeds}_seeds": many,
                "cost_vs_naive": one / naive_seconds,
                "seeds_time_ratio": many / one,
            }
            if name == "naive":
                row["naive_gflops_per_second"] = examples * flops_per_example / one / 1e9
                row["matmul_gflops_per_second"] = matmul_flops(batch_size, steps=examples // batch_size) / 1e9
            rows.append(row)
            line = f"{batch_size:>5} {name:>11} {one:>9.2f} {many:>10.2f}"
            line += f" {one / naive_seconds:>7.2f}x {many / one:>10.2f}x"
            if name == "naive":
                line += (
                    f"   naive {row['naive_gflops_per_second']:.1f} GFLOP/s, "
                    f"matmul {row['matmul_gflops_per_second']:.1f}"
                )
            print(line, flush=True)
            # After every row: a run cut short (a lease's time limit) keeps what it measured.
            output.write_text(json.dumps({**provenance(), "devices": args.devices, "rows": rows}, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
