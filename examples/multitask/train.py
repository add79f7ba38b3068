"""MMoE on the MMoE paper's two synthetic regression tasks, with learned uncertainty weights.

The two tasks share 100 Gaussian input features; how related they are is set
by ``--correlation``. A Multi-gate Mixture-of-Experts (Ma et al. 2018,
https://doi.org/10.1145/3219819.3220007) shares a few experts between them and
gives each task its own softmax gate over the experts and its own tower. The
two task losses are combined by uncertainty weighting (Kendall et al. 2018,
https://arxiv.org/abs/1705.07115), which learns one weight per task.

    python examples/multitask/train.py --epochs 20 --correlation 0.9

The pieces: ``MMoE`` (a flax module whose gates and towers are stacked on a
task axis), ``uncertainty_weighting(...)`` (a ``LossWeighting`` NamedTuple of
pure functions with its own state) and ``multitask_trainer(...)`` (a
``MultiTaskTrainer`` of pure ``train_epoch`` / ``eval_step`` functions, a task
loss vmapped over the task axis); we jit them and loop over epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from metajax.data.correlated_regression import correlated_regression_dataset
from metajax.models import MMoE
from metajax.multitask import multitask_trainer, uncertainty_weighting
from metajax.options import add_config_flags, checked_fields


def train_and_evaluate(config, workdir: str | Path) -> dict[str, Any]:
    """Trains MMoE for ``config.epochs`` epochs, keeps the parameters of the epoch with the lowest
    validation MSE, and returns (and writes to ``workdir/summary.json``) its test MSE and gate weights."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data_key, init_key, train_key = jax.random.split(jax.random.key(config.seed), 3)

    # Generated on the device from a key: x [rows, features], y [rows, tasks] per split.
    dataset = correlated_regression_dataset(
        data_key,
        correlation=config.correlation,
        split_sizes=(config.train_rows, config.eval_rows, config.eval_rows),
        num_features=config.num_features,
    )
    num_tasks = len(dataset.task_names)
    model = MMoE(
        num_tasks=num_tasks,
        num_experts=config.experts,
        expert_widths=(config.expert_units,),
        tower_hidden=(config.tower_units,),
    )
    trainer = multitask_trainer(
        model.apply,
        num_tasks,
        optimizer=optax.adam(config.learning_rate),
        task_loss="regression",
        # The weights are learned by their own optimizer: the model's never sees them.
        weighting=uncertainty_weighting(optax.adam(config.learning_rate)),
        batch_size=config.batch_size,
    )
    state = trainer.init(model.init(init_key, dataset.train.x[:1]))
    # A whole epoch is one compiled lax.scan over shuffled batches.
    train_epoch = jax.jit(trainer.train_epoch)
    eval_step = jax.jit(trainer.eval_step)

    history = []
    best = (np.inf, 0, state.params)  # (validation MSE summed over tasks, epoch, parameters)
    for epoch in range(1, config.epochs + 1):
        state, metrics = train_epoch(state, dataset.train, key=jax.random.fold_in(train_key, epoch))
        validation = np.asarray(eval_step(state.params, dataset.validation)["task_losses"])
        history.append(
            {
                "epoch": epoch,
                "train_losses": np.asarray(metrics["task_losses"]).tolist(),
                "task_weights": np.asarray(metrics["task_weights"]).tolist(),
                "validation_mse": validation.tolist(),
            }
        )
        if validation.sum() < best[0]:
            best = (validation.sum(), epoch, state.params)
        if epoch % config.log_every == 0 or epoch == config.epochs:
            record = history[-1]
            print(
                f"epoch {epoch:3d}  train loss {_numbers(record['train_losses'])}  "
                f"weights {_numbers(record['task_weights'])}  validation MSE {_numbers(record['validation_mse'])}"
            )

    _, best_epoch, params = best
    test_mse = np.asarray(eval_step(params, dataset.test)["task_losses"])
    # How much each task's gate leans on each expert, averaged over the test rows: [tasks, experts].
    gates = np.asarray(model.apply(params, dataset.test.x).gate_weights.mean(axis=1))
    print(f"test MSE at the best validation epoch ({best_epoch}): {_numbers(test_mse)}")
    for name, row in zip(dataset.task_names, gates, strict=True):
        print(f"{name} gate weights over the experts: {_numbers(row, digits=2)}")

    summary = {
        "config": dataclasses.asdict(config),
        "history": history,
        "best_epoch": best_epoch,
        "test_mse": dict(zip(dataset.task_names, test_mse.tolist(), strict=True)),
        "mean_gate_weights": dict(zip(dataset.task_names, gates.tolist(), strict=True)),
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _numbers(values, digits: int = 4) -> str:
    return " ".join(f"{value:.{digits}f}" for value in np.asarray(values).reshape(-1))


def parse_config(defaults, argv=None):
    """``defaults`` with the fields given on the command line replaced (a flag per field: ``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/multitask", help="where summary.json goes")
    add_config_flags(parser, type(defaults))  # The flags a run's config gets in the metajax command.
    args = vars(parser.parse_args(argv))
    workdir = args.pop("workdir")
    try:
        return checked_fields(dataclasses.replace(defaults, **args)), workdir
    except ValueError as error:  # A value out of its range, in one line.
        parser.error(str(error))


if __name__ == "__main__":
    from config import get_config  # Beside this file: the script's folder is on the path when it runs.

    train_and_evaluate(*parse_config(get_config()))
