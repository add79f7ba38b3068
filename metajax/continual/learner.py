"""Training a model through a stream of experiences with a strategy, as pure functions."""

from __future__ import annotations

import math
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


class TrainMode(NamedTuple):
    """How a model whose training forward pass differs from its inference one (batch norm) trains.

    Attributes:
      apply: ``(params, x) -> (logits, params_after)``: the training forward pass; ``params_after`` is
        ``params`` with the running statistics it updated (not differentiated).
      statistics: ``(params) -> `` a pytree of Python bools like ``params``, True for the running statistics.
    """

    apply: Callable[[Any, jax.Array], tuple[jax.Array, Any]]
    statistics: Callable[[Any], Any]


def _without_statistics_updates(optimizer: optax.GradientTransformation, statistics: Callable[[Any], Any]):
    """``optimizer`` on everything but the leaves ``statistics(params)`` marks, whose updates are zero.

    Explicit rather than left to a zero gradient: weight decay (``adamw``) would move a leaf whose
    gradient is zero.
    """

    def labels(params):
        return jax.tree.map(lambda is_statistic: "statistics" if is_statistic else "trained", statistics(params))

    return optax.multi_transform({"trained": optimizer, "statistics": optax.set_to_zero()}, labels)


class ContinualLearner(NamedTuple):
    """``init(params)``; ``train_experience(state, experience, *, key) -> (state, metrics)``;
    ``accuracy(state, test_x, test_y, test_mask, logit_mask) -> [experiences]``."""

    init: Callable
    train_experience: Callable
    accuracy: Callable


def check_experience(experience: Experience) -> None:
    x, y, mask = (jnp.shape(a) for a in experience[:3])
    if len(x) < 2:
        raise ValueError(f"experience.x must have shape [examples, *example_shape], got shape {x}")
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
    if experience.weight is not None:
        check_array("experience.weight", experience.weight, x[:1], f"[examples = {x[0]}]", dtype="floating")


_KEYS_PER_STEP = 3  # augment, project, observe
_BEFORE_EXPERIENCE = 0x6265  # fold_in data for the key of ``before_experience``, apart from the one draw


def _draw(key: jax.Array, shape: tuple[int, ...], *, keys: int) -> tuple[jax.Array, jax.Array]:
    """Random ``uint32`` words of ``shape`` and ``keys`` new random keys, from one draw.

    ``jax.random.bits(key, (size + keys * w,))``: the first ``size`` words fill
    ``shape``, the rest, ``w`` at a time, are the keys (a threefry key is two
    random words, as ``jax.random.split`` makes them; another implementation's
    keys get as many words as they hold). One draw because XLA compiles every
    draw from a key (each split, fold_in, permutation round) as code of its
    own, and that compilation lies inside every continual run's time:
    compiling a Split MNIST batch-10 experience took 0.58-0.63 s with five
    draws, two of them the two rounds of ``jax.random.permutation``, and
    0.44-0.48 s with one (the build machine's CPU, benchmarks/RESULTS.md).
    """
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)  # A raw uint32[2] key.
    words = jax.random.key_data(key).shape[-1]
    size = math.prod(shape)
    bits = jax.random.bits(key, (size + keys * words,), jnp.uint32)
    new_keys = jax.random.wrap_key_data(bits[size:].reshape(keys, words), impl=jax.random.key_impl(key))
    return bits[:size].reshape(shape), new_keys


