"""Learning without forgetting (Li & Hoiem 2016, arXiv 1606.09282)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import is_traced
from metajax.continual.base import Strategy, StrategyContext
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class LwFState(NamedTuple):
    """The model's weights after the previous experience and the outputs trained so far."""

    previous: Any
    seen_outputs: jax.Array


def learning_without_forgetting(apply_fn, *, alpha: float, temperature: float = 2.0, num_outputs: int) -> Strategy:
    """Distillation penalty on the current inputs toward the previous model.

    ``alpha * T^2 * KL(softmax(old / T) || softmax(new / T))`` over the outputs
    of earlier experiences (nothing before the first experience ends).
    """
    if not is_traced(alpha) and alpha < 0:
        raise ValueError(f"lwf alpha must be >= 0, got {alpha}")

    def init(params):
        return LwFState(previous=params, seen_outputs=jnp.zeros((num_outputs,), bool))

    def penalty(params, state, batch, outputs):
        mask = state.seen_outputs
        old = jnp.where(mask, jax.lax.stop_gradient(apply_fn(state.previous, batch.x)) / temperature, -1e9)
        new = jnp.where(mask, outputs / temperature, -1e9)
        old_log_probs, new_log_probs = jax.nn.log_softmax(old), jax.nn.log_softmax(new)
        kl = jnp.sum(jnp.where(mask, jnp.exp(old_log_probs) * (old_log_probs - new_log_probs), 0.0), axis=-1)
        weight = batch.weight * jnp.any(mask)
        return alpha * temperature**2 * jnp.sum(weight * kl) / jnp.maximum(jnp.sum(batch.weight), 1.0)

    def after_experience(state, params, experience, key):
        heads = experience.logit_mask.reshape(-1, experience.logit_mask.shape[-1])
        return LwFState(previous=params, seen_outputs=state.seen_outputs | jnp.any(heads, axis=0))

    return Strategy(init=init, penalty=penalty, after_experience=after_experience)


@dataclasses.dataclass(frozen=True)
class LwFOptions:
    lwf_alpha: float = option(1.0, "weight of LwF's distillation penalty", minimum=0)
    lwf_temperature: float = option(2.0, "LwF's softmax temperature", above=0)


@CONTINUAL_STRATEGIES.register(
    "lwf",
    hyperparams=LwFOptions,
    description="Learning without forgetting (Li & Hoiem 2016): distill the previous model on current inputs.",
)
def build_lwf(options: LwFOptions, context: StrategyContext) -> Strategy:
    return learning_without_forgetting(
        context.apply_fn, alpha=options.lwf_alpha, temperature=options.lwf_temperature, num_outputs=context.num_outputs
    )
