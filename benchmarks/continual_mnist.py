"""Split MNIST (class-IL, task-IL) and Permuted MNIST: every strategy, several seeds, next to the references.

Each (benchmark, strategy) trains ``--seeds`` runs together, vmapped over the
seed axis, through ``metajax.train.train_continual``
(the runner behind ``metajax continual``): an MLP with 2 x 400 ReLU units,
Adam, batch 128. References: van de Ven & Tolias 2019 (arXiv 1904.07734,
table 2, Split MNIST: class-IL none 19.90, EWC 20.01, SI 19.99, LwF 23.85;
task-IL EWC 98.64) and ContinualAI's continual-learning-baselines (Permuted
MNIST EWC 0.83; Split MNIST class-IL online replay 0.92).

    python benchmarks/continual_mnist.py --data-dir ../shared/data/mnist

Prints a table and writes ``benchmarks/results/continual_mnist/continual_mnist.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from metajax.options import options_read_by
from metajax.registry import CONTINUAL_STRATEGIES
from metajax.train import ContinualConfig, provenance
from metajax.train import train_continual as train_and_evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "continual_mnist"
STRATEGIES = ("naive", "joint", "replay", "agem", "ewc", "online-ewc", "si", "lwf")
CASES = {
    "split-mnist class-il": {"benchmark": "split-mnist", "scenario": "class-il"},
    "split-mnist task-il": {"benchmark": "split-mnist", "scenario": "task-il"},
    "permuted-mnist domain-il": {"benchmark": "permuted-mnist", "scenario": "domain-il"},
}
REFERENCES = {
    "split-mnist class-il": {"naive": 0.1990, "ewc": 0.2001, "si": 0.1999, "lwf": 0.2385, "replay": 0.92},
    "split-mnist task-il": {"ewc": 0.9864},
    "permuted-mnist domain-il": {"ewc": 0.83},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the first run's seed (fresh seeds check a tuned setting)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--ewc-lambda", type=float, default=1000.0)
    parser.add_argument("--si-c", type=float, default=1.0)
    parser.add_argument("--buffer-size", type=int, default=1000)
    parser.add_argument("--buffer-policy", default="reservoir", choices=("reservoir", "class-balanced"))
    parser.add_argument("--buffer-update", default="experience", choices=("experience", "step"))
    parser.add_argument("--replay-batch", type=int, help="buffer examples per training batch (default: the batch size)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--reset-optimizer", action="store_true", help="a fresh Adam state for every experience")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--hidden", type=lambda t: tuple(int(w) for w in t.split(",")), default=(400, 400), help="MLP widths, e.g. 512"
    )
    parser.add_argument("--output", default=str(RESULTS / "continual_mnist.json"))
    args = parser.parse_args()

    results: dict = {}
    print(f"{'case':>26} {'strategy':>11} {'final avg acc':>16} {'forgetting':>16} {'reference':>9} {'seconds':>8}")
    for case in args.cases:
        results[case] = {}
        for strategy in args.strategies:
            config = ContinualConfig(
                **CASES[case], strategy=strategy, data_dir=args.data_dir, seeds=args.seeds, seed=args.seed,
                epochs=args.epochs, batch_size=args.batch_size, reset_optimizer=args.reset_optimizer,
                optimizer=args.optimizer, learning_rate=args.learning_rate, model_options={"hidden": args.hidden},
                strategy_options=options_read_by(CONTINUAL_STRATEGIES, strategy, {
                    "ewc_lambda": args.ewc_lambda, "si_c": args.si_c, "buffer_size": args.buffer_size,
                    "buffer_policy": args.buffer_policy, "buffer_update": args.buffer_update,
                    "replay_batch": args.replay_batch,
                }),
            )  # fmt: skip
            with tempfile.TemporaryDirectory() as workdir:
                summary = train_and_evaluate(config, workdir, show_progress=False)
            summary.pop("plot")
            results[case][strategy] = summary
            accuracy = summary["final_average_accuracy"]
            forget = summary["forgetting"]
            reference = REFERENCES.get(case, {}).get(strategy)
            print(
                f"{case:>26} {strategy:>11} {accuracy['mean']:.4f} +- {accuracy['std']:.4f} "
                f"{'n/a' if forget is None else format(forget['mean'], '.4f'):>16} "
                f"{'' if reference is None else f'{reference:.4f}':>9} {summary['train_seconds']:>8.1f}"
            )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **provenance(),
        "references": REFERENCES,
        "results": results,
    }
    output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
