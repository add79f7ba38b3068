"""Multiple-gradient descent (Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective
Optimization", https://arxiv.org/abs/1810.04650).

The shared parameters follow the smallest-norm point of the convex hull of
the tasks' gradients, ``sum_k alpha_k g_k`` with ``alpha`` on the simplex
minimizing ``||sum_k alpha_k g_k||^2``: a direction that decreases every
task's loss, or zero at a Pareto-stationary point. ``alpha`` is found by the
paper's Frank-Wolfe solver (its Algorithm 2): from uniform weights, move
toward the task whose gradient has the smallest inner product with the
current combination, by the exact line search between the two. The
task-specific parameters take their own task's gradient (the paper's
Algorithm 2, line 3). The per-task gradients come from one ``jacrev`` pass.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array
from metajax.multitask.weighting import GradientWeighting, WeightingContext, require_shared
from metajax.options import option
from metajax.registry import MULTITASK_WEIGHTINGS

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_weights(gram: jax.Array, *, iterations: int = 250, tolerance: float = 1e-5) -> jax.Array:
    """``alpha [tasks]`` on the simplex minimizing ``alpha^T G alpha`` for a Gram matrix ``G [tasks, tasks]``.

    Frank-Wolfe with exact line search: at most ``iterations`` steps, stopping when ``alpha`` moves by less
    than ``tolerance`` (the paper's code: 250 and 1e-5).
    """
    tasks, _ = check_array("gram", gram, (None, None), "[tasks, tasks]", dtype="floating")
    if gram.shape != (tasks, tasks):
        raise ValueError(f"gram must have shape [tasks, tasks], got shape {gram.shape}")

    def step(carry):
        alpha, _, count = carry
        combined = gram @ alpha  # G alpha: inner products of each gradient with the combination.
        target = jnp.argmin(combined)
        a = alpha @ combined  # ||theta||^2, theta the current combination
        b = gram[target, target]  # ||g_t||^2
        c = combined[target]  # theta . g_t
        # min over gamma in [0, 1] of ||(1 - gamma) theta + gamma g_t||^2
        denominator = a + b - 2 * c
        gamma = jnp.where(denominator > 1e-20, jnp.clip((a - c) / jnp.maximum(denominator, 1e-20), 0.0, 1.0), 0.0)
        new = (1 - gamma) * alpha + gamma * jax.nn.one_hot(target, tasks, dtype=alpha.dtype)
        return new, jnp.sum(jnp.abs(new - alpha)), count + 1

    def going(carry):
        _, change, count = carry
        return (change >= tolerance) & (count < iterations)

    start = jnp.full((tasks,), 1.0 / tasks, gram.dtype)
    alpha, _, _ = jax.lax.while_loop(going, step, (start, jnp.asarray(jnp.inf, gram.dtype), jnp.zeros((), jnp.int32)))
    return alpha


class MGDAState(NamedTuple):
    """The last step's task weights ``alpha [tasks]`` (for the log)."""

    alpha: jax.Array


def mgda(normalization: str = "none") -> GradientWeighting:
    """MGDA as a ``GradientWeighting``.

    ``normalization`` scales each task's gradient before the solver, as the
    paper's code offers: ``"l2"`` by its norm, ``"loss"`` by its loss,
    ``"loss+"`` by both; ``alpha`` then weights the unscaled gradients.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"mgda normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")

    def init(num_tasks: int) -> MGDAState:
        return MGDAState(alpha=jnp.full((num_tasks,), 1.0 / num_tasks))

    def combine(state, task_grads, task_losses, *, key, shared):
        shared = require_shared(shared, "mgda")
        leaves, treedef = jax.tree.flatten(task_grads)
        moving = treedef.flatten_up_to(shared)
        tasks = task_losses.shape[0]
        flat = jnp.concatenate(
            [leaf.reshape(tasks, -1) for leaf, is_shared in zip(leaves, moving, strict=True) if is_shared], 1
        )
        norms = jnp.sqrt(jnp.sum(jnp.square(flat), axis=1))
        scale = {
            "none": jnp.ones_like(norms),
            "l2": norms,
            "loss": task_losses,
            "loss+": task_losses * norms,
        }[normalization]
        scaled = flat / jnp.maximum(scale, 1e-20)[:, None]
        alpha = min_norm_weights(jnp.matmul(scaled, scaled.T, precision=jax.lax.Precision.HIGHEST))
        combined = [
            jnp.tensordot(alpha, leaf, axes=1) if is_shared else jnp.sum(leaf, axis=0)
            for leaf, is_shared in zip(leaves, moving, strict=True)
        ]
        return treedef.unflatten(combined), MGDAState(alpha=alpha)

    return GradientWeighting(init=init, combine=combine, weights=lambda state: state.alpha)


@dataclasses.dataclass(frozen=True)
class MGDAOptions:
    mgda_normalization: str = option(
        "none", "how MGDA scales each task's gradient before its solver", choices=NORMALIZATIONS
    )


@MULTITASK_WEIGHTINGS.register(
    "mgda",
    hyperparams=MGDAOptions,
    description="MGDA (Sener & Koltun 2018): shared weights follow the min-norm combination of task gradients.",
    acts_on="gradients",
)
def build_mgda(options: MGDAOptions, context: WeightingContext) -> GradientWeighting:
    return mgda(options.mgda_normalization)
