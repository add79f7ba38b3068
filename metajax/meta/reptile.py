"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning
Algorithms", https://arxiv.org/abs/1803.02999).

For each task of a meta-batch, train a copy of the weights with a few optimizer
steps on that task, then move the weights toward the adapted copies:

    params <- params + meta_step_size * mean_tasks(adapted - params)

with ``meta_step_size`` annealed linearly from its initial to its final value
over ``meta_iters`` steps, as in the paper. We express the outer update as
``optax.sgd`` on the "gradient" ``params - mean(adapted)`` with an
``optax.linear_schedule``, which is exactly that formula.

The inner optimizer's state (Adam's second moments) persists across tasks, as
in the paper's code, where it is never reset during meta-training and every
evaluation task starts from its meta-trained value. That code runs the tasks of
a meta-batch one after another, each continuing the previous task's Adam
state; here they run in parallel (a ``vmap``) from the same carried state, and
the carried state becomes the mean of their final states.
``reset_inner_optimizer=True`` starts every task from a fresh state instead, as
per-task loops commonly do; the first Adam steps are then sign-gradient steps of
size ``lr`` on every weight, and Omniglot 5-way 1-shot accuracy fell by ten
points (benchmarks/NOTES.md).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_key
from metajax.data.tasks import TaskBatch, check_support_set, check_task_batch
from metajax.meta.base import ApplyFn, LossFn, MetaContext, MetaLearner, MetaState, Params, predict_queries, task_scores
from metajax.meta.inner_loop import make_adapt, mean_over_tasks
from metajax.options import option
from metajax.registry import META_LEARNERS

INNER_OPTIMIZERS = ("adam", "sgd")


class ReptileState(NamedTuple):
    """Reptile's own state: the inner optimizer state every task starts from (Adam's moments)."""

    inner_opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class ReptileOptions:
    """Reptile's options; defaults are the paper's Omniglot preset (arXiv 1803.02999, appendix, and its
    ``run_omniglot.py``): Adam with beta1 = 0 and rate 1e-3, 5 inner steps of 10 examples, meta step size
    1.0 annealed to 0, 50 evaluation steps of 5 examples."""

    inner_steps: int = option(5, "inner optimizer steps per task in meta-training", minimum=1)
    inner_batch: int = option(10, "mini-batch size of the inner steps", minimum=1)
    eval_inner_steps: int = option(50, "inner steps when adapting at evaluation", minimum=1)
    eval_inner_batch: int = option(5, "their mini-batch size at evaluation", minimum=1)
    inner_optimizer: str = option(
        "adam", "the inner optimizer (Adam with beta1 = 0, as the paper)", choices=INNER_OPTIMIZERS
    )
    inner_lr: float = option(1e-3, "the inner optimizer's learning rate", above=0)
    meta_step_size: float = option(1.0, "outer step size at the start")
    meta_step_size_final: float = option(0.0, "outer step size at the end (linear annealing)")
    reset_inner_optimizer: bool = option(
        False, "start every task from a fresh inner optimizer state (the paper carries Adam's state across tasks)"
    )


REPTILE_PRESETS = {
    # Training tasks of 10 examples per class whatever --shots the evaluation uses (the paper's commands'
    # --train-shots 10; with 1-shot training tasks an inner batch of 10 would cycle through 5 examples).
    "omniglot": dict(train_shots=10, query_shots=1, meta_batch=5, meta_iters=100_000),
    # The paper's sinusoid demo (inner SGD 0.02, meta step size 0.1), sized to finish in well under a minute.
    "sinusoid": dict(
        shots=10, query_shots=50, meta_batch=5, meta_iters=30_000, log_every=1000, eval_inner_steps=32,
        eval_inner_batch=10, inner_optimizer="sgd", inner_lr=0.02, meta_step_size=0.1,
    ),
}  # fmt: skip


