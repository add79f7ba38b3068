"""How per-task losses become one training objective.

Every strategy is a ``LossWeighting`` of pure functions over a small pytree of
weighting parameters that the trainer optimizes with the model's optimizer:

* ``task_terms(weighting_params, task_losses) -> [tasks]``: the objective is
  their sum; the model's gradient is the gradient of that sum.
* ``weights(weighting_params) -> [tasks]``: the effective weight of each task's
  loss, for logging (``None``: all 1).
* ``weight_gradient``: ``None`` when the weighting parameters follow the
  gradient of the objective (equal, uncertainty); otherwise a function giving
  their gradient from the per-task gradient norms on the shared parameters
  (GradNorm), which makes the trainer compute per-task gradients.
* ``project(weighting_params)``: applied after every update (GradNorm keeps
  its weights positive and summing to the number of tasks).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array


class LossWeighting(NamedTuple):
    init: Callable[[int], Any]
    task_terms: Callable[[Any, jax.Array], jax.Array]
    weights: Callable[[Any], jax.Array]
    weight_gradient: Callable[[Any, jax.Array, jax.Array, jax.Array], Any] | None
    project: Callable[[Any], Any]


def _identity(weighting_params):
    return weighting_params


def _check_task_losses(task_losses, per_task_params=None) -> None:
    """One loss per task: ``[tasks]``, as many as the weighting has parameters (a ``[tasks, 1]`` would broadcast)."""
    tasks = None if per_task_params is None else jnp.shape(per_task_params)[0]
    check_array("task_losses", task_losses, (tasks,), "[tasks]", dtype="floating")


def equal_weighting() -> LossWeighting:
    """The sum of the task losses, each with weight 1."""

    def task_terms(weighting_params, task_losses):
        _check_task_losses(task_losses)
        return task_losses

    return LossWeighting(
        init=lambda num_tasks: (),
        task_terms=task_terms,
        weights=lambda weighting_params: None,
        weight_gradient=None,
        project=_identity,
    )


def uncertainty_weighting() -> LossWeighting:
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018, arXiv 1705.07115).

    Learns s_k = log sigma_k^2 per task and minimizes
    sum_k exp(-s_k) L_k + s_k, the form most implementations use for both
    regression and classification (the paper's 1/2 factors only rescale it).
    """

    def task_terms(log_variances, task_losses):
        _check_task_losses(task_losses, log_variances)
        return jnp.exp(-log_variances) * task_losses + log_variances

    return LossWeighting(
        init=lambda num_tasks: jnp.zeros((num_tasks,)),
        task_terms=task_terms,
        weights=lambda log_variances: jnp.exp(-log_variances),
        weight_gradient=None,
        project=_identity,
    )


def gradnorm(alpha: float = 1.5) -> LossWeighting:
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich 2018, arXiv 1711.02257).

    Task weights w_k scale the losses. With G_k the norm of the gradient of
    w_k L_k with respect to the shared parameters, r_k the task's loss ratio
    L_k / L_k(0) relative to the mean ratio, and the target
    mean(G) * r_k^alpha held constant, the weights descend
    sum_k |G_k - target_k|; after each step they are renormalized to sum to
    the number of tasks. ``alpha`` sets how strongly slow tasks are pushed.
    """

    def task_terms(task_weights, task_losses):
        _check_task_losses(task_losses, task_weights)
        # The model sees fixed weights; the weights get their own gradient below.
        return jax.lax.stop_gradient(task_weights) * task_losses

    def weight_gradient(task_weights, task_losses, initial_task_losses, shared_gradient_norms):
        loss_ratios = task_losses / initial_task_losses
        relative_rates = loss_ratios / jnp.mean(loss_ratios)
        target = jax.lax.stop_gradient(jnp.mean(shared_gradient_norms) * relative_rates**alpha)
        unweighted_norms = jax.lax.stop_gradient(shared_gradient_norms / task_weights)
        return jax.grad(lambda w: jnp.sum(jnp.abs(w * unweighted_norms - target)))(task_weights)

    def project(task_weights):
        positive = jnp.maximum(task_weights, 1e-3)
        return positive * task_weights.shape[0] / jnp.sum(positive)

    return LossWeighting(
        init=lambda num_tasks: jnp.ones((num_tasks,)),
        task_terms=task_terms,
        weights=lambda task_weights: task_weights,
        weight_gradient=weight_gradient,
        project=project,
    )


WEIGHTINGS: dict[str, Callable[[], LossWeighting]] = {
    "equal": equal_weighting,
    "uncertainty": uncertainty_weighting,
    "gradnorm": gradnorm,
}
