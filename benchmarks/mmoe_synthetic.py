"""The MMoE paper's synthetic experiment: shared-bottom vs OMoE vs MMoE as task correlation drops.

Ma et al. (KDD 2018), section 5.2: on two regression tasks whose correlation p
is controlled, the gap between MMoE and shared-bottom should grow as p falls.
For each p and model, ``--seeds`` independent runs (each with its own draw of
the data and of the initial weights) are trained together: the whole
training, every epoch and every seed, is one compiled program, vmapped over
the seed axis. Settings follow keras-mmoe's synthetic demo (8 experts of 16
ReLU units, towers of 8, Adam 1e-4, batch 32, 10k/1k/1k rows, 100 epochs);
the shared-bottom's bottom has 8 x 16 = 128 units, about the mixtures'
parameter count.

    python benchmarks/mmoe_synthetic.py                # the full experiment
    python benchmarks/mmoe_synthetic.py --epochs 5     # a quick look

Prints a table, writes ``benchmarks/results/mmoe_synthetic/mmoe_synthetic.json`` and
``benchmarks/results/mmoe_synthetic/mmoe_synthetic.png`` (mean test loss per epoch, one panel per p).
``--replot`` redraws the PNG from an existing JSON without training.
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

from metajax.data.correlated_regression import correlated_regression_dataset
from metajax.models import MMoE, OMoE, SharedBottom
from metajax.multitask import multitask_trainer
from metajax.train import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "mmoe_synthetic"


def models(expert_units: int, experts: int, tower_units: int):
    towers = {"tower_hidden": (tower_units,)}
    return {
        "shared-bottom": SharedBottom(2, bottom_widths=(experts * expert_units,), **towers),
        "omoe": OMoE(2, num_experts=experts, expert_widths=(expert_units,), **towers),
        "mmoe": MMoE(2, num_experts=experts, expert_widths=(expert_units,), **towers),
    }


def train_seeds(model, correlation: float, seeds: int, args) -> dict[str, np.ndarray]:
    """Per-epoch train and test losses ``[seeds, epochs]`` (sum over both tasks), all seeds in one program."""
    trainer = multitask_trainer(
        model.apply, 2, optimizer=optax.adam(args.learning_rate), task_loss="regression", batch_size=args.batch_size
    )

    def one_seed(seed):
        # The data depends on the seed only, so every model sees the same draws.
        data = correlated_regression_dataset(
            jax.random.fold_in(jax.random.key(0), seed),
            correlation=correlation,
            scale=args.scale,
            split_sizes=(args.train_rows, 1_000, 1_000),
        )
        init_key, train_key = jax.random.split(jax.random.fold_in(jax.random.key(1), seed))
        state = trainer.init(model.init(init_key, data.train.x[:1]))

        def epoch(state, epoch_key):
            state, metrics = trainer.train_epoch(state, data.train, key=epoch_key)
            test = trainer.eval_step(state.params, data.test)
            return state, (jnp.sum(metrics["task_losses"]), jnp.sum(test["task_losses"]))

        _, (train_loss, test_loss) = jax.lax.scan(epoch, state, jax.random.split(train_key, args.epochs))
        return train_loss, test_loss

    train_loss, test_loss = jax.jit(jax.vmap(one_seed))(args.first_seed + jnp.arange(seeds))
    return {"train_loss": np.asarray(train_loss), "test_loss": np.asarray(test_loss)}


def mean_and_stderr(values) -> dict[str, float]:
    values = np.asarray(values)
    return {"mean": float(values.mean()), "stderr": float(values.std(ddof=1) / np.sqrt(len(values)))}


def paired_gap(by_model: dict, first: str, second: str, split: str = "test") -> dict[str, float]:
    """Mean and standard error over seeds of ``first``'s final ``split`` loss minus ``second``'s."""
    field = f"final_{split}_loss_per_seed"
    return mean_and_stderr(np.subtract(by_model[first][field], by_model[second][field]))


def correlation_cost(results: dict, model: str, split: str) -> dict[str, float]:
    """A model's final ``split`` loss at the lowest correlation minus at the highest, paired by seed.

    A seed draws the same directions, sines, inputs and noise whatever p is
    (only w2's mix of u1 and u2 changes), so the seeds pair across p too. The
    paper's figure 4: this cost is much smaller for MMoE than for OMoE and
    shared-bottom.
    """
    field = f"final_{split}_loss_per_seed"
    low, high = results[min(results)][model][field], results[max(results)][model][field]
    return mean_and_stderr(np.subtract(low, high))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    correlations = list(results)
    splits = [split for split in ("test", "train") if f"{split}_loss_std_per_epoch" in results[correlations[0]]["mmoe"]]
    figure, axes = plt.subplots(
        len(splits), len(correlations), figsize=(4.2 * len(correlations), 3.6 * len(splits)), sharey="row",
        squeeze=False,
    )  # fmt: skip
    for row, split in zip(axes, splits, strict=True):
        for axis, correlation in zip(row, correlations, strict=True):
            for name in ("shared-bottom", "omoe", "mmoe"):
                runs = results[correlation][name]
                curve = np.asarray(runs[f"{split}_loss_mean_per_epoch"])
                # The band is the standard error of the mean over seeds.
                seeds = len(runs["final_test_loss_per_seed"])
                spread = np.asarray(runs[f"{split}_loss_std_per_epoch"]) / np.sqrt(seeds)
                epochs = np.arange(1, len(curve) + 1)
                axis.plot(epochs, curve, label=name)
                axis.fill_between(epochs, curve - spread, curve + spread, alpha=0.2)
            axis.set_title(f"correlation p = {correlation}")
            axis.set_xlabel("epoch")
            axis.set_yscale("log")
        row[0].set_ylabel(f"{split} loss (MSE, both tasks summed)")
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--correlations", type=float, nargs="+", default=[1.0, 0.9, 0.5, 0.0])
    parser.add_argument("--scale", type=float, default=0.3, help="c, the norm of w1 and w2")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from here: fresh seeds check a finding made on others"
    )
    parser.add_argument("--train-rows", type=int, default=10_000, help="training rows per data draw")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--expert-units", type=int, default=16)
    parser.add_argument("--tower-units", type=int, default=8)
    parser.add_argument("--output", default=str(RESULTS / "mmoe_synthetic.json"))
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from --output's JSON")
    args = parser.parse_args()
    if args.replot:
        output = Path(args.output)
        plot(json.loads(output.read_text())["results"], output.with_suffix(".png"))
        return

    results: dict = {}
    print(f"{'p':>5} {'model':>14} {'final test loss (mean +- std over seeds)':>42} {'seconds':>8}")
    for correlation in args.correlations:
        results[correlation] = {}
        for name, model in models(args.expert_units, args.experts, args.tower_units).items():
            start = time.perf_counter()
            runs = train_seeds(model, correlation, args.seeds, args)
            seconds = time.perf_counter() - start
            final = runs["test_loss"][:, -1]
            results[correlation][name] = {
                "final_test_loss_mean": float(final.mean()),
                "final_test_loss_std": float(final.std()),
                "final_test_loss_per_seed": final.tolist(),
                "final_train_loss_mean": float(runs["train_loss"][:, -1].mean()),
                "final_train_loss_per_seed": runs["train_loss"][:, -1].tolist(),
                "test_loss_mean_per_epoch": runs["test_loss"].mean(axis=0).tolist(),
                "test_loss_std_per_epoch": runs["test_loss"].std(axis=0).tolist(),
                "train_loss_mean_per_epoch": runs["train_loss"].mean(axis=0).tolist(),
                "train_loss_std_per_epoch": runs["train_loss"].std(axis=0).tolist(),
                "seconds_all_seeds_with_compilation": seconds,
            }
            print(f"{correlation:>5} {name:>14} {final.mean():>30.4f} +- {final.std():.4f} {seconds:>8.1f}")
    # Every model sees the same data draw for a given seed, so the per-seed
    # (paired) difference is the sharp comparison.
    for split, field in (("test", "shared_bottom_minus_mmoe"), ("train", "shared_bottom_minus_mmoe_train")):
        for correlation, by_model in results.items():
            gap = by_model[field] = paired_gap(by_model, "shared-bottom", "mmoe", split)
            print(
                f"p = {correlation}: shared-bottom minus MMoE final {split} loss = "
                f"{gap['mean']:+.4f} +- {gap['stderr']:.4f}"
            )
    costs = None
    if len(results) > 1:
        print(f"final loss at p = {min(results)} minus at p = {max(results)} (paired by seed; the paper's figure 4):")
        costs = {name: {split: correlation_cost(results, name, split) for split in ("train", "test")}
                 for name in ("shared-bottom", "omoe", "mmoe")}  # fmt: skip
        for name, by_split in costs.items():
            line = "  ".join(f"{split} {c['mean']:+.4f} +- {c['stderr']:.4f}" for split, c in by_split.items())
            print(f"{name:>14}  {line}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **provenance(
            "python benchmarks/mmoe_synthetic.py "
            + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items()
                if k not in ("output", "replot")
            )
        ),
        "results": {str(k): v for k, v in results.items()},
        "correlation_cost": costs,
    }  # fmt: skip
    output.write_text(json.dumps(record, indent=1) + "\n")
    plot(results, output.with_suffix(".png"))
    print(f"wrote {output} and {output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
