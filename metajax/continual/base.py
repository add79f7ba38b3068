"""The strategy interface: the hooks a continual-learning strategy may use, all pure.

A strategy is a ``Strategy`` of pure functions over its own state (a pytree
of arrays that it alone reads and writes), called by ``continual_learner``
at fixed points of training. What the published methods need, and the hook
each one uses (they fit this interface as it is):

* replay / ER (Chaudhry et al. 2019): ``augment`` appends buffer examples,
  ``after_experience`` or ``observe`` fills the buffer (``replay.py``);
* A-GEM (Chaudhry et al. 2019): ``project`` with a reference gradient from
  ``data_loss`` on buffer examples (``agem.py``); GEM (Lopez-Paz & Ranzato
  2017) needs one gradient per past experience: ``project`` again, over a
  buffer whose items carry their experience index;
* DER / DER++ (Buzzega et al. 2020): logits stored with buffered examples:
  ``observe`` receives the step's ``outputs`` (the model's logits of the
  arriving batch, computed in the step's one forward pass), ``augment``
  appends buffer rows with ``weight`` 0 (they add nothing to the data loss)
  and their stored logits in ``batch.extras``, ``penalty`` reads the model's
  ``outputs`` on those rows (``dark_experience_replay.py``);
* EWC, online EWC, SI: ``penalty`` on the parameters, ``after_experience``
  (Fisher, anchors) and ``after_step`` (SI's path integral);
* LwF (Li & Hoiem 2016): the previous model's parameters in the state,
  ``penalty`` on ``outputs``;
* iCaRL (Rebuffi et al. 2017): features and a nearest-mean classifier at
  evaluation: ``predict(params, state, x)`` replaces the model's logits when
  scoring, with class means kept in the state by ``after_experience`` (the
  features come from the model's declared ``features`` interface);
* GDumb (Prabhu et al. 2020): retrains from the buffer alone:
  ``before_experience`` may replace the parameters (a fresh start) and the
  experience trained on (the buffer, with ``weight`` 0 on empty slots);
* BiC (Wu et al. 2019): a bias-correction layer fitted after each
  experience: its two scalars per experience in the state, fitted inside
  ``after_experience``, applied by ``predict``.

Every hook is jit-compatible; ``compose`` combines strategies (replay + EWC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array
from metajax.registry import CONTINUAL_STRATEGIES


class ContinualBatch(NamedTuple):
    """Training examples of one step.

    Attributes:
      x: ``[b, *example_shape]`` inputs.
      y: ``[b]`` integer labels.
      logit_mask: ``[b, outputs]`` the head each example is scored with.
      weight: ``[b]`` how much each row counts in the data loss (0 for rows that must not count).
      extras: what a strategy's ``augment`` attaches for its ``penalty`` (DER's stored logits), or ``()``.
    """

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array
    weight: jax.Array
    extras: Any = ()


class Experience(NamedTuple):
    """One experience's training data.

    Attributes:
      x: ``[n, *example_shape]`` inputs.
      y: ``[n]`` integer labels.
      logit_mask: its head ``[outputs]``, or one head per example ``[n, outputs]``.
      index: its position in the stream.
      weight: ``[n]`` per-example weights in the data loss, or ``None`` (all 1).
    """

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array
    index: jax.Array  # type: ignore[assignment]  # Shadows tuple.index, which nothing calls on it.
    weight: jax.Array | None = None


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


def _no_change_before_experience(state, params, experience, key):
    return state, params, experience


def _no_augment(state, batch, key):
    return batch


def _no_penalty(params, state, batch, outputs):
    return jnp.zeros(())


def _no_projection(grads, params, state, key, data_loss):
    return grads


def _no_step_update(state, params_before, params_after, grads):
    return state


def _no_observation(state, batch, outputs, key):
    return state


def _no_experience_update(state, params, experience, key):
    return state


class Strategy(NamedTuple):
    """The hooks of a continual-learning strategy (all pure; see the module docstring for who uses which).

    Attributes:
      init: ``(params) -> state``.
      before_experience: ``(state, params, experience, key) -> (state, params, experience)``: what an
        experience starts from and trains on (GDumb: fresh parameters and the buffer).
      augment: ``(state, batch, key) -> batch`` (append replayed examples, attach ``extras``).
      penalty: ``(params, state, batch, outputs) -> scalar`` added to the loss; ``outputs`` are the
        model's logits of ``batch.x`` under ``params`` (differentiable), from the step's one forward pass.
      project: ``(grads, params, state, key, data_loss) -> grads``; ``data_loss(params, batch)``
        is the model's loss, for strategies that need reference gradients.
      after_step: ``(state, params_before, params_after, grads) -> state``.
      observe: ``(state, batch, outputs, key) -> state`` after every step, with the step's batch
        as it came from the stream, without what ``augment`` added, and the model's logits of it
        before the step (an online buffer's update; DER's stored logits).
      after_experience: ``(state, params, experience, key) -> state``.
      predict: ``(params, state, x) -> logits`` used when scoring, or ``None`` for the model's own
        logits (iCaRL's nearest-mean classifier, BiC's corrected logits).
    """

    init: Callable[[Any], Any]
    before_experience: Callable = _no_change_before_experience
    augment: Callable = _no_augment
    penalty: Callable = _no_penalty
    project: Callable = _no_projection
    after_step: Callable = _no_step_update
    observe: Callable = _no_observation
    after_experience: Callable = _no_experience_update
    predict: Callable | None = None


class StrategyContext(NamedTuple):
    """What a registered strategy's ``build(options, context)`` may need of the run beyond its options.

    Attributes:
      apply_fn: ``(params, x [batch, *example_shape]) -> logits [batch, outputs]``.
      example_shape: the shape of one input.
      num_outputs: the model's outputs.
      stream_examples: training examples in the whole stream (a buffer cannot usefully hold more).
      model: the flax module, for what it declares (``metajax.models.interfaces``), or ``None``.
    """

    apply_fn: Callable
    example_shape: tuple[int, ...]
    num_outputs: int
    stream_examples: int
    model: Any = None


def naive() -> Strategy:
    """Fine-tuning on each experience in turn: the lower bound."""
    return Strategy(init=lambda params: ())


CONTINUAL_STRATEGIES.register(
    "naive", lambda options, context: naive(), description="Fine-tuning on each experience in turn: the lower bound."
)
CONTINUAL_STRATEGIES.register(
    "joint",
    lambda options, context: naive(),
    description="Joint training on every experience at once: the upper bound (nothing to forget).",
    trains_jointly=True,
)


def compose(*strategies: Strategy) -> Strategy:
    """Applies several strategies together: augmentations in order, penalties summed, projections in order.

    At most one of them may change what an experience starts from (``before_experience``) or how it
    is scored (``predict``): two would contradict each other.
    """
    changing = [s for s in strategies if s.before_experience is not _no_change_before_experience]
    predicting = [s for s in strategies if s.predict is not None]
    if len(changing) > 1 or len(predicting) > 1:
        raise ValueError("compose: at most one strategy may replace the experience or the predictions")

    def before_experience(states, params, experience, key):
        states = list(states)
        for index, strategy in enumerate(strategies):
            if strategy in changing:
                states[index], params, experience = strategy.before_experience(states[index], params, experience, key)
        return tuple(states), params, experience

    def augment(states, batch, key):
        for strategy, state, k in zip(strategies, states, jax.random.split(key, len(strategies)), strict=True):
            batch = strategy.augment(state, batch, k)
        return batch

    def penalty(params, states, batch, outputs):
        return sum(s.penalty(params, state, batch, outputs) for s, state in zip(strategies, states, strict=True))

    def project(grads, params, states, key, data_loss):
        for strategy, state, k in zip(strategies, states, jax.random.split(key, len(strategies)), strict=True):
            grads = strategy.project(grads, params, state, k, data_loss)
        return grads

    def after_step(states, before, after, grads):
        return tuple(s.after_step(state, before, after, grads) for s, state in zip(strategies, states, strict=True))

    def observe(states, batch, outputs, key):
        keys = jax.random.split(key, len(strategies))
        return tuple(s.observe(state, batch, outputs, k) for s, state, k in zip(strategies, states, keys, strict=True))

    def after_experience(states, params, experience, key):
        keys = jax.random.split(key, len(strategies))
        return tuple(
            s.after_experience(state, params, experience, k)
            for s, state, k in zip(strategies, states, keys, strict=True)
        )

    def predict(params, states, x):
        (strategy,) = predicting
        return strategy.predict(params, states[strategies.index(strategy)], x)

    return Strategy(
        init=lambda params: tuple(s.init(params) for s in strategies),
        before_experience=before_experience if changing else _no_change_before_experience,
        augment=augment,
        penalty=penalty,
        project=project,
        after_step=after_step,
        observe=observe,
        after_experience=after_experience,
        predict=predict if predicting else None,
    )
