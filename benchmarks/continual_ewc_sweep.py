"""EWC on Permuted MNIST: a sweep over lambda and seeds, every run trained together in one vmapped program.

lambda lives in EWC's state, so the run axis of the vmap holds (lambda, seed)
pairs: ``len(lambdas) * seeds`` runs of the whole stream at once.

    python benchmarks/continual_ewc_sweep.py --data-dir ../shared/data/mnist

Prints final average accuracy per lambda and writes
``benchmarks/results/continual_ewc_sweep/continual_ewc_sweep.json``.
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

from metajax.continual import Experience, average_accuracy, continual_learner, ewc, forgetting
from metajax.data.continual_streams import permuted_stream
from metajax.data.mnist import load_mnist
from metajax.models import MLP
from metajax.train import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[10.0, 100.0, 1000.0, 10000.0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--experiences", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--fisher-samples", type=int, default=1024)
    parser.add_argument("--mode", default="separate", choices=("separate", "online"))
    parser.add_argument("--reset-optimizer", action="store_true", help="a fresh Adam state for every experience")
    parser.add_argument(
        "--output",
        default=str(Path(__file__).resolve().parent / "results" / "continual_ewc_sweep" / "continual_ewc_sweep.json"),
    )
    args = parser.parse_args()

    stream = permuted_stream(load_mnist(args.data_dir), args.experiences)
    model = MLP((400, 400), stream.num_outputs)
    strategy = ewc(model.apply, ewc_lambda=1.0, mode=args.mode, fisher_samples=args.fisher_samples)
    learner = continual_learner(
        model.apply,
        strategy,
        optax.adam(args.learning_rate),
        epochs=args.epochs,
        batch_size=args.batch_size,
        reset_optimizer=args.reset_optimizer,
    )
    strengths = jnp.repeat(jnp.asarray(args.lambdas), args.seeds)
    seeds = jnp.tile(jnp.arange(args.seeds), len(args.lambdas))

    def start(strength, seed):
        state = learner.init(model.init(jax.random.key(seed), jnp.zeros((1, stream.train_x.shape[-1]))))
        return state._replace(strategy_state=state.strategy_state._replace(strength=strength))

    state = jax.vmap(start)(strengths, seeds)
    train = jax.jit(jax.vmap(lambda s, e, k: learner.train_experience(s, e, key=k), in_axes=(0, None, 0)))
    accuracy = jax.jit(jax.vmap(learner.accuracy, in_axes=(0, None, None, None, None)))
    test = tuple(jnp.asarray(a) for a in (stream.test_x, stream.test_y, stream.test_mask, stream.logit_mask))
    rows, started = [], time.perf_counter()
    for e in range(stream.num_experiences):
        experience = Experience(
            jnp.asarray(stream.train_x[e]), jnp.asarray(stream.train_y[e]), jnp.asarray(stream.logit_mask[e]),
            jnp.asarray(e),
        )  # fmt: skip
        keys = jax.vmap(lambda s, e=e: jax.random.fold_in(jax.random.key(s), 1000 + e))(seeds)
        state, _ = train(state, experience, keys)
        rows.append(np.asarray(accuracy(state, *test)))
        print(f"experience {e}: seen-experience accuracy per run {np.round(rows[-1][:, : e + 1].mean(1), 4)}")
    seconds = time.perf_counter() - started
    matrices = np.stack(rows, axis=1)  # [runs, experiences, experiences]
    results = []
    for i, strength in enumerate(args.lambdas):
        runs = matrices[i * args.seeds : (i + 1) * args.seeds]
        final = np.array([average_accuracy(m) for m in runs])
        forgot = np.array([forgetting(m) for m in runs])
        results.append({"ewc_lambda": strength, "final_average_accuracy_mean": float(final.mean()),
                        "final_average_accuracy_std": float(final.std()), "forgetting_mean": float(forgot.mean()),
                        "per_seed": final.tolist()})  # fmt: skip
        print(f"lambda {strength:>8g}: final average accuracy {final.mean():.4f} +- {final.std():.4f}, "
              f"forgetting {forgot.mean():.4f}")  # fmt: skip
    print(f"{len(strengths)} runs in one vmapped program: {seconds:.1f} s with compilation")
    record = {
        **provenance(),
        "seconds_all_runs": seconds,
        "results": results,
    }
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
