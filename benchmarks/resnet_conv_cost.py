"""What ResNet-18's convolution formulation costs: training examples per second, ``lax`` against ``slices``.

For ResNet-18 (64 base filters) and the reduced ResNet-18 (20), at each batch
size, one run and ``--seeds`` runs vmapped (as the continual runner trains
seeds together): the continual learner's training of one experience of
``--steps`` steps on random 32 x 32 x 3 images (naive fine-tuning, SGD,
training-mode batch norm), compiled ahead of time, timed over ``--repeats``
calls (the best is kept), the formulations' calls alternating so that a load
that changes during the run (a shared machine) weighs on each alike. ``lax`` is
``lax.conv_general_dilated``; ``slices`` is im2col from strided slices and one
matmul (``metajax.models.resnet``).

    python benchmarks/resnet_conv_cost.py

Writes ``benchmarks/results/resnet_conv_cost/resnet_conv_cost_<backend>.json``.
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

from metajax.continual import Experience, TrainMode, continual_learner, naive
from metajax.models import ResNet18
from metajax.train import provenance, vmap_runs

CLASSES = 10


def compiled_training(base_filters: int, impl: str, batch_size: int, seeds: int, steps: int):
    """``(run, examples)``: ``run()`` trains ``seeds`` runs through one experience of ``steps`` steps."""
    model = ResNet18(CLASSES, base_filters, conv_impl=impl)  # type: ignore[arg-type]  # One of its choices.
    learner = continual_learner(
        model.apply,
        naive(),
        optax.sgd(0.01),
        epochs=1,
        batch_size=batch_size,
        train_mode=TrainMode(model.train_apply, model.running_statistics),
    )
    rng = np.random.default_rng(0)
    n = batch_size * steps
    experience = Experience(
        jnp.asarray(rng.normal(size=(n, 32, 32, 3)), jnp.float32),
        jnp.asarray(rng.integers(0, CLASSES, n), jnp.int32),
        jnp.ones((CLASSES,), bool),
        jnp.asarray(0),
    )
    keys = jax.random.split(jax.random.key(0), seeds)
    variables = jax.vmap(model.init, in_axes=(0, None))(keys, experience.x[:1])
    states = jax.vmap(learner.init)(variables)
    train = jax.jit(vmap_runs(lambda state, key: learner.train_experience(state, experience, key=key), (0, 0)))
    compiled = train.lower(states, keys).compile()
    return lambda: jax.block_until_ready(compiled(states, keys)), seeds * n


def examples_per_second(runs: dict, repeats: int) -> dict[str, float]:
    """``{name: examples per second}``, the best of ``repeats`` calls of each of ``runs``, alternating."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, (run, _) in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: examples / best[name] for name, (_, examples) in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-filters", type=int, nargs="+", default=[20, 64])
    parser.add_argument("--impls", nargs="+", default=["lax", "slices"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 32])
    parser.add_argument("--seeds", type=int, default=3, help="runs vmapped together in the several-runs rows")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    backend = jax.default_backend()
    output = Path(
        args.output
        or Path(__file__).resolve().parent / "results" / "resnet_conv_cost" / f"resnet_conv_cost_{backend}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for base_filters in args.base_filters:
        for batch_size in args.batch_sizes:
            for seeds in sorted({1, args.seeds}):
                runs = {
                    impl: compiled_training(base_filters, impl, batch_size, seeds, args.steps) for impl in args.impls
                }
                for impl, rate in examples_per_second(runs, args.repeats).items():
                    row = {
                        "base_filters": base_filters,
                        "batch_size": batch_size,
                        "seeds": seeds,
                        "conv_impl": impl,
                        "examples_per_second": round(rate, 1),
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                output.write_text(json.dumps({**provenance(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
