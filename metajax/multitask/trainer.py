"""Training and evaluation steps of a multi-task model, as pure functions.

The model is any ``apply_fn(params, x) -> MultiTaskOutput`` whose predictions
have a leading task axis; the per-task loss is vmapped over that axis, a
``LossWeighting`` turns the task losses into one objective, and an optional
gradient surgery transform (``pcgrad``) combines per-task gradients.
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
from metajax.multitask.weighting import LossWeighting, equal_weighting


class MultiTaskState(NamedTuple):
    """Everything that changes during training.

    Attributes:
      params: the model's parameters.
      weighting_params: the loss weighting's learnable parameters.
      opt_state: optimizer state over ``(params, weighting_params)``.
      surgery_state: the gradient surgery transform's state (or an empty one).
      initial_task_losses: ``[tasks]`` the losses of the first step (GradNorm's L(0)).
      step: number of train steps taken.
    """

    params: Any
    weighting_params: Any
    opt_state: optax.OptState
    surgery_state: optax.OptState
    initial_task_losses: jax.Array
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


def is_shared_parameter(path) -> bool:
    """Parameters used by every task: those under a module named ``shared_*`` (the models' convention)."""
    return any(str(getattr(entry, "key", "")).startswith("shared_") for entry in path)


def _shared_norms(task_gradients) -> jax.Array:
    """``[tasks]`` norms of each task's gradient restricted to the shared parameters."""
    squares = [
        jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1)), axis=1)
        for path, leaf in jax.tree_util.tree_leaves_with_path(task_gradients)
        if is_shared_parameter(path)
    ]
    if not squares:
        raise ValueError("GradNorm needs shared parameters (modules named 'shared_*'); the model has none")
    return jnp.sqrt(sum(squares))


def multitask_trainer(
    apply_fn: Callable[[Any, jax.Array], MultiTaskOutput],
    num_tasks: int,
    *,
    optimizer: optax.GradientTransformation,
    task_loss: str | TaskLoss = "binary",
    weighting: LossWeighting | None = None,
    gradient_surgery: optax.GradientTransformationExtraArgs | None = None,
    batch_size: int = 32,
    place_batch: Callable[[MultiTaskBatch], MultiTaskBatch] | None = None,
) -> MultiTaskTrainer:
    """Builds the pure train and eval functions of a multi-task model.

    Args:
      apply_fn: ``(params, x [batch, features]) -> MultiTaskOutput`` with
        ``[tasks, batch]`` predictions.
      num_tasks: number of tasks (label columns).
      optimizer: optax optimizer of the model and weighting parameters.
      task_loss: ``"binary"`` (sigmoid cross-entropy on logits),
        ``"regression"`` (squared error), or ``loss(predictions [batch],
        labels [batch]) -> scalar``; the same for every task.
      weighting: how task losses combine (default: equal weights, summed).
      gradient_surgery: a transform from per-task gradients to one gradient,
        such as ``pcgrad()``; per-task gradients cost one backward pass per task.
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
    needs_task_gradients = weighting.weight_gradient is not None or gradient_surgery is not None

    def task_losses_of(params, batch: MultiTaskBatch) -> tuple[jax.Array, MultiTaskOutput]:
        output = apply_fn(params, batch.x)
        losses = jax.vmap(task_loss)(output.predictions, batch.y.T)
        return losses, output

    def init(params) -> MultiTaskState:
        weighting_params = weighting.init(num_tasks)
        return MultiTaskState(
            params=params,
            weighting_params=weighting_params,
            opt_state=optimizer.init((params, weighting_params)),
            surgery_state=gradient_surgery.init(params) if gradient_surgery else optax.EmptyState(),
            initial_task_losses=jnp.ones((num_tasks,)),
            step=jnp.zeros((), jnp.int32),
        )

    def train_step(state: MultiTaskState, batch: MultiTaskBatch, *, key: jax.Array):
        check_multitask_batch(batch, num_tasks)
        check_key("key", key)

        def task_terms(params, weighting_params):
            losses, _ = task_losses_of(params, batch)
            return weighting.task_terms(weighting_params, losses), losses

        if needs_task_gradients:
            (param_jacobian, weighting_jacobian), task_losses = jax.jacrev(task_terms, argnums=(0, 1), has_aux=True)(
                state.params, state.weighting_params
            )
            if gradient_surgery is None:
                param_grads = jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), param_jacobian)
                surgery_state = state.surgery_state
            else:
                param_grads, surgery_state = gradient_surgery.update(
                    param_jacobian, state.surgery_state, state.params, key=key
                )
            weighting_grads = jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), weighting_jacobian)
        else:

            def objective(params, weighting_params):
                terms, losses = task_terms(params, weighting_params)
                return jnp.sum(terms), losses

            (_, task_losses), (param_grads, weighting_grads) = jax.value_and_grad(
                objective, argnums=(0, 1), has_aux=True
            )(state.params, state.weighting_params)
            surgery_state = state.surgery_state
        initial_task_losses = jnp.where(state.step == 0, task_losses, state.initial_task_losses)
        if weighting.weight_gradient is not None:
            weighting_grads = weighting.weight_gradient(
                state.weighting_params, task_losses, initial_task_losses, _shared_norms(param_jacobian)
            )
        updates, opt_state = optimizer.update(
            (param_grads, weighting_grads), state.opt_state, (state.params, state.weighting_params)
        )
        params, weighting_params = optax.apply_updates((state.params, state.weighting_params), updates)
        new_state = MultiTaskState(
            params=params,
            weighting_params=weighting.project(weighting_params),
            opt_state=opt_state,
            surgery_state=surgery_state,
            initial_task_losses=initial_task_losses,
            step=state.step + 1,
        )
        task_weights = weighting.weights(state.weighting_params)
        metrics = {
            "task_losses": task_losses,
            "task_weights": jnp.ones_like(task_losses) if task_weights is None else task_weights,
        }
        return new_state, metrics

    def train_epoch(state: MultiTaskState, data: MultiTaskBatch, *, key: jax.Array):
        """One pass over ``data`` in shuffled batches, as a ``lax.scan``; metrics are means over the steps."""
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
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    def eval_step(params, batch: MultiTaskBatch) -> dict[str, jax.Array]:
        check_multitask_batch(batch, num_tasks)
        task_losses, _ = task_losses_of(params, batch)
        return {"task_losses": task_losses}

    return MultiTaskTrainer(init, train_step, train_epoch, eval_step, apply_fn)
