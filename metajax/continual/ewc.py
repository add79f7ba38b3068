"""Elastic weight consolidation, separate and online, with a per-example diagonal Fisher."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.continual.base import Strategy, masked_cross_entropy


class EWCState(NamedTuple):
    """Per-slot diagonal Fisher and anchor weights (leading axis: experiences, or 1 for online EWC)."""

    fisher: Any
    anchors: Any
    active: jax.Array


def diagonal_fisher(
    apply_fn, params, x: jax.Array, y: jax.Array, logit_mask: jax.Array, *, chunk_size: int | None = None
) -> Any:
    """Empirical diagonal Fisher: the mean over examples of each per-example gradient squared.

    Per-example gradients of the log-likelihood of the true label come from a
    ``vmap`` of ``grad`` over chunks of ``chunk_size`` examples, the squares
    summed chunk after chunk in a ``lax.scan``, so no more than one chunk of
    per-example gradients is ever held. Default chunk: 1 example on CPU, where
    XLA runs the batched outer products of a vmapped chunk poorly (a 2x400 MLP,
    1024 examples: 0.09 s with chunks of 1 against 3.3 s with chunks of 8),
    and 64 on accelerators.
    """
    n = x.shape[0]
    if chunk_size is None:
        chunk_size = 1 if jax.default_backend() == "cpu" else 64
    chunk_size = min(chunk_size, n)
    usable = n - n % chunk_size  # The last partial chunk is left out of the estimate.
    mask = logit_mask[:usable] if logit_mask.ndim == 2 else jnp.broadcast_to(logit_mask, (usable, logit_mask.shape[-1]))

    def example_loss(p, xi, yi, mi):
        return masked_cross_entropy(apply_fn(p, xi[None]), yi[None], mi[None], jnp.ones((1,)))

    def add_chunk(total, rows):
        grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0, 0))(params, *rows)
        return jax.tree.map(lambda t, g: t + jnp.sum(jnp.square(g), axis=0), total, grads), None

    chunks = jax.tree.map(lambda a: a[:usable].reshape(usable // chunk_size, chunk_size, *a.shape[1:]), (x, y, mask))
    total, _ = jax.lax.scan(add_chunk, jax.tree.map(jnp.zeros_like, params), chunks)
    return jax.tree.map(lambda t: t / usable, total)


def ewc(
    apply_fn,
    *,
    ewc_lambda: float,
    num_experiences: int,
    mode: str = "separate",
    decay: float = 1.0,
    fisher_samples: int | None = None,
) -> Strategy:
    """Elastic weight consolidation (Kirkpatrick et al. 2017, arXiv 1612.00796).

    The penalty is ``ewc_lambda / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2``.
    ``mode="separate"`` keeps one Fisher and anchor per past experience;
    ``mode="online"`` keeps one, F <- decay * F + F_new, anchored at the latest
    weights (Schwarz et al. 2018, arXiv 1805.06370). The Fisher is computed on
    the first ``fisher_samples`` examples of the experience (all by default).
    """
    if mode not in ("separate", "online"):
        raise ValueError(f"EWC mode must be 'separate' or 'online', got {mode!r}")
    if ewc_lambda < 0:
        raise ValueError(f"ewc_lambda must be >= 0, got {ewc_lambda}")
    slots = num_experiences if mode == "separate" else 1

    def init(params):
        zeros = jax.tree.map(lambda p: jnp.zeros((slots, *p.shape), p.dtype), params)
        return EWCState(fisher=zeros, anchors=zeros, active=jnp.zeros((slots,), bool))

    def penalty(params, state, batch):
        per_slot = jax.tree.map(
            lambda f, a, p: jnp.sum(f * jnp.square(p[None] - a), axis=tuple(range(1, f.ndim))),
            state.fisher,
            state.anchors,
            params,
        )
        total = sum(jax.tree.leaves(per_slot))  # [slots]
        return 0.5 * ewc_lambda * jnp.sum(jnp.where(state.active, total, 0.0))

    def after_experience(state, params, experience, key):
        n = experience.x.shape[0] if fisher_samples is None else min(fisher_samples, experience.x.shape[0])
        heads = experience.logit_mask[:n] if experience.logit_mask.ndim == 2 else experience.logit_mask
        fisher = diagonal_fisher(apply_fn, params, experience.x[:n], experience.y[:n], heads)
        if mode == "online":
            new_fisher = jax.tree.map(lambda old, new: decay * old + new[None], state.fisher, fisher)
            new_anchors = jax.tree.map(lambda p: p[None], params)
            return EWCState(new_fisher, new_anchors, jnp.ones((1,), bool))
        slot = experience.index
        return EWCState(
            fisher=jax.tree.map(lambda old, new: old.at[slot].set(new), state.fisher, fisher),
            anchors=jax.tree.map(lambda old, p: old.at[slot].set(p), state.anchors, params),
            active=state.active.at[slot].set(True),
        )

    return Strategy(init=init, penalty=penalty, after_experience=after_experience)
