"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich 2018, "GradNorm: Gradient Normalization
for Adaptive Loss Balancing in Deep Multitask Networks", https://arxiv.org/abs/1711.02257).

Task weights w_k scale the losses. With G_k the norm of the gradient of
w_k L_k with respect to the shared parameters, r_k the task's loss ratio
L_k / L_k(0) relative to the mean ratio, and the target mean(G) * r_k^alpha
held constant, the weights descend sum_k |G_k - target_k| with their own
optimizer; after each step they are renormalized to sum to the number of
tasks. ``alpha`` sets how strongly slow tasks are pushed. The model
descends sum_k w_k L_k.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.multitask.weighting import GradientWeighting, LearnedWeightingOptions, WeightingContext, require_shared
from metajax.options import option
from metajax.registry import MULTITASK_WEIGHTINGS


class GradNormState(NamedTuple):
    """``task_weights [tasks]``, their optimizer's state, the first step's losses L(0), and the steps taken."""

    task_weights: jax.Array
    opt_state: optax.OptState
    initial_task_losses: jax.Array
    step: jax.Array


def shared_gradient_norms(task_grads, shared) -> jax.Array:
    """``[tasks]`` norms of each task's gradient restricted to the shared parameters."""
    leaves, treedef = jax.tree.flatten(task_grads)
    squares = [
        jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1)), axis=1)
        for leaf, is_shared in zip(leaves, treedef.flatten_up_to(shared), strict=True)  # type: ignore[attr-defined]  # (missing from jax's stubs)
        if is_shared
    ]
    if not squares:
        raise ValueError("the model's shared-parameter mask selects no parameter")
    return jnp.sqrt(sum(squares))


def gradnorm(optimizer: optax.GradientTransformation, alpha: float = 1.5) -> GradientWeighting:
    """GradNorm as a ``GradientWeighting`` whose weights take ``optimizer``'s steps."""

    def init(num_tasks: int) -> GradNormState:
        weights = jnp.ones((num_tasks,))
        return GradNormState(weights, optimizer.init(weights), jnp.ones((num_tasks,)), jnp.zeros((), jnp.int32))

    def combine(state: GradNormState, task_grads, task_losses, *, key, shared):
        norms = shared_gradient_norms(task_grads, require_shared(shared, "gradnorm"))  # of w_k L_k
        initial = jnp.where(state.step == 0, task_losses, state.initial_task_losses)
        loss_ratios = task_losses / initial
        relative_rates = loss_ratios / jnp.mean(loss_ratios)
        target = jax.lax.stop_gradient(jnp.mean(norms) * relative_rates**alpha)
        unweighted_norms = jax.lax.stop_gradient(norms / state.task_weights)
        weight_grads = jax.grad(lambda w: jnp.sum(jnp.abs(w * unweighted_norms - target)))(state.task_weights)
        updates, opt_state = optimizer.update(weight_grads, state.opt_state, state.task_weights)
        positive = jnp.maximum(optax.apply_updates(state.task_weights, updates), 1e-3)
        weights = positive * positive.shape[0] / jnp.sum(positive)
        grads = jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), task_grads)
        return grads, GradNormState(weights, opt_state, initial, state.step + 1)

    return GradientWeighting(
        init=init,
        combine=combine,
        loss_scales=lambda state: jax.lax.stop_gradient(state.task_weights),
        weights=lambda state: state.task_weights,
    )


@dataclasses.dataclass(frozen=True)
class GradNormOptions(LearnedWeightingOptions):
    gradnorm_alpha: float = option(1.5, "GradNorm's asymmetry alpha: how hard slow tasks are pushed", minimum=0)


@MULTITASK_WEIGHTINGS.register(
    "gradnorm",
    hyperparams=GradNormOptions,
    description="GradNorm (Chen et al. 2018): weights that equalize the tasks' shared-gradient norms.",
    acts_on="gradients",
)
def build_gradnorm(options: GradNormOptions, context: WeightingContext) -> GradientWeighting:
    return gradnorm(options.optimizer(context), alpha=options.gradnorm_alpha)
