"""The cost of a sweep trained as one vmapped program against as many separate runs, for each family.

For N in ``--runs`` (1, 4, 16 by default) and each family, this trains N runs
of a sweep over one learning rate (or EWC's lambda) two ways, in one process,
one after the other:

* **vmapped**: one call of the family's ``train_*`` with ``sweep={name: N values}``,
  the way ``metajax ... --sweep`` runs it;
* **separate**: N calls with one value each, the way a shell loop over the
  command would run them (each compiles its own program; data loading is in
  the call for meta-learning and continual, as it is for the command).

Each figure is the wall-clock time of the whole call(s), from config to
summary; ``speedup`` is separate / vmapped. The runs of both ways are the
same runs (tests/test_sweeps.py checks that a swept run equals its lone run).

  python benchmarks/sweep_cost.py --output benchmarks/results/sweep_cost/sweep_cost_cpu.json
  (on a GPU: --families meta multitask continual --scale 4, see benchmarks/gpu_sweep.sh)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from metajax.train import (
    ContinualConfig,
    MetaLearningConfig,
    MultiTaskConfig,
    load_multitask_dataset,
    provenance,
    train_continual,
    train_meta_learning,
    train_multitask,
)

RESULTS = Path(__file__).resolve().parent / "results" / "sweep_cost"


def families(args) -> dict:
    """``{family: (make_config(sweep) -> config, train(config, workdir) -> summary, name, values(n))}``."""
    scale = args.scale
    multitask_data = {}

    def multitask(config, workdir):
        if "data" not in multitask_data:  # One copy of the generated data for every call, as the benchmark's.
            multitask_data["data"] = load_multitask_dataset(config.resolved())
        return train_multitask(config, workdir, show_progress=False, dataset=multitask_data["data"])

    mnist = {"benchmark": "split-mnist", "data_dir": args.mnist} if args.mnist else {}
    return {
        "meta": (
            lambda sweep: MetaLearningConfig(
                algorithm="maml", meta_iters=250 * scale, log_every=125 * scale, eval_tasks=100, sweep=sweep
            ),
            lambda config, workdir: train_meta_learning(config, workdir, show_progress=False),
            "inner_lr",
            lambda n: np.geomspace(1e-3, 1e-2, n),
        ),
        "multitask": (
            lambda sweep: MultiTaskConfig(epochs=2 * scale, batch_size=128, sweep=sweep),
            multitask,
            "learning_rate",
            lambda n: np.geomspace(1e-3, 1e-2, n),
        ),
        "continual": (
            lambda sweep: ContinualConfig(strategy="ewc", batch_size=128, epochs=scale, sweep=sweep, **mnist),
            lambda config, workdir: train_continual(config, workdir, show_progress=False),
            "ewc_lambda",
            lambda n: np.geomspace(1.0, 1000.0, n),
        ),
    }


def timed(train, config) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        train(config, workdir)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=["meta", "multitask", "continual"])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--scale", type=int, default=1, help="multiplies the runs' lengths (a GPU: 4 or more)")
    parser.add_argument("--mnist", help="folder with mnist.npz: continual on split-mnist (else split-gaussian)")
    parser.add_argument("--output", type=Path, default=RESULTS / "sweep_cost_cpu.json")
    args = parser.parse_args()

    table = families(args)
    results = {"provenance": provenance(), "families": {}}
    print(f"{'family':>10} {'runs':>5} {'vmapped s':>10} {'separate s':>11} {'speedup':>8}")
    for family in args.families:
        make_config, train, name, values = table[family]
        timed(train, make_config({}))  # Warm-up: imports and data caches, not counted.
        rows = []
        for n in args.runs:
            sweep_values = tuple(float(v) for v in values(n))
            vmapped = timed(train, make_config({name: sweep_values}) if n > 1 else make_config({}))
            separate = 0.0
            for value in sweep_values:
                separate += timed(train, make_config({name: (value,)}))
            rows.append({"runs": n, "vmapped_seconds": vmapped, "separate_seconds": separate,
                         "speedup": separate / vmapped, "swept": name})  # fmt: skip
            print(f"{family:>10} {n:>5} {vmapped:>10.2f} {separate:>11.2f} {separate / vmapped:>7.2f}x", flush=True)
        results["families"][family] = rows
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")  # After each family: a cut-off run keeps them.
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
