"""A continual-learning strategy of your own, registered from outside metajax.

The L2 baseline of continual learning (e.g. van de Ven, Tuytelaars & Tolias
2022, "Three types of incremental learning"): after each experience, keep a
copy of the weights, and penalize the squared distance to it while training
the next one. EWC with every weight equally important.

One module, one ``register`` call; then, with this folder on ``PYTHONPATH``::

    metajax --plugin l2_anchor continual --strategy l2-anchor --l2-strength 0.1

or, from Python, ``ContinualConfig(strategy="l2-anchor", ...)`` after
``import l2_anchor``. A package can list the module under the
``metajax.plugins`` entry point group instead, and it loads with every command.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.continual import Strategy, StrategyContext
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class AnchorState(NamedTuple):
    """The weights at the end of the last experience, and whether there has been one."""

    anchor: Any
    active: jax.Array


def l2_anchor(strength: float) -> Strategy:
    """``strength / 2 * ||params - anchor||^2``, from the second experience on."""

    def init(params):
        return AnchorState(anchor=params, active=jnp.zeros((), bool))

    def penalty(params, state, batch, outputs):
        squares = jax.tree.map(lambda p, a: jnp.sum(jnp.square(p - a)), params, state.anchor)
        return jnp.where(state.active, 0.5 * strength * sum(jax.tree.leaves(squares)), 0.0)

    def after_experience(state, params, experience, key):
        return AnchorState(anchor=params, active=jnp.ones((), bool))

    return Strategy(init=init, penalty=penalty, after_experience=after_experience)


@dataclasses.dataclass(frozen=True)
class L2AnchorOptions:
    l2_strength: float = option(0.1, "weight of the squared distance to the last experience's weights", minimum=0)


@CONTINUAL_STRATEGIES.register(
    "l2-anchor",
    hyperparams=L2AnchorOptions,
    description="L2 to the previous experience's weights (a plugin example, examples/plugin).",
)
def build_l2_anchor(options: L2AnchorOptions, context: StrategyContext) -> Strategy:
    return l2_anchor(options.l2_strength)
