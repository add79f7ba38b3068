"""Meta-training throughput against the number of devices the meta-batch is split over.

MAML on Omniglot-shaped 5-way 1-shot tasks (5 query examples per class, one
inner step, meta-batch 32, random images: only speed is measured), the meta-batch
sharded over a ``jax.sharding.Mesh`` of 1, 2, 4 ... devices exactly as the
runner does (``metajax.train.sharding``). On a CPU the devices are forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` and share the same cores,
so this measures the cost of partitioning, not a speed-up; on a machine with
several accelerators it measures the scaling. Beside each figure: the
cross-device operations (all-reduce, all-gather, ...) in the compiled
program of the meta-steps, counted from its HLO text.

    python benchmarks/device_scaling.py                      # CPU, 4 forced devices
    python benchmarks/device_scaling.py --force-cpu-devices 0  # the real devices

Prints a table and writes ``benchmarks/results/device_scaling/device_scaling_<platform>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force-cpu-devices", type=int, default=4, help="0: use the real devices")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="meta-steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.force_cpu_devices:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.force_cpu_devices}"
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import optax

    from metajax.data import few_shot_sampler
    from metajax.meta import maml, softmax_cross_entropy
    from metajax.models import Conv4
    from metajax.train import device_mesh, provenance, shard_leading_axis

    bank = jax.random.uniform(jax.random.key(0), (3856, 20, 28, 28, 1))
    model = Conv4(num_classes=5)
    learner = maml(model.apply, softmax_cross_entropy, inner_lr=0.4, inner_steps=1, outer_optimizer=optax.adam(1e-3))
    initial = learner.init(model.init(jax.random.key(1), jnp.zeros((1, 28, 28, 1))))
    sample = few_shot_sampler(bank, 5, 1, 5)

    def measure(num_devices: int) -> float:
        mesh = device_mesh(num_devices)

        @jax.jit
        def steps(state, key):
            def one(state, key):
                return learner.step(state, shard_leading_axis(sample(key, args.meta_batch), mesh), key=key)

            return jax.lax.scan(one, state, jax.random.split(key, args.steps))

        compiled = steps.lower(initial, jax.random.key(0)).compile()
        state = jax.block_until_ready(compiled(initial, jax.random.key(0)))[0]  # Warm up.
        start = time.perf_counter()
        state = jax.block_until_ready(compiled(state, jax.random.key(1)))[0]
        return args.steps * args.meta_batch / (time.perf_counter() - start), collectives(compiled)

    def collectives(compiled) -> dict[str, int]:
        """The cross-device operations XLA's partitioner put into the compiled program, by kind."""
        text = compiled.as_text()
        kinds = re.findall(r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(?:-start)?\(", text)
        return dict(collections.Counter(kinds))

    counts = [n for n in (1, 2, 4, 8, 16) if n <= len(jax.devices()) and args.meta_batch % n == 0]
    measured = {n: [] for n in counts}
    program = {}
    for _ in range(args.repeats):
        for n in counts:
            tasks_per_second, program[n] = measure(n)
            measured[n].append(tasks_per_second)
    rows = [
        {
            "devices": n,
            "tasks_per_second_median": statistics.median(v),
            "tasks_per_second_all": v,
            "collectives_in_program": program[n],
        }
        for n, v in measured.items()
    ]
    for row in rows:
        row["ratio_to_one_device"] = row["tasks_per_second_median"] / rows[0]["tasks_per_second_median"]
    platform = jax.devices()[0].platform
    result = {
        "benchmark": "MAML meta-training throughput against the number of devices",
        **provenance(),
        "devices_available": len(jax.devices()),
        "forced_cpu_devices": args.force_cpu_devices,
        "config": vars(args),
        "rows": rows,
    }
    out = BENCH_DIR / "results" / "device_scaling" / f"device_scaling_{platform}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"MAML, meta-batch {args.meta_batch}, on {result['machine']} ({len(jax.devices())} devices)")
    print(f"{'devices':>8} {'tasks/s':>9} {'x one device':>13}  collectives in the compiled program")
    for row in rows:
        line = f"{row['devices']:>8} {row['tasks_per_second_median']:>9.1f} {row['ratio_to_one_device']:>13.2f}"
        print(f"{line}  {row['collectives_in_program'] or 'none'}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
