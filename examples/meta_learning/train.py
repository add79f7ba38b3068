"""MAML on sinusoid regression, written with metajax's functional pieces.

Each task is a sine curve of its own amplitude and phase; the network sees K
points of it (the support set) and must predict the rest (the query set).
MAML (Finn et al. 2017, https://arxiv.org/abs/1703.03400) meta-learns initial
weights from which one gradient step on the support set fits a new curve.

    python examples/meta_learning/train.py --steps 2000

The pieces: ``sinusoid_sampler`` draws a batch of tasks from a key,
``maml(...)`` returns a ``MetaLearner`` NamedTuple of pure functions (``init``,
``step``, ``adapt``, ``evaluate``) whose ``step`` vmaps the inner loop over the
tasks of a meta-batch; we jit one training step and loop over it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.data import sinusoid_sampler
from metajax.meta import MetaLearner, MetaState, maml, mean_squared_error
from metajax.models import MLP
from metajax.options import add_config_flags, checked_fields


def adaptation_mse(learner: MetaLearner, apply_fn, state: MetaState, tasks, key: jax.Array) -> dict[str, jax.Array]:
    """Mean query MSE over ``tasks`` with the meta-learned weights as they are, and after adapting to each
    task's support set (``learner.evaluate`` adapts with the evaluation inner loop, one task per vmap lane)."""
    before = jax.vmap(lambda x, y: mean_squared_error(apply_fn(state.params, x), y))(tasks.query_x, tasks.query_y)
    after = learner.evaluate(state, tasks, key=key)["loss"]
    return {"before_adaptation": before.mean(), "after_adaptation": after.mean()}


def train_and_evaluate(config, workdir: str | Path) -> dict[str, Any]:
    """Meta-trains MAML for ``config.steps`` steps; returns (and writes to ``workdir/summary.json``) the
    logged training losses and the test MSE, before and after adaptation, at the start and at the end."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)

    model = MLP(hidden=tuple(config.hidden), out_features=1)
    # The learner never sees the model: only ``apply_fn(params, x)`` and a loss.
    learner = maml(
        model.apply,
        mean_squared_error,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        eval_inner_steps=config.eval_inner_steps,
        outer_optimizer=optax.adam(config.meta_lr),
    )
    state = learner.init(model.init(init_key, jnp.zeros((1, 1))))

    sample_train_tasks = sinusoid_sampler(config.shots, config.query_shots)
    # Test tasks with many query points, so the MSE measures the whole curve; one fixed set for both scores.
    test_tasks = sinusoid_sampler(config.shots, config.eval_query_shots)(eval_key, config.eval_tasks)
    mse = jax.jit(lambda state, key: adaptation_mse(learner, model.apply, state, test_tasks, key))

    def evaluate(state, key):
        return {name: float(value) for name, value in mse(state, key).items()}

    @jax.jit
    def train_step(state: MetaState, key: jax.Array):
        # Tasks are drawn on the device inside the compiled step: no input pipeline.
        tasks_key, step_key = jax.random.split(key)
        return learner.step(state, sample_train_tasks(tasks_key, config.meta_batch), key=step_key)

    adapting = f"{config.eval_inner_steps} inner step{'s' * (config.eval_inner_steps > 1)} of {config.inner_lr}"

    def show(when: str, test: dict[str, float]) -> None:
        as_is, adapted = test["before_adaptation"], test["after_adaptation"]
        print(f"{when}: test MSE {as_is:.3f} as is, {adapted:.3f} after {adapting}")

    initial = evaluate(state, eval_key)
    show("before meta-training", initial)

    losses = []  # (step, mean query loss over the logging interval)
    window = []
    for step in range(1, config.steps + 1):
        # The key depends on the step alone: the same run whatever the loop around it.
        state, metrics = train_step(state, jax.random.fold_in(train_key, step))
        window.append(metrics["query_loss"])
        if step % config.log_every == 0 or step == config.steps:
            # Reading the losses back once per interval, not every step, keeps the device busy.
            losses.append((step, float(np.mean(jax.device_get(window)))))
            window = []
            print(f"step {step:6d}  query loss (after adapting) {losses[-1][1]:.4f}")

    final = evaluate(state, eval_key)
    show("after meta-training", final)

    summary = {
        "config": dataclasses.asdict(config),
        "train_losses": losses,
        "test_mse_initial": initial,
        "test_mse_final": final,
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def parse_config(defaults, argv=None):
    """``defaults`` with the fields given on the command line replaced (a flag per field: ``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/meta_learning", help="where summary.json goes")
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
