"""Gradient surgery for multi-task learning (PCGrad), a weighting of the per-task gradients.

Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020 (arXiv 2001.06782).
"""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metajax.array_checks import check_array, check_key
from metajax.multitask.weighting import GradientWeighting
from metajax.registry import MULTITASK_WEIGHTINGS


def project_conflicting(task_gradients: jax.Array, *, key: jax.Array) -> jax.Array:
    """PCGrad on flat gradients: ``[tasks, parameters] -> [parameters]``.

    For each task i, and the other tasks j in a random order, when g_i
    conflicts with the original g_j (negative dot product) g_i loses its
    component along g_j; the projected gradients are summed.
    """
    num_tasks, _ = check_array("task_gradients", task_gradients, (None, None), "[tasks, parameters]", dtype="floating")
    check_key("key", key)

    def project_one(task, order_key):
        def project(gradient, other):
            other_gradient = task_gradients[other]
            dot = jnp.vdot(gradient, other_gradient)
            conflict = (other != task) & (dot < 0)
            scale = jnp.where(conflict, dot / jnp.maximum(jnp.vdot(other_gradient, other_gradient), 1e-20), 0.0)
            return gradient - scale * other_gradient, None

        projected, _ = jax.lax.scan(project, task_gradients[task], jax.random.permutation(order_key, num_tasks))
        return projected

    projected = jax.vmap(project_one)(jnp.arange(num_tasks), jax.random.split(key, num_tasks))
    return jnp.sum(projected, axis=0)


def pcgrad() -> GradientWeighting:
    """PCGrad as a ``GradientWeighting``: the per-task gradients of every parameter, flattened, projected
    by ``project_conflicting`` (its ``key`` orders the projections) and summed.

    Example::

        trainer = multitask_trainer(model.apply, num_tasks, optimizer=optax.adam(1e-3), weighting=pcgrad())
    """

    def combine(state, task_grads, task_losses, *, key, shared):
        flat = jax.vmap(lambda tree: ravel_pytree(tree)[0])(task_grads)
        _, unravel = ravel_pytree(jax.tree.map(lambda leaf: leaf[0], task_grads))
        return unravel(project_conflicting(flat, key=key)), state

    return GradientWeighting(init=lambda num_tasks: (), combine=combine)


MULTITASK_WEIGHTINGS.register(
    "pcgrad",
    lambda options, context: pcgrad(),
    description="PCGrad (Yu et al. 2020): project each task's gradient off the others' it conflicts with.",
    acts_on="gradients",
)
