"""Synaptic intelligence (Zenke, Poole & Ganguli 2017, arXiv 1703.04200)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import is_traced
from metajax.continual.base import Strategy, StrategyContext
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class SIState(NamedTuple):
    """``importance`` (Omega), the running path integral ``path`` (w), and the weights at the experience's start."""

    importance: Any
    path: Any
    start: Any


def synaptic_intelligence(*, si_c: float, damping: float = 0.1) -> Strategy:
    """Penalty ``si_c * sum_i Omega_i (theta_i - theta_start_i)^2``.

    After each step, w_i += -g_i * delta_theta_i (the step's contribution to the
    loss decrease); after each experience, Omega_i += w_i / (delta_i^2 + damping)
    with delta the weights' change over the experience, and w restarts at 0.
    """
    if not is_traced(si_c) and si_c < 0:
        raise ValueError(f"si_c must be >= 0, got {si_c}")

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return SIState(importance=zeros, path=zeros, start=params)

    def penalty(params, state, batch, outputs):
        terms = jax.tree.map(lambda o, p, s: jnp.sum(o * jnp.square(p - s)), state.importance, params, state.start)
        return si_c * sum(jax.tree.leaves(terms))

    def after_step(state, before, after, grads):
        path = jax.tree.map(lambda w, g, b, a: w - g * (a - b), state.path, grads, before, after)
        return state._replace(path=path)

    def after_experience(state, params, experience, key):
        importance = jax.tree.map(
            lambda o, w, p, s: o + w / (jnp.square(p - s) + damping), state.importance, state.path, params, state.start
        )
        return SIState(importance=importance, path=jax.tree.map(jnp.zeros_like, params), start=params)

    return Strategy(init=init, penalty=penalty, after_step=after_step, after_experience=after_experience)


@dataclasses.dataclass(frozen=True)
class SIOptions:
    si_c: float = option(1.0, "synaptic intelligence's strength", minimum=0)
    si_damping: float = option(0.1, "the damping xi added to each weight's squared change", above=0)


@CONTINUAL_STRATEGIES.register(
    "si",
    hyperparams=SIOptions,
    description="Synaptic intelligence (Zenke et al. 2017): penalize moving weights that reduced the loss.",
)
def build_si(options: SIOptions, context: StrategyContext) -> Strategy:
    return synaptic_intelligence(si_c=options.si_c, damping=options.si_damping)