def continual_learner(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    strategy: Strategy,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int,
    batch_size: int,
    reset_optimizer: bool = False,
    train_mode: TrainMode | None = None,
) -> ContinualLearner:
    """Builds the pure functions of continual training.

    Args:
      apply_fn: ``(params, x [batch, *example_shape]) -> logits [batch, outputs]``, any model.
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
      train_mode: for a model with running statistics (batch norm, ``RunningStatistics`` in
        ``metajax.models.interfaces``): the step's one forward pass is ``train_mode.apply``; the
        statistics get a zero gradient and no optimizer update, then take the values that forward pass
        gave them. ``apply_fn`` stays inference mode: it scores, and it is what strategies that run the
        model themselves call (EWC's Fisher, LwF's previous model, A-GEM's reference gradient).

    Returns:
      A ``ContinualLearner``; ``train_experience`` runs every epoch of one
      experience as one ``lax.scan`` and then the strategy's end-of-experience update.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if train_mode is not None:
        optimizer = _without_statistics_updates(optimizer, train_mode.statistics)

    def data_loss(params, batch: ContinualBatch):
        return masked_cross_entropy(apply_fn(params, batch.x), batch.y, batch.logit_mask, batch.weight)

    def init(params) -> ContinualState:
        return ContinualState(params, optimizer.init(params), strategy.init(params), jnp.zeros((), jnp.int32))

    def train_experience(state: ContinualState, experience: Experience, *, key):
        check_experience(experience)
        check_key("key", key)
        if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # A raw uint32[2] key.
        strategy_state, start_params, experience = strategy.before_experience(
            state.strategy_state, state.params, experience, jax.random.fold_in(key, _BEFORE_EXPERIENCE)
        )
        check_experience(experience)
        n = experience.x.shape[0]
        steps_per_epoch = n // batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"the experience has {n} examples, fewer than batch_size = {batch_size}")
        opt_state = optimizer.init(start_params) if reset_optimizer else state.opt_state
        steps = epochs * steps_per_epoch
        order_bits, keys = _draw(key, (epochs, n), keys=steps * _KEYS_PER_STEP + 1)
        # Each epoch's order: the indices sorted by a random word each. A tie keeps two
        # examples in index order, which costs a training shuffle nothing.
        rows = jnp.argsort(order_bits, axis=1)[:, : steps_per_epoch * batch_size].reshape(steps, batch_size)
        step_keys, end_key = keys[:-1].reshape(steps, _KEYS_PER_STEP), keys[-1]
        per_example_heads = experience.logit_mask.ndim == 2  # e.g. joint training over task-IL experiences

        def step(carry, inputs):
            params, opt_state, strategy_state = carry
            batch_rows, (augment_key, project_key, observe_key) = inputs
            head = (
                experience.logit_mask[batch_rows]
                if per_example_heads
                else jnp.broadcast_to(experience.logit_mask, (batch_size, experience.logit_mask.shape[-1]))
            )
            weight = jnp.ones((batch_size,)) if experience.weight is None else experience.weight[batch_rows]
            arrived = ContinualBatch(experience.x[batch_rows], experience.y[batch_rows], head, weight)
            batch = strategy.augment(strategy_state, arrived, augment_key)

            def total_loss(p):
                # One forward pass for the loss and the strategy's penalty.
                outputs, forwarded = (
                    (apply_fn(p, batch.x), None) if train_mode is None else train_mode.apply(p, batch.x)
                )
                loss = masked_cross_entropy(outputs, batch.y, batch.logit_mask, batch.weight)
                return loss + strategy.penalty(p, strategy_state, batch, outputs), (loss, outputs, forwarded)

            (_, (loss, outputs, forwarded)), grads = jax.value_and_grad(total_loss, has_aux=True)(params)
            if train_mode is not None:  # Not parameters: no gradient of theirs reaches a projection or SI's path.
                statistics = train_mode.statistics(params)
                grads = jax.tree.map(lambda s, g: jnp.zeros_like(g) if s else g, statistics, grads)
            grads = strategy.project(grads, params, strategy_state, project_key, data_loss)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            if train_mode is not None:
                new_params = jax.tree.map(lambda s, p, f: f if s else p, statistics, new_params, forwarded)
            strategy_state = strategy.after_step(strategy_state, params, new_params, grads)
            arrived_outputs = jax.lax.stop_gradient(outputs[:batch_size])
            strategy_state = strategy.observe(strategy_state, arrived, arrived_outputs, observe_key)
            return (new_params, opt_state, strategy_state), loss

        (params, opt_state, strategy_state), losses = jax.lax.scan(
            step, (start_params, opt_state, strategy_state), (rows, step_keys)
        )
        strategy_state = strategy.after_experience(strategy_state, params, experience, end_key)
        new_state = ContinualState(params, opt_state, strategy_state, state.experiences_done + 1)
        return new_state, {"loss": jnp.mean(losses), "final_loss": losses[-1]}

    def predict(state: ContinualState, x):
        if strategy.predict is None:
            return apply_fn(state.params, x)
        return strategy.predict(state.params, state.strategy_state, x)

    def accuracy(state: ContinualState, test_x, test_y, test_mask, logit_mask):
        """Accuracy per experience: ``test_x [e, m, *example_shape]``, ``test_y``/``test_mask [e, m]``,
        ``logit_mask [e, outputs]`` (each experience scored with its own head, by the strategy's
        ``predict`` where it has one)."""
        x_shape = check_array(
            "test_x", test_x, (None, None, None, ...), "[experiences, examples, *example_shape]", dtype="floating"
        )
        e, m = x_shape[:2]
        check_array("test_y", test_y, (e, m), "[experiences, examples]", dtype="integer")
        check_array("test_mask", test_mask, (e, m), "[experiences, examples]", dtype="bool")
        check_array("logit_mask", logit_mask, (e, None), "[experiences, outputs]", dtype="bool")

        def one(x, y, valid, head):
            logits = jnp.where(head, predict(state, x), -jnp.inf)
            correct = (jnp.argmax(logits, axis=-1) == y) & valid
            return jnp.sum(correct) / jnp.maximum(jnp.sum(valid), 1)

        return jax.lax.map(lambda args: one(*args), (test_x, test_y, test_mask, logit_mask))

    return ContinualLearner(init, train_experience, accuracy)
