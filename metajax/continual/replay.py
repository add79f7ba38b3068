"""Experience replay over an on-device buffer, and the buffer part every rehearsal strategy shares."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Strategy, StrategyContext
from metajax.continual.replay_buffer import BufferedExample
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES

BUFFER_UPDATES = ("experience", "step")
BUFFER_POLICIES = ("reservoir", "class-balanced")


@dataclasses.dataclass(frozen=True)
class BufferOptions:
    """The options of every strategy with a buffer of past examples."""

    buffer_size: int = option(1000, "examples kept in the buffer", minimum=1)
    buffer_policy: str = option(
        "reservoir", "which examples the buffer keeps: a uniform sample, or as many per class", choices=BUFFER_POLICIES
    )
    buffer_update: str = option(
        "experience",
        "when the buffer takes examples: each experience at its end, or each batch after its step (online)",
        choices=BUFFER_UPDATES,
    )

    def check_against(self, context: StrategyContext) -> None:
        if self.buffer_size > context.stream_examples:
            raise ValueError(
                f"buffer-size {self.buffer_size} is larger than the whole stream ({context.stream_examples} "
                "training examples)"
            )


def offered_examples(batch_or_experience) -> BufferedExample:
    """The items a buffer is offered: inputs, labels and each example's head as ``[n, outputs]``."""
    x, y, heads = batch_or_experience.x, batch_or_experience.y, batch_or_experience.logit_mask
    return BufferedExample(x, y, jnp.broadcast_to(heads, (x.shape[0], heads.shape[-1])))


def buffered_example(example_shape: tuple[int, ...], num_outputs: int) -> BufferedExample:
    """The shapes of one ``BufferedExample``, to make a buffer of them."""
    return BufferedExample(
        x=jax.ShapeDtypeStruct(tuple(example_shape), jnp.float32),  # type: ignore[arg-type]  # Shapes, not arrays.
        y=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]  # Shapes, not arrays.
        logit_mask=jax.ShapeDtypeStruct((num_outputs,), jnp.bool_),  # type: ignore[arg-type]  # Shapes, not arrays.
    )


def buffer_strategy(
    capacity: int,
    example: Any,
    num_outputs: int,
    policy: str,
    update: str,
    *,
    items: Callable[..., Any] = lambda source, outputs: offered_examples(source),
) -> Strategy:
    """A buffer of past examples: empty at first, then each experience offered to it when the experience
    ends (``update="experience"``) or each training batch after its step (``"step"``).

    ``example`` gives the shapes of one item (``buffered_example(...)``, or a pytree of
    ``jax.ShapeDtypeStruct`` with a ``y`` field of labels); ``items(source, outputs)`` makes the items
    offered from an experience or a batch (``outputs``: the model's logits of a batch, ``None`` for an
    experience).
    """
    if policy == "reservoir":
        add = replay_buffer.reservoir_add
    elif policy == "class-balanced":
        add = functools.partial(replay_buffer.class_balanced_add, num_classes=num_outputs, label_of=lambda i: i.y)
    else:
        raise ValueError(f"buffer policy must be one of {', '.join(BUFFER_POLICIES)}, got {policy!r}")
    if update not in BUFFER_UPDATES:
        raise ValueError(f"buffer update must be one of {', '.join(BUFFER_UPDATES)}, got {update!r}")

    def init(params):
        return replay_buffer.empty_buffer(capacity, example)

    def after_experience(buffer, params, experience, key):
        return add(buffer, items(experience, None), key=key)

    def observe(buffer, batch, outputs, key):
        return add(buffer, items(batch, outputs), key=key)

    buffer = Strategy(init=init)
    return buffer._replace(observe=observe) if update == "step" else buffer._replace(after_experience=after_experience)


def appended(batch: ContinualBatch, rows: BufferedExample, weight: jnp.ndarray) -> ContinualBatch:
    """``batch`` with buffer rows appended (their ``weight`` as given)."""
    return batch._replace(
        x=jnp.concatenate([batch.x, rows.x]),
        y=jnp.concatenate([batch.y, rows.y]),
        logit_mask=jnp.concatenate([batch.logit_mask, rows.logit_mask]),
        weight=jnp.concatenate([batch.weight, weight]),
    )


def replay(
    buffer_size: int,
    *,
    example_shape: tuple[int, ...],
    num_outputs: int,
    policy: str = "reservoir",
    replay_batch: int | None = None,
    update: str = "experience",
) -> Strategy:
    """Experience replay (Chaudhry et al. 2019, arXiv 1902.10486; Avalanche's ``Replay``).

    Every training batch is extended with as many examples drawn from a
    fixed-size buffer (``replay_batch`` to change that); the buffer takes each
    experience's examples when it ends (``update="experience"``, Avalanche's
    ``ReplayPlugin``), or each batch right after its step (``"step"``: the
    online ER of Chaudhry et al., which needs no task boundaries and also
    replays the current experience), by reservoir sampling or class-balanced.
    """
    if replay_batch is not None and (not isinstance(replay_batch, int) or replay_batch < 1):
        raise ValueError(f"replay batch must be a positive integer or None, got {replay_batch!r}")

    def augment(buffer, batch, key):
        rows, weight = replay_buffer.sample(buffer, replay_batch or batch.x.shape[0], key=key)
        return appended(batch, rows, weight)

    example = buffered_example(example_shape, num_outputs)
    return buffer_strategy(buffer_size, example, num_outputs, policy, update)._replace(augment=augment)


@dataclasses.dataclass(frozen=True)
class ReplayOptions(BufferOptions):
    replay_batch: int | None = option(
        None, "buffer examples added to each training batch (None: the batch size)", minimum=1
    )


@CONTINUAL_STRATEGIES.register(
    "replay",
    hyperparams=ReplayOptions,
    description="Experience replay (Chaudhry et al. 2019): train on buffer examples beside each batch.",
)
def build_replay(options: ReplayOptions, context: StrategyContext) -> Strategy:
    options.check_against(context)
    return replay(
        options.buffer_size,
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        policy=options.buffer_policy,
        replay_batch=options.replay_batch,
        update=options.buffer_update,
    )
