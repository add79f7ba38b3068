"""Experience replay with asymmetric cross-entropy, ER-ACE (Caccia, Aljundi, Asadi, Tuytelaars, Pineau &
Belilovsky 2022, "New Insights on Reducing Abrupt Representation Change in Online Continual Learning",
https://arxiv.org/abs/2104.05025).

The loss of a step is

    CE(f(x_in), y_in; classes present in the incoming batch)
  + CE(f(x_bf), y_bf; every class of the replayed example's head)

two means, one over the incoming rows, one over the rows drawn from a
reservoir buffer. Masking the logits of absent classes on incoming data
keeps the new classes' examples from pushing down the old classes' logits,
the abrupt change of representation that plain ER suffers when new classes
arrive. The paper's code also leaves classes not seen yet unmasked and masks
nothing during the first task; here the mask is the formula's: the classes
in the incoming batch (within the batch's head), from the first step on.
The replayed rows go through the step's one forward pass with ``weight`` 0 in
the data loss and their cross-entropy comes from ``penalty``, so that the two
means add as in the formula rather than average over all rows.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Strategy, StrategyContext, masked_cross_entropy
from metajax.continual.replay import BufferOptions, appended, buffer_strategy, buffered_example
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class ACEExtras(NamedTuple):
    """What ``augment`` attaches for ``penalty``: the replayed rows' weights (0 while the buffer is empty)."""

    replay_weight: jax.Array


def present_classes(labels: jax.Array, weight: jax.Array, num_outputs: int) -> jax.Array:
    """``[num_outputs]`` True for each class with a row of positive ``weight`` among ``labels [b]``."""
    return jnp.zeros((num_outputs,), bool).at[labels].max(weight > 0)


def er_ace(
    buffer_size: int,
    *,
    example_shape: tuple[int, ...],
    num_outputs: int,
    replay_batch: int | None = None,
    policy: str = "reservoir",
    update: str = "step",
) -> Strategy:
    """ER-ACE: incoming rows scored over the classes present in their batch, replayed rows over their head.

    ``replay_batch`` buffer rows per step (default: the batch size); the buffer takes each batch after
    its step (``update="step"``, the paper's online setting) or each experience at its end.
    """
    if replay_batch is not None and (not isinstance(replay_batch, int) or replay_batch < 1):
        raise ValueError(f"replay batch must be a positive integer or None, got {replay_batch!r}")

    def augment(buffer, batch: ContinualBatch, key) -> ContinualBatch:
        present = present_classes(batch.y, batch.weight, num_outputs)
        incoming = batch._replace(logit_mask=batch.logit_mask & present[None, :])
        rows, replay_weight = replay_buffer.sample(buffer, replay_batch or batch.x.shape[0], key=key)
        silent = jnp.zeros_like(replay_weight, dtype=batch.weight.dtype)  # Scored by ``penalty`` instead.
        return appended(incoming, rows, silent)._replace(extras=ACEExtras(replay_weight))

    def penalty(params, buffer, batch: ContinualBatch, outputs):
        extras: ACEExtras = batch.extras
        tail = slice(outputs.shape[0] - extras.replay_weight.shape[0], None)  # The stream's rows, then the draw.
        return masked_cross_entropy(outputs[tail], batch.y[tail], batch.logit_mask[tail], extras.replay_weight)

    example = buffered_example(example_shape, num_outputs)
    return buffer_strategy(buffer_size, example, num_outputs, policy, update)._replace(augment=augment, penalty=penalty)


@dataclasses.dataclass(frozen=True)
class ERACEOptions(BufferOptions):
    buffer_update: str = option(
        "step",
        "when the buffer takes examples: each batch after its step (the paper's online setting), or each "
        "experience at its end",
        choices=("step", "experience"),
    )
    replay_batch: int | None = option(
        None, "buffer examples added to each training batch (None: the batch size)", minimum=1
    )


@CONTINUAL_STRATEGIES.register(
    "er-ace",
    hyperparams=ERACEOptions,
    description="ER-ACE (Caccia et al. 2022): replay, with incoming examples scored over their batch's classes.",
)
def build_er_ace(options: ERACEOptions, context: StrategyContext) -> Strategy:
    options.check_against(context)
    return er_ace(
        options.buffer_size,
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        replay_batch=options.replay_batch,
        policy=options.buffer_policy,
        update=options.buffer_update,
    )
