"""How per-task losses and gradients become one update: the two kinds of multi-task weighting.

Every method is registered in ``metajax.registry.MULTITASK_WEIGHTINGS`` with
the trait ``acts_on``:

* ``"losses"``: a ``LossWeighting`` turns the per-task losses into terms whose
  sum the model descends (equal, uncertainty, DWA). It sees the losses alone.
* ``"gradients"``: a ``GradientWeighting`` turns the per-task gradients
  (every parameter leaf with a leading ``[tasks]`` axis, from one ``jacrev``
  pass of the trainer, never a loop over tasks) into one gradient (GradNorm,
  MGDA, PCGrad). Methods that treat shared and task-specific parameters
  apart get the model's declared split (``shared``: a pytree of bools like
  the parameters), never a guess from module names.

A weighting's own state (learned log-variances, GradNorm's weights and its
optimizer, DWA's loss history) is its own pytree, updated by the weighting
itself: the model's optimizer never sees it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_array
from metajax.options import option
from metajax.registry import MULTITASK_WEIGHTINGS


class WeightingContext(NamedTuple):
    """What a registered weighting's ``build(options, context)`` may need of the run.

    Attributes:
      num_tasks: the number of tasks.
      learning_rate: the model optimizer's learning rate (the default of a weighting's own optimizer).
    """

    num_tasks: int
    learning_rate: float


def _unchanged(state):
    return state


def _no_update(state, task_losses):
    return state


def _no_weights(state):
    return None


class LossWeighting(NamedTuple):
    """A weighting that acts on the per-task losses (all functions pure).

    Attributes:
      init: ``(num_tasks) -> state``.
      task_terms: ``(state, task_losses [tasks]) -> [tasks]``; the model descends their sum.
      update: ``(state, task_losses) -> state`` after every step (its own parameters' step).
      weights: ``(state) -> [tasks]`` the effective weight of each task's loss, for the log (``None``: 1).
      after_epoch: ``(state) -> state`` at the end of every epoch.
    """

    init: Callable[[int], Any]
    task_terms: Callable[[Any, jax.Array], jax.Array]
    update: Callable[[Any, jax.Array], Any] = _no_update
    weights: Callable[[Any], jax.Array | None] = _no_weights
    after_epoch: Callable[[Any], Any] = _unchanged


def _unit_scales(state):
    return None


class GradientWeighting(NamedTuple):
    """A weighting that acts on the per-task gradients (all functions pure).

    Attributes:
      init: ``(num_tasks) -> state``.
      combine: ``(state, task_grads, task_losses, *, key, shared) -> (grads, state)``: ``task_grads`` the
        gradient of each task's (scaled) loss, every leaf ``[tasks, *leaf_shape]``; ``grads`` one gradient
        like the parameters; ``shared`` the model's shared parameters (bools like them) or ``None``.
      loss_scales: ``(state) -> [tasks]`` scales of the task losses whose gradients ``combine`` gets
        (GradNorm's weights), or ``None`` for 1.
      weights: ``(state) -> [tasks]`` for the log (``None``: 1).
      after_epoch: ``(state) -> state`` at the end of every epoch.
    """

    init: Callable[[int], Any]
    combine: Callable[..., tuple[Any, Any]]
    loss_scales: Callable[[Any], jax.Array | None] = _unit_scales
    weights: Callable[[Any], jax.Array | None] = _no_weights
    after_epoch: Callable[[Any], Any] = _unchanged


def check_task_losses(task_losses, per_task_state=None) -> None:
    """One loss per task: ``[tasks]``, as many as the weighting has entries (a ``[tasks, 1]`` would broadcast)."""
    tasks = None if per_task_state is None else jnp.shape(per_task_state)[0]
    check_array("task_losses", task_losses, (tasks,), "[tasks]", dtype="floating")


def require_shared(shared, method: str):
    """The model's shared-parameter mask, or a one-line error saying the method needs one."""
    if shared is None:
        raise ValueError(
            f"{method} needs the model's shared parameters, and this model declares none "
            "(a multi-task model declares them with a shared_parameters(params) method)"
        )
    return shared


def equal_weighting() -> LossWeighting:
    """The sum of the task losses, each with weight 1."""

    def task_terms(state, task_losses):
        check_task_losses(task_losses)
        return task_losses

    return LossWeighting(init=lambda num_tasks: (), task_terms=task_terms)


class UncertaintyState(NamedTuple):
    """``log_variances [tasks]`` (s_k = log sigma_k^2) and their own optimizer's state."""

    log_variances: jax.Array
    opt_state: optax.OptState


def uncertainty_weighting(optimizer: optax.GradientTransformation) -> LossWeighting:
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018, arXiv 1705.07115).

    Learns s_k = log sigma_k^2 per task and minimizes
    sum_k exp(-s_k) L_k + s_k, the form most implementations use for both
    regression and classification (the paper's 1/2 factors only rescale it).
    The model descends that sum; the s_k take ``optimizer``'s steps on its
    gradient with respect to them (the paper trains them with the model's
    optimizer: Adam with the model's rate is the same elementwise update).
    """

    def init(num_tasks: int) -> UncertaintyState:
        log_variances = jnp.zeros((num_tasks,))
        return UncertaintyState(log_variances, optimizer.init(log_variances))

    def terms(log_variances, task_losses):
        return jnp.exp(-log_variances) * task_losses + log_variances

    def task_terms(state, task_losses):
        check_task_losses(task_losses, state.log_variances)
        return terms(jax.lax.stop_gradient(state.log_variances), task_losses)

    def update(state, task_losses):
        losses = jax.lax.stop_gradient(task_losses)
        grads = jax.grad(lambda s: jnp.sum(terms(s, losses)))(state.log_variances)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.log_variances)
        return UncertaintyState(optax.apply_updates(state.log_variances, updates), opt_state)

    return LossWeighting(
        init=init, task_terms=task_terms, update=update, weights=lambda state: jnp.exp(-state.log_variances)
    )


MULTITASK_WEIGHTINGS.register(
    "equal",
    lambda options, context: equal_weighting(),
    description="The sum of the task losses, each with weight 1 (MMoE's paper).",
    acts_on="losses",
)


@dataclasses.dataclass(frozen=True)
class LearnedWeightingOptions:
    """The options of every weighting with parameters of its own, trained by its own Adam."""

    weighting_learning_rate: float | None = option(
        None, "the learning rate of the weighting's own Adam (default: the model's)", above=0
    )

    def optimizer(self, context: WeightingContext) -> optax.GradientTransformation:
        return optax.adam(self.weighting_learning_rate or context.learning_rate)


@MULTITASK_WEIGHTINGS.register(
    "uncertainty",
    hyperparams=LearnedWeightingOptions,
    description="Uncertainty weighting (Kendall et al. 2018): learned per-task log-variances scale the losses.",
    acts_on="losses",
)
def build_uncertainty(options: LearnedWeightingOptions, context: WeightingContext) -> LossWeighting:
    return uncertainty_weighting(options.optimizer(context))
