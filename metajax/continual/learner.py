"""Training a model through a stream of experiences with a strategy, as pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_array, check_key
from metajax.continual.base import ContinualBatch, Experience, Strategy, masked_cross_entropy


class ContinualState(NamedTuple):
    """``params``, the optimizer state, the strategy's state and the number of experiences trained on."""

    params: Any
    opt_state: optax.OptState
    strategy_state: Any
    experiences_done: jax.Array


class ContinualLearner(NamedTuple):
    """``init(params)``; ``train_experience(state, experience, *, key) -> (state, metrics)``;
    ``accuracy(params, test_x, test_y, test_mask, logit_mask) -> [experiences]``."""

    init: Callable
    train_experience: Callable
    accuracy: Callable


def check_experience(experience: Experience) -> None:
    x, y, mask = (jnp.shape(a) for a in experience[:3])
    if len(x) != 2:
        raise ValueError(f"experience.x must have shape [examples, features], got shape {x}")
    if y != x[:1]:
        raise ValueError(f"experience.y must have shape [examples] = {x[:1]}, got shape {y}")
    if len(mask) != 1 and (len(mask) != 2 or mask[0] != x[0]):
        raise ValueError(
            f"experience.logit_mask must have shape [outputs] or [examples, outputs] with examples = {x[0]}, "
            f"got shape {mask}"
        )
    check_array("experience.x", experience.x, dtype="floating")
    check_array("experience.y", experience.y, dtype="integer")
    check_array("experience.logit_mask", experience.logit_mask, dtype="bool")


def continual_learner(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    strategy: Strategy,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int,
    batch_size: int,
    reset_optimizer: bool = False,
) -> ContinualLearner:
    """Builds the pure functions of continual training.

    Args:
      apply_fn: ``(params, x [batch, features]) -> logits [batch, outputs]``.
      strategy: what happens around each step and experience (``naive()``, ``replay(...)``, ...).
      optimizer: optax optimizer.
      epochs: passes over each experience.
      batch_size: examples per step (the last partial batch of an epoch is dropped).
      reset_optimizer: start each experience from a fresh optimizer state. By
        default Adam's moment estimates carry over from one experience to the
        next, as in Avalanche 0.6 (``make_optimizer(reset_optimizer_state=False)``):
        a fresh Adam takes sign-like steps of the full learning rate on every
        weight at the start of each experience, which on Permuted MNIST cost
        EWC (lambda 100) 0.936 -> 0.890 and naive fine-tuning 0.70 -> 0.53
        (benchmarks/RESULTS.md).

    Returns:
      A ``ContinualLearner``; ``train_experience`` runs every epoch of one
      experience as one ``lax.scan`` and then the strategy's end-of-experience update.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")

    def data_loss(params, batch: ContinualBatch):
        return masked_cross_entropy(apply_fn(params, batch.x), batch.y, batch.logit_mask, batch.weight)

    def init(params) -> ContinualState:
        return ContinualState(params, optimizer.init(params), strategy.init(params), jnp.zeros((), jnp.int32))

    def train_experience(state: ContinualState, experience: Experience, *, key):
        check_experience(experience)
        check_key("key", key)
        n = experience.x.shape[0]
        steps_per_epoch = n // batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"the experience has {n} examples, fewer than batch_size = {batch_size}")
        opt_state = optimizer.init(state.params) if reset_optimizer else state.opt_state
        order_key, steps_key, end_key = jax.random.split(key, 3)
        rows = jax.vmap(lambda k: jax.random.permutation(k, n)[: steps_per_epoch * batch_size])(
            jax.random.split(order_key, epochs)
        ).reshape(epochs * steps_per_epoch, batch_size)
        per_example_heads = experience.logit_mask.ndim == 2  # e.g. joint training over task-IL experiences

        def step(carry, inputs):
            params, opt_state, strategy_state = carry
            batch_rows, step_key = inputs
            augment_key, project_key = jax.random.split(step_key)
            head = (
                experience.logit_mask[batch_rows]
                if per_example_heads
                else jnp.broadcast_to(experience.logit_mask, (batch_size, experience.logit_mask.shape[-1]))
            )
            arrived = ContinualBatch(experience.x[batch_rows], experience.y[batch_rows], head, jnp.ones((batch_size,)))
            batch = strategy.augment(strategy_state, arrived, augment_key)

            def total_loss(p):
                loss = data_loss(p, batch)
                return loss + strategy.penalty(p, strategy_state, batch), loss

            (_, loss), grads = jax.value_and_grad(total_loss, has_aux=True)(params)
            grads = strategy.project(grads, params, strategy_state, project_key, data_loss)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            strategy_state = strategy.after_step(strategy_state, params, new_params, grads)
            # A key of its own, so that strategies without the hook keep the random streams they had.
            strategy_state = strategy.observe(strategy_state, arrived, jax.random.fold_in(step_key, 2))
            return (new_params, opt_state, strategy_state), loss

        step_keys = jax.random.split(steps_key, rows.shape[0])
        (params, opt_state, strategy_state), losses = jax.lax.scan(
            step, (state.params, opt_state, state.strategy_state), (rows, step_keys)
        )
        strategy_state = strategy.after_experience(strategy_state, params, experience, end_key)
        new_state = ContinualState(params, opt_state, strategy_state, state.experiences_done + 1)
        return new_state, {"loss": jnp.mean(losses), "final_loss": losses[-1]}

    def accuracy(params, test_x, test_y, test_mask, logit_mask):
        """Accuracy per experience: ``test_x [e, m, features]``, ``test_y``/``test_mask [e, m]``,
        ``logit_mask [e, outputs]`` (each experience scored with its own head)."""
        x_shape = check_array(
            "test_x", test_x, (None, None, None), "[experiences, examples, features]", dtype="floating"
        )
        e, m = x_shape[:2]
        check_array("test_y", test_y, (e, m), "[experiences, examples]", dtype="integer")
        check_array("test_mask", test_mask, (e, m), "[experiences, examples]", dtype="bool")
        check_array("logit_mask", logit_mask, (e, None), "[experiences, outputs]", dtype="bool")

        def one(x, y, valid, head):
            logits = jnp.where(head, apply_fn(params, x), -jnp.inf)
            correct = (jnp.argmax(logits, axis=-1) == y) & valid
            return jnp.sum(correct) / jnp.maximum(jnp.sum(valid), 1)

        return jax.lax.map(lambda args: one(*args), (test_x, test_y, test_mask, logit_mask))

    return ContinualLearner(init, train_experience, accuracy)
