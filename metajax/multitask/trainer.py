"""Training and evaluation steps of a multi-task model, as pure functions.

The model is any ``apply_fn(params, x) -> MultiTaskOutput`` whose predictions
have a leading task axis; the per-task loss is vmapped over that axis, and a
weighting (``metajax.multitask.weighting``) turns the task losses, or the
per-task gradients of one ``jacrev`` pass, into the model's update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_key
from metajax.data.multitask import MultiTaskBatch, check_multitask_batch
from metajax.models.task_stacks import MultiTaskOutput
from metajax.multitask.losses import TASK_LOSSES, TaskLoss
from metajax.multitask.weighting import GradientWeighting, LossWeighting, equal_weighting


class MultiTaskState(NamedTuple):
    """Everything that changes during training.

    Attributes:
      params: the model's parameters.
      opt_state: the model optimizer's state.
      weighting_state: the weighting's own state (its parameters and their optimizer, its history).
      step: number of train steps taken.
    """

    params: Any
    opt_state: optax.OptState
    weighting_state: Any
    step: jax.Array


class MultiTaskTrainer(NamedTuple):
    """``init(params) -> state``; ``train_step(state, batch, *, key) -> (state, metrics)``;
    ``train_epoch(state, data, *, key) -> (state, metrics)``; ``eval_step(params, batch) -> metrics``;
    ``predict(params, x) -> MultiTaskOutput``."""

    init: Callable
    train_step: Callable
    train_epoch: Callable
    eval_step: Callable
    predict: Callable


def multitask_trainer(
    apply_fn: Callable[[Any, jax.typing.ArrayLike], MultiTaskOutput],
    num_tasks: int,
    *,
    optimizer: optax.GradientTransformation,
    task_loss: str | TaskLoss = "binary",
    weighting: LossWeighting | GradientWeighting | None = None,
    shared_parameters: Callable[[Any], Any] | None = None,
    batch_size: int = 32,
    place_batch: Callable[[MultiTaskBatch], MultiTaskBatch] | None = None,
) -> MultiTaskTrainer:
    """Builds the pure train and eval functions of a multi-task model.

    Args:
      apply_fn: ``(params, x [batch, features]) -> MultiTaskOutput`` with
        ``[tasks, batch]`` predictions.
      num_tasks: number of tasks (label columns).
      optimizer: optax optimizer of the model's parameters.
      task_loss: ``"binary"`` (sigmoid cross-entropy on logits),
        ``"regression"`` (squared error), or ``loss(predictions [batch],
        labels [batch]) -> scalar``; the same for every task.
      weighting: a ``LossWeighting`` (how task losses combine; default: equal weights, summed) or a
        ``GradientWeighting`` (how per-task gradients combine: ``pcgrad()``, ``mgda()``, ``gradnorm(...)``;
        the per-task gradients come from one ``jacrev`` pass, a backward pass per task).
      shared_parameters: ``(params) -> bools like params``, the model's declared shared parameters
        (e.g. ``MMoE(...).shared_parameters``), for the gradient weightings that need them.
      batch_size: examples per step in ``train_epoch`` (the last partial batch
        of an epoch is dropped).
      place_batch: lays each batch of ``train_epoch`` out over devices (e.g.
        ``metajax.train.sharding.shard_leading_axis``); default: as it is.

    Returns:
      A ``MultiTaskTrainer``; jit its functions (they are pure).
    """
    if isinstance(task_loss, str):
        if task_loss not in TASK_LOSSES:
            raise ValueError(f"task_loss must be one of {', '.join(TASK_LOSSES)} or a function, got {task_loss!r}")
        task_loss = TASK_LOSSES[task_loss]
    weighting = weighting or equal_weighting()

    def task_losses_of(params, batch: MultiTaskBatch) -> tuple[jax.Array, MultiTaskOutput]:
        output = apply_fn(params, batch.x)
        losses = jax.vmap(task_loss)(output.predictions, jnp.asarray(batch.y).T)
        return losses, output

    def init(params) -> MultiTaskState:
        return MultiTaskState(
            params=params,
            opt_state=optimizer.init(params),
            weighting_state=weighting.init(num_tasks),
            step=jnp.zeros((), jnp.int32),
        )

    def train_step(state: MultiTaskState, batch: MultiTaskBatch, *, key: jax.Array):
        check_multitask_batch(batch, num_tasks)
        check_key("key", key)
        if isinstance(weighting, GradientWeighting):
            scales = weighting.loss_scales(state.weighting_state)

            def task_terms(params):
                losses, _ = task_losses_of(params, batch)
                return (losses if scales is None else scales * losses), losses

            task_grads, task_losses = jax.jacrev(task_terms, has_aux=True)(state.params)
            shared = None if shared_parameters is None else shared_parameters(state.params)
            grads, weighting_state = weighting.combine(
                state.weighting_state, task_grads, task_losses, key=key, shared=shared
            )
        else:

            def objective(params):
                losses, _ = task_losses_of(params, batch)
                return jnp.sum(weighting.task_terms(state.weighting_state, losses)), losses

            (_, task_losses), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
            weighting_state = weighting.update(state.weighting_state, task_losses)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_state = MultiTaskState(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            weighting_state=weighting_state,
            step=state.step + 1,
        )
        task_weights = weighting.weights(state.weighting_state)
        metrics = {
            "task_losses": task_losses,
            "task_weights": jnp.ones_like(task_losses) if task_weights is None else task_weights,
        }
        return new_state, metrics

    def train_epoch(state: MultiTaskState, data: MultiTaskBatch, *, key: jax.Array):
        """One pass over ``data`` in shuffled batches, as a ``lax.scan``, then the weighting's end of epoch;
        metrics are means over the steps."""
        check_multitask_batch(data, num_tasks, "data")
        check_key("key", key)
        num_batches = data.x.shape[0] // batch_size
        if num_batches == 0:
            raise ValueError(f"data has {data.x.shape[0]} examples, fewer than batch_size = {batch_size}")
        shuffle_key, steps_key = jax.random.split(key)
        order = jax.random.permutation(shuffle_key, data.x.shape[0])[: num_batches * batch_size]
        step_keys = jax.random.split(steps_key, num_batches)

        def body(state, inputs):
            # Gathering each batch inside the loop, not the whole shuffled set up
            # front, keeps the copy small and in cache.
            rows, step_key = inputs
            batch = jax.tree.map(lambda a: a[rows], data)
            return train_step(state, batch if place_batch is None else place_batch(batch), key=step_key)

        state, metrics = jax.lax.scan(body, state, (order.reshape(num_batches, batch_size), step_keys))
        state = state._replace(weighting_state=weighting.after_epoch(state.weighting_state))
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    def eval_step(params, batch: MultiTaskBatch) -> dict[str, jax.Array]:
        check_multitask_batch(batch, num_tasks)
        task_losses, _ = task_losses_of(params, batch)
        return {"task_losses": task_losses}

    return MultiTaskTrainer(init, train_step, train_epoch, eval_step, apply_fn)
