"""Dark experience replay, DER and DER++ (Buzzega, Boschini, Porrello, Abati & Calderara 2020,
"Dark Experience for General Continual Learning: a Strong, Simple Baseline",
https://arxiv.org/abs/2004.07211).

The buffer keeps, with each example, the logits the model gave it when it
arrived. Training adds to the batch's cross-entropy

    alpha * mean_{(x', z') ~ M} ||f(x') - z'||^2          (DER: match the old logits)
  + beta  * mean_{(x'', y'') ~ M} CE(f(x''), y'')         (DER++: and the old labels)

with two independent draws from the buffer, which is filled by reservoir
sampling from every batch of the stream (no task boundaries needed). The
squared error is the mean over rows and outputs, as the paper's code
(``F.mse_loss``) computes it. Here the draws are with replacement (the
paper's code draws without), and the two replayed sets go through the step's
one forward pass beside the batch, with ``weight`` 0 so that they add nothing
to the data loss: the same arithmetic for models without batch statistics.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import is_traced
from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Strategy, StrategyContext, masked_cross_entropy
from metajax.continual.replay import BufferOptions, appended, buffer_strategy, offered_examples
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class LoggedExample(NamedTuple):
    """A buffered example with the logits the model gave it when it arrived."""

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array
    logits: jax.Array


class DERExtras(NamedTuple):
    """What ``augment`` attaches to the batch for ``penalty``: the stored logits of the first draw, and
    each draw's row weights (0 while the buffer is empty)."""

    logits: jax.Array
    logit_weight: jax.Array
    label_weight: jax.Array


def dark_experience_replay(
    buffer_size: int,
    *,
    example_shape: tuple[int, ...],
    num_outputs: int,
    alpha: float,
    beta: float = 0.0,
    replay_batch: int | None = None,
    policy: str = "reservoir",
) -> Strategy:
    """DER (``beta=0``) or DER++ as a strategy; ``replay_batch`` rows per draw (default: the batch size)."""
    if not is_traced(alpha) and not is_traced(beta) and (alpha < 0 or beta < 0):
        raise ValueError(f"der alpha and beta must be >= 0, got {alpha} and {beta}")
    example = LoggedExample(
        x=jax.ShapeDtypeStruct(tuple(example_shape), jnp.float32),  # type: ignore[arg-type]  # Shapes, not arrays.
        y=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]  # Shapes, not arrays.
        logit_mask=jax.ShapeDtypeStruct((num_outputs,), jnp.bool_),  # type: ignore[arg-type]  # Shapes, not arrays.
        logits=jax.ShapeDtypeStruct((num_outputs,), jnp.float32),  # type: ignore[arg-type]  # Shapes, not arrays.
    )

    def items(batch, outputs):
        return LoggedExample(*offered_examples(batch), logits=outputs)

    buffer = buffer_strategy(buffer_size, example, num_outputs, policy, "step", items=items)

    def augment(buffer, batch: ContinualBatch, key) -> ContinualBatch:
        rows = replay_batch or batch.x.shape[0]
        logit_key, label_key = jax.random.split(key)
        silent = jnp.zeros((rows,), batch.weight.dtype)  # Replayed rows add nothing to the data loss.
        logged, logit_weight = replay_buffer.sample(buffer, rows, key=logit_key)
        extended = appended(batch, logged, silent)
        label_weight = jnp.zeros((0,), batch.weight.dtype)
        # DER++'s second draw; DER has none. A swept beta draws it at every point (beta 0 weighs it 0).
        if is_traced(beta) or beta > 0:
            labelled, label_weight = replay_buffer.sample(buffer, rows, key=label_key)
            extended = appended(extended, labelled, silent)
        return extended._replace(extras=DERExtras(logged.logits, logit_weight, label_weight))

    def penalty(params, buffer, batch: ContinualBatch, outputs):
        extras: DERExtras = batch.extras
        rows, labelled = extras.logits.shape[0], extras.label_weight.shape[0]
        start = outputs.shape[0] - rows - labelled  # The stream's rows, then the draws.
        squared = jnp.mean(jnp.square(outputs[start : start + rows] - extras.logits), axis=-1)
        loss = alpha * jnp.sum(extras.logit_weight * squared) / jnp.maximum(jnp.sum(extras.logit_weight), 1.0)
        if labelled:
            tail = slice(start + rows, None)
            loss += beta * masked_cross_entropy(
                outputs[tail], batch.y[tail], batch.logit_mask[tail], extras.label_weight
            )
        return loss

    return buffer._replace(augment=augment, penalty=penalty)


@dataclasses.dataclass(frozen=True)
class DEROptions(BufferOptions):
    """The DER paper's Permuted MNIST preset with a buffer of 500 (its code's ``best_args``)."""

    buffer_size: int = option(500, "examples kept in the buffer", minimum=1)
    buffer_update: str = option("step", "DER's buffer takes every batch after its step", choices=("step",))
    replay_batch: int | None = option(None, "buffer examples per draw (None: the batch size)", minimum=1)
    der_alpha: float = option(1.0, "weight of DER's logit-matching term", minimum=0)


@dataclasses.dataclass(frozen=True)
class DERPlusPlusOptions(DEROptions):
    der_beta: float = option(0.5, "weight of DER++'s replayed-label cross-entropy", minimum=0)


def _build(options: DEROptions, context: StrategyContext, beta: float) -> Strategy:
    options.check_against(context)
    return dark_experience_replay(
        options.buffer_size,
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        alpha=options.der_alpha,
        beta=beta,
        replay_batch=options.replay_batch,
        policy=options.buffer_policy,
    )


@CONTINUAL_STRATEGIES.register(
    "der",
    hyperparams=DEROptions,
    description="Dark experience replay (Buzzega et al. 2020): match the logits stored with buffered examples.",
)
def build_der(options: DEROptions, context: StrategyContext) -> Strategy:
    return _build(options, context, beta=0.0)


@CONTINUAL_STRATEGIES.register(
    "der++",
    hyperparams=DERPlusPlusOptions,
    description="DER++ (Buzzega et al. 2020): DER plus cross-entropy on replayed labels.",
)
def build_der_plus_plus(options: DERPlusPlusOptions, context: StrategyContext) -> Strategy:
    return _build(options, context, beta=options.der_beta)
