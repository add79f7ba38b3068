"""What EWC's diagonal Fisher costs: the closed form for Dense networks against per-example gradients.

The Fisher of ``--examples`` rows for an MLP of the continual benchmarks
(784 -> 400 -> 400 -> 10), computed both ways by ``diagonal_fisher`` in one
process, alternately, each jitted and timed after compilation; the median of
``--repeats`` calls, and the largest relative difference between the two.

    python benchmarks/ewc_fisher.py

Writes ``benchmarks/results/ewc_fisher/ewc_fisher_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metajax.continual import diagonal_fisher
from metajax.models import MLP
from metajax.train import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1024, help="the continual runner's default fisher-samples")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    model = MLP((400, 400), 10)
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
    x = jax.random.uniform(jax.random.key(1), (args.examples, 784))
    y = jax.random.randint(jax.random.key(2), (args.examples,), 0, 10)
    head = jnp.arange(10) < 2  # A Split MNIST class-IL experience's head after its first experience.
    ways = {
        "dense closed form": jax.jit(
            lambda p, x, y: diagonal_fisher(model.apply, p, x, y, head, dense_layers=model.dense_layers)
        ),
        "per-example gradients": jax.jit(lambda p, x, y: diagonal_fisher(model.apply, p, x, y, head)),
    }
    results = {name: jax.block_until_ready(fisher(params, x, y)) for name, fisher in ways.items()}  # compile
    seconds = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, fisher in ways.items():
            start = time.perf_counter()
            jax.block_until_ready(fisher(params, x, y))
            seconds[name].append(time.perf_counter() - start)
    differences = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), *results.values())
    median = {name: float(np.median(times)) for name, times in seconds.items()}
    for name, value in median.items():
        print(f"{name:>22}: {value * 1e3:7.2f} ms")
    speedup = median["per-example gradients"] / median["dense closed form"]
    largest = max(jax.tree.leaves(differences))
    print(f"closed form {speedup:.1f}x faster; largest relative difference {largest:.1e}")
    output = Path(__file__).resolve().parent / "results" / "ewc_fisher" / f"ewc_fisher_{jax.default_backend()}.json"
    record = {**provenance(), "examples": args.examples, "median_seconds": median, "seconds": seconds,
              "speedup": speedup, "largest_relative_difference": largest}  # fmt: skip
    output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
