"""Dynamic weight average (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with
Attention", https://arxiv.org/abs/1803.10704, section 3.3).

Each task's weight follows the rate at which its loss fell over the last two
epochs: with r_k = L_k(t-1) / L_k(t-2) the ratio of its mean training losses
in the two epochs before epoch t,

    w_k(t) = K * exp(r_k / T) / sum_i exp(r_i / T),

so a task whose loss falls slowly gets more weight; T (2 in the paper)
softens the weights, K is the number of tasks. Weights are 1 in the first
two epochs. The state (this epoch's summed losses and the last two epochs'
means) is the weighting's own and is updated by it: the model's optimizer
never sees it.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import is_traced
from metajax.multitask.weighting import LossWeighting, WeightingContext, check_task_losses
from metajax.options import option
from metajax.registry import MULTITASK_WEIGHTINGS


class DWAState(NamedTuple):
    """``epoch_sums [tasks]`` and ``steps`` of the epoch under way; ``previous [2, tasks]`` the mean
    losses of the last two epochs (older first); ``epochs`` completed."""

    epoch_sums: jax.Array
    steps: jax.Array
    previous: jax.Array
    epochs: jax.Array


def dynamic_weight_average(temperature: float = 2.0) -> LossWeighting:
    """DWA as a ``LossWeighting`` (weights from the epoch-mean losses; see the module docstring)."""
    if not is_traced(temperature) and not temperature > 0:
        raise ValueError(f"dwa temperature must be > 0, got {temperature}")

    def init(num_tasks: int) -> DWAState:
        return DWAState(
            epoch_sums=jnp.zeros((num_tasks,)),
            steps=jnp.zeros((), jnp.int32),
            previous=jnp.ones((2, num_tasks)),
            epochs=jnp.zeros((), jnp.int32),
        )

    def weights(state: DWAState) -> jax.Array:
        ratios = state.previous[1] / state.previous[0]
        num_tasks = ratios.shape[0]
        dynamic = num_tasks * jax.nn.softmax(ratios / temperature)
        return jnp.where(state.epochs >= 2, dynamic, jnp.ones_like(dynamic))

    def task_terms(state: DWAState, task_losses: jax.Array) -> jax.Array:
        check_task_losses(task_losses, state.epoch_sums)
        return jax.lax.stop_gradient(weights(state)) * task_losses

    def update(state: DWAState, task_losses: jax.Array) -> DWAState:
        return state._replace(epoch_sums=state.epoch_sums + jax.lax.stop_gradient(task_losses), steps=state.steps + 1)

    def after_epoch(state: DWAState) -> DWAState:
        means = state.epoch_sums / jnp.maximum(state.steps, 1)
        return DWAState(
            epoch_sums=jnp.zeros_like(state.epoch_sums),
            steps=jnp.zeros_like(state.steps),
            previous=jnp.stack([state.previous[1], means]),
            epochs=state.epochs + 1,
        )

    return LossWeighting(init=init, task_terms=task_terms, update=update, weights=weights, after_epoch=after_epoch)


@dataclasses.dataclass(frozen=True)
class DWAOptions:
    dwa_temperature: float = option(2.0, "DWA's softmax temperature T (the paper's 2)", above=0)


@MULTITASK_WEIGHTINGS.register(
    "dwa",
    hyperparams=DWAOptions,
    description="Dynamic weight average (Liu et al. 2019): weight tasks by how slowly their losses fall.",
    acts_on="losses",
)
def build_dwa(options: DWAOptions, context: WeightingContext) -> LossWeighting:
    return dynamic_weight_average(options.dwa_temperature)