def reptile(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    inner_optimizer: optax.GradientTransformation,
    inner_steps: int,
    inner_batch: int,
    meta_step_size: float = 1.0,
    meta_step_size_final: float = 0.0,
    meta_iters: int = 100_000,
    eval_inner_steps: int | None = None,
    eval_inner_batch: int | None = None,
    transductive: bool = False,
    reset_inner_optimizer: bool = False,
) -> MetaLearner:
    """Builds Reptile as pure functions.

    Args:
      apply_fn: ``apply_fn(params, x[batch, ...]) -> predictions[batch, ...]``.
      loss_fn: ``loss_fn(predictions, targets) -> scalar`` mean loss.
      inner_optimizer: the per-task optimizer (the paper: ``optax.adam(1e-3, b1=0)``).
      inner_steps: optimizer steps per task during meta-training.
      inner_batch: mini-batch size of those steps.
      meta_step_size: the outer interpolation rate at step 0.
      meta_step_size_final: its value after ``meta_iters`` steps (linear annealing).
      meta_iters: the length of the annealing schedule.
      eval_inner_steps: steps when adapting at evaluation (default ``inner_steps``).
      eval_inner_batch: their mini-batch size (default ``inner_batch``).
      transductive: at evaluation, predict the whole query set as one batch (its
        batch-norm statistics shared); otherwise each query example is predicted
        in a batch with the support set alone, as the paper's non-transductive
        setting.
      reset_inner_optimizer: start every task from a fresh inner optimizer
        state instead of the carried one (see the module docstring).

    Returns:
      A ``MetaLearner``; jit ``step`` and ``evaluate`` (they are pure).

    Example:
      >>> learner = reptile(model.apply, softmax_cross_entropy,
      ...                   inner_optimizer=optax.adam(1e-3, b1=0.0),
      ...                   inner_steps=5, inner_batch=10, meta_iters=1000)
      >>> state = learner.init(params)
      >>> state, metrics = jax.jit(learner.step)(state, tasks, key=key)
      >>> accuracy = learner.evaluate(state, test_tasks, key=key)["accuracy"]
    """
    if meta_iters < 1:
        raise ValueError(f"meta_iters must be >= 1, got {meta_iters}")
    schedule = optax.linear_schedule(meta_step_size, meta_step_size_final, meta_iters)
    outer_optimizer = optax.sgd(schedule)
    train_adapt = make_adapt(apply_fn, loss_fn, inner_optimizer, inner_steps, inner_batch)
    eval_adapt = make_adapt(
        apply_fn, loss_fn, inner_optimizer, eval_inner_steps or inner_steps, eval_inner_batch or inner_batch
    )

    def init(params: Params) -> MetaState:
        return MetaState(
            params=params,
            opt_state=outer_optimizer.init(params),
            step=jnp.zeros((), jnp.int32),
            learner_state=ReptileState(inner_optimizer.init(params)),
        )

    def starting_inner_state(state: MetaState) -> optax.OptState:
        return inner_optimizer.init(state.params) if reset_inner_optimizer else state.learner_state.inner_opt_state

    def step(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> tuple[MetaState, dict[str, jax.Array]]:
        check_task_batch(tasks, need_queries=False)  # Trains on support sets alone.
        check_key("key", key)
        task_keys = jax.random.split(key, tasks.num_tasks)
        inner_start = starting_inner_state(state)
        adapted, inner_states, losses = jax.vmap(lambda x, y, k: train_adapt(state.params, inner_start, x, y, key=k))(
            tasks.support_x, tasks.support_y, task_keys
        )
        meta_gradient = jax.tree.map(jnp.subtract, state.params, mean_over_tasks(adapted))
        updates, opt_state = outer_optimizer.update(meta_gradient, state.opt_state, state.params)
        carried = state.learner_state if reset_inner_optimizer else ReptileState(mean_over_tasks(inner_states))
        new_state = MetaState(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            step=state.step + 1,
            learner_state=carried,
        )
        metrics = {
            "inner_loss_first": jnp.mean(losses[:, 0]),
            "inner_loss_last": jnp.mean(losses[:, -1]),
            "meta_step_size": schedule(state.step),
        }
        return new_state, metrics

    def adapt(state: MetaState, support_x: jax.Array, support_y: jax.Array, *, key: jax.Array) -> Params:
        check_support_set(support_x, support_y)
        check_key("key", key)
        return eval_adapt(state.params, starting_inner_state(state), support_x, support_y, key=key)[0]

    def evaluate_one(state, support_x, support_y, query_x, query_y, key):
        adapted = adapt(state, support_x, support_y, key=key)
        return task_scores(
            loss_fn, predict_queries(apply_fn, adapted, support_x, query_x, transductive=transductive), query_y
        )

    def evaluate(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> dict[str, jax.Array]:
        check_task_batch(tasks)
        check_key("key", key)
        task_keys = jax.random.split(key, tasks.num_tasks)
        return jax.vmap(evaluate_one, in_axes=(None, 0, 0, 0, 0, 0))(state, *tasks, task_keys)

    return MetaLearner(init=init, step=step, adapt=adapt, evaluate=evaluate)


@META_LEARNERS.register(
    "reptile",
    hyperparams=ReptileOptions,
    description="Reptile (Nichol et al. 2018): train a copy of the weights on each task, move toward it.",
    presets=REPTILE_PRESETS,
    trains_on_queries=False,
    training_loss="inner_loss_last",
    schedules=("meta_step_size",),
)
def build_reptile(options: ReptileOptions, context: MetaContext) -> MetaLearner:
    inner_optimizer = {
        "adam": optax.adam(options.inner_lr, b1=0.0),  # The paper's beta1 = 0.
        "sgd": optax.sgd(options.inner_lr),
    }[options.inner_optimizer]
    return reptile(
        context.apply_fn,
        context.loss_fn,
        inner_optimizer=inner_optimizer,
        inner_steps=options.inner_steps,
        inner_batch=options.inner_batch,
        meta_step_size=options.meta_step_size,
        meta_step_size_final=options.meta_step_size_final,
        meta_iters=context.meta_iters,
        eval_inner_steps=options.eval_inner_steps,
        eval_inner_batch=options.eval_inner_batch,
        transductive=context.transductive,
        reset_inner_optimizer=options.reset_inner_optimizer,
    )
