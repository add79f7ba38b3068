"""The strategy interface: hooks a continual-learning strategy may use, all pure.

A ``Strategy`` can change a training batch (replay), add to the loss (EWC, SI,
LwF), change the gradient (A-GEM), and update its state after every step (SI;
online buffers, which see each batch of the stream as it arrives) and after
every experience (Fisher, buffers, anchors). Every hook is
jit-compatible; ``compose`` combines strategies (replay + EWC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array


class ContinualBatch(NamedTuple):
    """Training examples: ``x [b, features]``, ``y [b]``, ``logit_mask [b, outputs]`` (the head each
    example is scored with), ``weight [b]`` (0 for rows that must not count)."""

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array
    weight: jax.Array


class Experience(NamedTuple):
    """One experience's training data: ``x [n, features]``, ``y [n]``, its head ``logit_mask [outputs]``
    (or one head per example, ``[n, outputs]``), and its ``index`` in the stream."""

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array
    index: jax.Array


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, logit_mask: jax.Array, weight: jax.Array) -> jax.Array:
    """Softmax cross-entropy over each row's allowed outputs, weighted mean over rows.

    ``logits [b, outputs]``, integer ``labels [b]``, ``logit_mask [b, outputs]``
    or ``[outputs]`` (True where an output may be predicted), ``weight [b]``.
    """
    batch, outputs = check_array("logits", logits, (None, None), "[b, outputs]", dtype="floating")
    check_array("labels", labels, (batch,), "[b]", dtype="integer")
    if jnp.ndim(logit_mask) == 1:
        check_array("logit_mask", logit_mask, (outputs,), "[outputs]")
    else:
        check_array("logit_mask", logit_mask, (batch, outputs), "[b, outputs] or [outputs]")
    check_array("weight", weight, (batch,), "[b]")
    logits = jnp.where(logit_mask, logits, -1e9)
    log_probs = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]
    return jnp.sum(weight * nll) / jnp.maximum(jnp.sum(weight), 1.0)


def _no_augment(state, batch, key):
    return batch


def _no_penalty(params, state, batch):
    return jnp.zeros(())


def _no_projection(grads, params, state, key, data_loss):
    return grads


def _no_step_update(state, params_before, params_after, grads):
    return state


def _no_observation(state, batch, key):
    return state


def _no_experience_update(state, params, experience, key):
    return state


class Strategy(NamedTuple):
    """The hooks of a continual-learning strategy (all pure).

    Attributes:
      init: ``(params) -> state``.
      augment: ``(state, batch, key) -> batch`` (e.g. append replayed examples).
      penalty: ``(params, state, batch) -> scalar`` added to the loss.
      project: ``(grads, params, state, key, data_loss) -> grads``; ``data_loss(params, batch)``
        is the model's loss, for strategies that need reference gradients.
      after_step: ``(state, params_before, params_after, grads) -> state``.
      observe: ``(state, batch, key) -> state`` after every step, with the step's batch
        as it came from the stream, without what ``augment`` added (an online buffer's update).
      after_experience: ``(state, params, experience, key) -> state``.
    """

    init: Callable[[Any], Any]
    augment: Callable = _no_augment
    penalty: Callable = _no_penalty
    project: Callable = _no_projection
    after_step: Callable = _no_step_update
    observe: Callable = _no_observation
    after_experience: Callable = _no_experience_update


def naive() -> Strategy:
    """Fine-tuning on each experience in turn: the lower bound."""
    return Strategy(init=lambda params: ())


def compose(*strategies: Strategy) -> Strategy:
    """Applies several strategies together: augmentations in order, penalties summed, projections in order."""

    def augment(states, batch, key):
        for strategy, state, k in zip(strategies, states, jax.random.split(key, len(strategies)), strict=True):
            batch = strategy.augment(state, batch, k)
        return batch

    def penalty(params, states, batch):
        return sum(s.penalty(params, state, batch) for s, state in zip(strategies, states, strict=True))

    def project(grads, params, states, key, data_loss):
        for strategy, state, k in zip(strategies, states, jax.random.split(key, len(strategies)), strict=True):
            grads = strategy.project(grads, params, state, k, data_loss)
        return grads

    def after_step(states, before, after, grads):
        return tuple(s.after_step(state, before, after, grads) for s, state in zip(strategies, states, strict=True))

    def observe(states, batch, key):
        keys = jax.random.split(key, len(strategies))
        return tuple(s.observe(state, batch, k) for s, state, k in zip(strategies, states, keys, strict=True))

    def after_experience(states, params, experience, key):
        keys = jax.random.split(key, len(strategies))
        return tuple(
            s.after_experience(state, params, experience, k)
            for s, state, k in zip(strategies, states, keys, strict=True)
        )

    return Strategy(
        init=lambda params: tuple(s.init(params) for s in strategies),
        augment=augment,
        penalty=penalty,
        project=project,
        after_step=after_step,
        observe=observe,
        after_experience=after_experience,
    )
