"""Elastic weight consolidation, separate and online, with a per-example diagonal Fisher."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, is_traced
from metajax.continual.base import Strategy, StrategyContext, masked_cross_entropy
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class EWCState(NamedTuple):
    """The EWC penalty in closed form: ``0.5 * lambda * (sum_i F_i (theta_i - m_i)^2 + residual)``.

    ``fisher`` is the summed Fisher F of the past experiences (decayed, for
    online EWC), ``anchor`` the Fisher-weighted mean m of their anchors, and
    ``residual`` the constant that makes the sum equal the separate per-
    experience penalties. One copy of the parameters whatever the number of
    experiences: a penalty over k stored Fisher/anchor pairs read k times the
    memory every step (5 experiences of a 2 x 400 MLP: 104 s against 16 s for
    Split MNIST, 3 seeds).
    """

    fisher: Any
    anchor: Any
    residual: jax.Array
    strength: jax.Array


def _dense_fisher(dense_layers, params, x, y, mask) -> Any:
    """The diagonal Fisher of a network of ``Dense`` layers without per-example gradients.

    Example i's gradient of a kernel is the outer product ``a_i d_i^T`` of the
    layer's input and the gradient at its output, so the sum of its squares
    over examples is one matmul, ``(a^2)^T (d^2)``; the bias's is ``sum_i d_i^2``.
    The d_i of all examples come from one backward pass of the summed loss
    through zero perturbations added to each layer's output (the model's
    declared ``dense_layers``, ``metajax.models.interfaces``).
    """
    n = x.shape[0]
    zeros = {name: jnp.zeros((n, layer["kernel"].shape[-1])) for name, layer in params["params"].items()}

    def summed_loss(perturbations):
        logits, inputs = dense_layers(params, x, perturbations)
        return masked_cross_entropy(logits, y, mask, jnp.ones((n,))) * n, inputs

    output_grads, inputs = jax.grad(summed_loss, has_aux=True)(zeros)

    def leaf_fisher(key_path, leaf):
        _, layer, kind = (getattr(k, "key", None) for k in key_path)
        d_squared = jnp.square(output_grads[layer])
        if kind == "bias":
            return jnp.sum(d_squared, axis=0) / n
        return jnp.matmul(jnp.square(inputs[layer]).T, d_squared, precision=jax.lax.Precision.HIGHEST) / n

    return jax.tree_util.tree_map_with_path(leaf_fisher, params)


def diagonal_fisher(
    apply_fn,
    params,
    x: jax.Array,
    y: jax.Array,
    logit_mask: jax.Array,
    *,
    chunk_size: int | None = None,
    dense_layers: Callable | None = None,
) -> Any:
    """Empirical diagonal Fisher: the mean over examples of each per-example gradient squared.

    Works on any parameter pytree. Given a model's declared ``dense_layers``
    (``metajax.models.interfaces.DenseLayers``: every parameter in a ``Dense``
    layer applied to ``[examples, features]`` rows, an MLP), the sum of squares
    is computed in closed form (``_dense_fisher``: one backward pass and one
    matmul per layer; a 2 x 400 MLP, 1024 examples, CPU: see
    benchmarks/NOTES.md). Otherwise per-example
    gradients of the log-likelihood of the true label come from a ``vmap`` of
    ``grad`` over chunks of ``chunk_size`` examples, the squares summed chunk
    after chunk in a ``lax.scan``, so no more than one chunk of per-example
    gradients is ever held. Default chunk: 1 example on CPU, where XLA runs the
    batched outer products of a vmapped chunk poorly (a 2x400 MLP, 1024
    examples: 0.09 s with chunks of 1 against 3.3 s with chunks of 8), and 64
    on accelerators; a last partial chunk is left out of the estimate.
    """
    n, *_ = check_array("x", x, (None, ...), "[examples, *features]")
    check_array("y", y, (n,), "[examples]", dtype="integer")
    if jnp.ndim(logit_mask) != 1:
        check_array("logit_mask", logit_mask, (n, None), "[examples, outputs] or [outputs]")
    if dense_layers is not None:
        return _dense_fisher(dense_layers, params, x, y, logit_mask)
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
    mode: str = "separate",
    decay: float = 1.0,
    fisher_samples: int | None = None,
    dense_layers: Callable | None = None,
) -> Strategy:
    """Elastic weight consolidation (Kirkpatrick et al. 2017, arXiv 1612.00796).

    ``mode="separate"``: the penalty of the paper, one quadratic per past
    experience k, ``ewc_lambda / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2``,
    held in closed form (see ``EWCState``: a sum of quadratics is one quadratic
    plus a constant). ``mode="online"``: one Fisher, F <- decay * F + F_new,
    anchored at the latest weights (Schwarz et al. 2018, arXiv 1805.06370). The
    Fisher of an experience is computed on its first ``fisher_samples``
    examples (all by default), in closed form when the model declares its
    ``dense_layers`` (see ``diagonal_fisher``). ``ewc_lambda`` is the initial state's
    ``strength``; replace it in the state (``state._replace(strength=...)``)
    to sweep lambda over a vmapped run axis.
    """
    if mode not in ("separate", "online"):
        raise ValueError(f"EWC mode must be 'separate' or 'online', got {mode!r}")
    if not is_traced(ewc_lambda) and ewc_lambda < 0:
        raise ValueError(f"ewc_lambda must be >= 0, got {ewc_lambda}")

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return EWCState(fisher=zeros, anchor=zeros, residual=jnp.zeros(()), strength=jnp.asarray(ewc_lambda, float))

    def penalty(params, state, batch, outputs):
        terms = jax.tree.map(lambda f, m, p: jnp.sum(f * jnp.square(p - m)), state.fisher, state.anchor, params)
        return 0.5 * state.strength * (sum(jax.tree.leaves(terms)) + state.residual)

    def after_experience(state, params, experience, key):
        n = experience.x.shape[0] if fisher_samples is None else min(fisher_samples, experience.x.shape[0])
        heads = experience.logit_mask[:n] if experience.logit_mask.ndim == 2 else experience.logit_mask
        new = diagonal_fisher(apply_fn, params, experience.x[:n], experience.y[:n], heads, dense_layers=dense_layers)
        if mode == "online":
            fisher = jax.tree.map(lambda old, f: decay * old + f, state.fisher, new)
            return EWCState(fisher=fisher, anchor=params, residual=jnp.zeros(()), strength=state.strength)

        # A (x - m)^2 + F (x - t)^2 = (A + F) (x - (A m + F t) / (A + F))^2 + A F (m - t)^2 / (A + F).
        fisher = jax.tree.map(jnp.add, state.fisher, new)
        safe = jax.tree.map(lambda total: jnp.where(total > 0, total, 1.0), fisher)
        anchor = jax.tree.map(
            lambda a, m, f, t, total, d: jnp.where(total > 0, (a * m + f * t) / d, t),
            state.fisher, state.anchor, new, params, fisher, safe,
        )  # fmt: skip
        extra_terms = jax.tree.map(
            lambda a, m, f, t, d: jnp.sum(a * f * jnp.square(m - t) / d), state.fisher, state.anchor, new, params, safe
        )
        extra = sum(jax.tree.leaves(extra_terms))
        return EWCState(fisher=fisher, anchor=anchor, residual=state.residual + extra, strength=state.strength)

    return Strategy(init=init, penalty=penalty, after_experience=after_experience)


@dataclasses.dataclass(frozen=True)
class EWCOptions:
    ewc_lambda: float = option(100.0, "strength of the EWC penalty", minimum=0)
    fisher_samples: int = option(1024, "examples per experience for the Fisher", minimum=1)


@dataclasses.dataclass(frozen=True)
class OnlineEWCOptions(EWCOptions):
    ewc_decay: float = option(1.0, "online EWC's decay of the old Fisher", minimum=0, maximum=1)


@CONTINUAL_STRATEGIES.register(
    "ewc",
    hyperparams=EWCOptions,
    description="EWC (Kirkpatrick et al. 2017): a quadratic penalty per past experience, weighted by its Fisher.",
)
def build_ewc(options: EWCOptions, context: StrategyContext) -> Strategy:
    return ewc(
        context.apply_fn,
        ewc_lambda=options.ewc_lambda,
        fisher_samples=options.fisher_samples,
        dense_layers=getattr(context.model, "dense_layers", None),  # The closed form, where the model has one.
    )


@CONTINUAL_STRATEGIES.register(
    "online-ewc",
    hyperparams=OnlineEWCOptions,
    description="Online EWC (Schwarz et al. 2018): one decayed Fisher, anchored at the latest weights.",
)
def build_online_ewc(options: OnlineEWCOptions, context: StrategyContext) -> Strategy:
    return ewc(
        context.apply_fn,
        ewc_lambda=options.ewc_lambda,
        fisher_samples=options.fisher_samples,
        mode="online",
        decay=options.ewc_decay,
        dense_layers=getattr(context.model, "dense_layers", None),
    )
