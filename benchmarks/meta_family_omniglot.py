"""Omniglot 5-way 1-shot and 5-shot accuracy of every few-shot learner under one wall-clock budget.

Each learner trains with its paper's preset (``metajax.train.config``: meta-batch
5 for Reptile, 32 for the MAML family and ProtoNets) for ``--budget`` seconds of
training time, in chunks of ``--chunk`` jitted meta-steps; about ``--points``
times along the way it is scored on the same ``--curve-tasks`` test tasks
(evaluation time is not counted), and at the end on ``--eval-tasks`` test tasks with a 95% confidence
interval, non-transductive (the configured default). Writes
``benchmarks/results/meta_family_omniglot/meta_family_omniglot.json`` and a plot of accuracy
against training seconds for all learners on the same axes
(``meta_family_omniglot.png``).

    python benchmarks/meta_family_omniglot.py --data-dir ../shared/data/omniglot --budget 60
    python benchmarks/meta_family_omniglot.py --replot      # redraw from the JSON
    python benchmarks/meta_family_omniglot.py --algorithms reptile --output OTHER.json   # a subset, apart
    python benchmarks/meta_family_omniglot.py --data-dir ... --budget 60 --resume   # finish a stopped run
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

from metajax.train import provenance  # noqa: E402

ALGORITHMS = ("reptile", "maml", "fomaml", "anil", "meta-sgd", "protonets", "r2d2")
RESULTS = BENCH_DIR / "results" / "meta_family_omniglot" / "meta_family_omniglot.json"


def run_one(algorithm: str, shots: int, args) -> dict:
    import jax
    import jax.numpy as jnp

    from metajax.train import MetaLearningConfig, evaluate_tasks, mean_and_ci95, sample_and_evaluate
    from metajax.train import build_meta_learning as build
    from metajax.train import load_few_shot_data as load_data

    config = MetaLearningConfig(
        algorithm=algorithm, dataset="omniglot", data_dir=args.data_dir, shots=shots, seed=args.seed
    ).resolved()
    data = load_data(config)
    model, example, make_learner, train_sampler, test_sampler = build(config, data)
    learner = make_learner(config.transductive)
    train_bank, test_bank = data.train, data.test
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    state = learner.init(model.init(init_key, example))

    @partial(jax.jit, donate_argnums=0)
    def train_chunk(state, bank):
        sample = train_sampler(bank)

        def one_step(state, step_key):
            task_key, adapt_key = jax.random.split(step_key)
            return learner.step(state, sample(task_key, config.meta_batch), key=adapt_key)

        steps = state.step + jnp.arange(args.chunk)
        return jax.lax.scan(one_step, state, jax.vmap(jax.random.fold_in, (None, 0))(train_key, steps))

    evaluate_chunk = jax.jit(sample_and_evaluate(learner.evaluate, test_sampler(test_bank), args.curve_tasks))
    jax.block_until_ready(train_chunk(learner.init(model.init(init_key, example)), train_bank))  # Compile.

    curve, train_seconds, next_point = [], 0.0, 0.0
    while train_seconds < args.budget:
        start = time.perf_counter()
        state, _ = train_chunk(state, train_bank)
        jax.block_until_ready(state)
        train_seconds += time.perf_counter() - start
        if train_seconds >= next_point or train_seconds >= args.budget:
            # The same tasks every time; about --points points per curve, whatever the learner's speed.
            accuracy = float(evaluate_chunk(state, eval_key)["accuracy"].mean())
            curve.append({"train_seconds": train_seconds, "meta_iters": int(state.step), "accuracy": accuracy})
            next_point = train_seconds + args.budget / args.points
    final = jax.jit(sample_and_evaluate(learner.evaluate, test_sampler(test_bank), config.eval_chunk))
    scores = evaluate_tasks(
        lambda k: final(state, k), key=jax.random.fold_in(eval_key, 1), num_tasks=args.eval_tasks,
        chunk_size=config.eval_chunk,
    )  # fmt: skip
    mean, ci95 = mean_and_ci95(scores["accuracy"])
    print(f"{algorithm:<10} {shots}-shot  {int(state.step):>6} meta-iters in {train_seconds:6.1f} s  "
          f"accuracy {100 * mean:.2f} +- {100 * ci95:.2f} %", flush=True)  # fmt: skip
    return {
        "algorithm": algorithm, "shots": shots, "meta_batch": config.meta_batch, "meta_iters": int(state.step),
        "train_seconds": train_seconds, "accuracy": mean, "accuracy_ci95": ci95, "eval_tasks": args.eval_tasks,
        "curve": curve,
    }  # fmt: skip


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots_values = sorted({run["shots"] for run in result["runs"]})
    figure, axes = plt.subplots(1, len(shots_values), figsize=(6 * len(shots_values), 4.5), squeeze=False)
    for axis, shots in zip(axes[0], shots_values, strict=True):
        for run in (r for r in result["runs"] if r["shots"] == shots):
            seconds = [0.0] + [point["train_seconds"] for point in run["curve"]]
            accuracy = [20.0] + [100 * point["accuracy"] for point in run["curve"]]  # Chance (5-way) at 0 s.
            axis.plot(seconds, accuracy, label=run["algorithm"])
        axis.set(title=f"Omniglot 5-way {shots}-shot", xlabel="training seconds", ylabel="test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"accuracy against training time on {result['machine']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# Settings that change what a run measures; the others (which runs, where to write) may differ on resume.
RUN_SETTINGS = ("data_dir", "budget", "chunk", "curve_tasks", "points", "eval_tasks", "seed")


def resumed_result(previous: dict, fresh: dict) -> dict:
    """The earlier, stopped benchmark's result, to be completed, if it measured with the same settings."""
    differing = [name for name in RUN_SETTINGS if previous["config"].get(name) != fresh["config"][name]]
    if differing:
        raise SystemExit(f"--resume: the existing results were measured with other settings ({', '.join(differing)}); "
                         "rerun with those settings or write to another --output")  # fmt: skip
    resumed = dict(fresh, runs=previous["runs"])
    resumed["resumed_from"] = {key: previous[key] for key in ("command", "machine", "jax_version") if key in previous}
    return resumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(BENCH_DIR.parents[1] / "shared" / "data" / "omniglot"))
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per learner and shot count")
    parser.add_argument("--chunk", type=int, default=20, help="meta-steps between two points of the curve")
    parser.add_argument("--curve-tasks", type=int, default=100)
    parser.add_argument("--points", type=int, default=12, help="points per accuracy curve")
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON; the plot goes beside it")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --output and do only the missing ones (same settings required)",
    )
    args = parser.parse_args()
    output = args.output
    if args.replot:
        plot(json.loads(output.read_text()), output.with_suffix(".png"))
        return
    result = {"benchmark": "few-shot learners on Omniglot under one time budget", **provenance(), "config": vars(args),
              "runs": []}  # fmt: skip
    if args.resume and output.exists():
        result = resumed_result(json.loads(output.read_text()), result)
    done = {(run["algorithm"], run["shots"]) for run in result["runs"]}
    output.parent.mkdir(parents=True, exist_ok=True)
    for shots in args.shots:
        for algorithm in args.algorithms:
            if (algorithm, shots) in done:
                print(f"{algorithm} {shots}-shot: kept from {output}")
                continue
            result["runs"].append(run_one(algorithm, shots, args))
            # After every run, so a stopped benchmark keeps what it measured.
            output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(result, output.with_suffix(".png"))
    print(f"wrote {output} and {output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
