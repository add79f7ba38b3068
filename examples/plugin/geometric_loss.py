"""A multi-task weighting of your own, outside metajax: the geometric mean of the task losses.

GLS (Chennupati et al. 2019, "MultiNet++"; one of LibMTL's weightings) descends
``(prod_i L_i) ^ (1 / tasks)``, which balances tasks whose losses differ in
scale without any learned weight. A loss weighting returns per-task terms whose
sum the model descends. One module, one ``register`` call; then::

    PYTHONPATH=examples/plugin metajax --plugin geometric_loss multitask --weighting geometric
"""

from __future__ import annotations

import jax.numpy as jnp

from metajax.multitask import LossWeighting
from metajax.registry import MULTITASK_WEIGHTINGS


@MULTITASK_WEIGHTINGS.register(
    "geometric",
    description="The geometric mean of the task losses (GLS; an example plugin).",
    acts_on="losses",
)
def build_geometric(options, context) -> LossWeighting:
    def task_terms(state, task_losses):
        geometric_mean = jnp.exp(jnp.mean(jnp.log(task_losses)))
        return jnp.full_like(task_losses, geometric_mean / task_losses.shape[0])  # Their sum: the mean.

    return LossWeighting(init=lambda num_tasks: (), task_terms=task_terms)
