"""Memory aware synapses, MAS (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, "Memory Aware
Synapses: Learning what (not) to forget", https://arxiv.org/abs/1711.09601).

A weight's importance is how much the squared L2 norm of the model's output
moves when it moves, averaged over an experience's examples:

    Omega_i = 1/N sum_k | d ||f(x_k)||^2 / d theta_i |

with no labels needed (the output's sensitivity, not the loss's). The
importances of successive experiences are summed, as the paper's code
accumulates them, and training on the next experience pays

    mas_lambda * sum_i Omega_i (theta_i - theta*_i)^2

with theta* the weights at the end of the latest experience (the paper's
penalty, with no factor 1/2).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, is_traced
from metajax.continual.base import Strategy, StrategyContext
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class MASState(NamedTuple):
    """``importance`` (Omega, summed over past experiences), ``anchor`` (theta*) and the penalty's ``strength``."""

    importance: Any
    anchor: Any
    strength: jax.Array


def output_sensitivity(apply_fn, params, x: jax.Array, logit_mask: jax.Array, *, chunk_size: int | None = None) -> Any:
    """MAS's importance: the mean over examples of ``|d ||f(x)||^2 / d params|``, a params-shaped pytree.

    ``f(x)`` is the model's logits on the example's head (``logit_mask [outputs]`` or ``[examples, outputs]``:
    the outputs it may predict; the others do not count). Per-example gradients come from a ``vmap`` of
    ``grad`` over chunks of ``chunk_size`` examples, their absolute values summed chunk after chunk in a
    ``lax.scan`` (default chunk: 1 on CPU, 64 on accelerators, as ``diagonal_fisher``); a last partial
    chunk is left out of the mean.
    """
    n, *_ = check_array("x", x, (None, ...), "[examples, *features]")
    if jnp.ndim(logit_mask) == 1:
        logit_mask = jnp.broadcast_to(logit_mask, (n, jnp.shape(logit_mask)[0]))
    check_array("logit_mask", logit_mask, (n, None), "[examples, outputs] or [outputs]")
    if chunk_size is None:
        chunk_size = 1 if jax.default_backend() == "cpu" else 64
    chunk_size = min(chunk_size, n)
    usable = n - n % chunk_size

    def squared_norm(p, xi, mi):
        return jnp.sum(jnp.where(mi, jnp.square(apply_fn(p, xi[None])[0]), 0.0))

    def add_chunk(total, rows):
        grads = jax.vmap(jax.grad(squared_norm), in_axes=(None, 0, 0))(params, *rows)
        return jax.tree.map(lambda t, g: t + jnp.sum(jnp.abs(g), axis=0), total, grads), None

    chunks = jax.tree.map(lambda a: a[:usable].reshape(usable // chunk_size, chunk_size, *a.shape[1:]), (x, logit_mask))
    total, _ = jax.lax.scan(add_chunk, jax.tree.map(jnp.zeros_like, params), chunks)
    return jax.tree.map(lambda t: t / usable, total)


def memory_aware_synapses(
    apply_fn, *, mas_lambda: float, importance_samples: int | None = None, chunk_size: int | None = None
) -> Strategy:
    """MAS as a strategy: importances from each experience's first ``importance_samples`` examples (all by
    default) added up, anchored at the latest weights.

    ``mas_lambda`` is the initial state's ``strength``; replace it in the state
    (``state._replace(strength=...)``) to sweep lambda over a vmapped run axis.
    """
    if not is_traced(mas_lambda) and mas_lambda < 0:
        raise ValueError(f"mas_lambda must be >= 0, got {mas_lambda}")

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return MASState(importance=zeros, anchor=params, strength=jnp.asarray(mas_lambda, float))

    def penalty(params, state, batch, outputs):
        terms = jax.tree.map(lambda o, p, a: jnp.sum(o * jnp.square(p - a)), state.importance, params, state.anchor)
        return state.strength * sum(jax.tree.leaves(terms))

    def after_experience(state, params, experience, key):
        n = experience.x.shape[0] if importance_samples is None else min(importance_samples, experience.x.shape[0])
        heads = experience.logit_mask[:n] if experience.logit_mask.ndim == 2 else experience.logit_mask
        new = output_sensitivity(apply_fn, params, experience.x[:n], heads, chunk_size=chunk_size)
        importance = jax.tree.map(jnp.add, state.importance, new)
        return MASState(importance=importance, anchor=params, strength=state.strength)

    return Strategy(init=init, penalty=penalty, after_experience=after_experience)


@dataclasses.dataclass(frozen=True)
class MASOptions:
    mas_lambda: float = option(1.0, "strength of the MAS penalty", minimum=0)
    mas_samples: int | None = option(None, "examples per experience for the importances (None: all)", minimum=1)


@CONTINUAL_STRATEGIES.register(
    "mas",
    hyperparams=MASOptions,
    description="MAS (Aljundi et al. 2018): penalize moving weights to which the output's norm is sensitive.",
)
def build_mas(options: MASOptions, context: StrategyContext) -> Strategy:
    return memory_aware_synapses(
        context.apply_fn, mas_lambda=options.mas_lambda, importance_samples=options.mas_samples
    )
