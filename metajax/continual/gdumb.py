"""GDumb (Prabhu, Torr & Dokania 2020, "GDumb: A Simple Approach that Questions Our Progress in Continual
Learning", https://doi.org/10.1007/978-3-030-58536-5_31).

A greedy sampler keeps a class-balanced memory of the stream, and the model
that is evaluated is trained from scratch on that memory alone. The sampler
takes the examples one at a time, in the stream's order: an example is
stored when its class holds fewer than ``capacity / classes seen`` slots
(counting its own class), in a free slot while there is one, else in the
slot of a uniformly drawn example of the class holding the most slots (the
lowest such class on a tie), which is evicted.

Here each experience's ``before_experience`` offers the experience to the
sampler, then replaces the parameters by the initial ones and the experience
by the memory (``weight`` 0 on empty slots): the learner's epochs over the
experience train a fresh model on the memory, which is the model scored
after the experience. The optimizer state is the learner's: with
``reset_optimizer`` it starts fresh too, as the paper's; by default Adam's
moments carry over (the strategy has no hook to reset them). Not
implemented: the paper's SGDR schedule, CutMix and gradient clipping.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array
from metajax.continual.base import Experience, Strategy, StrategyContext
from metajax.continual.replay import buffered_example, offered_examples
from metajax.continual.replay_buffer import BufferedExample, ReplayBuffer, empty_buffer
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class GDumbState(NamedTuple):
    """The parameters every experience starts from, and the memory."""

    initial_params: Any
    memory: ReplayBuffer


def greedy_class_balanced_slots(
    slot_labels: jax.Array, filled: jax.Array, labels: jax.Array, draws: jax.Array, *, num_classes: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """GDumb's sampler over a stream of ``labels [n]``: the slot each example is written to (-1: not
    stored), and the memory's ``slot_labels [capacity]`` and ``filled`` afterwards.

    ``draws [n]`` (uniform in [0, 1)) choose the evicted example of the largest class: its
    ``floor(draw * count)``-th slot in slot order. The classes seen so far are those with a slot.
    """
    capacity = check_array("slot_labels", slot_labels, (None,), "[capacity]", dtype="integer")[0]
    n = check_array("labels", labels, (None,), "[examples]", dtype="integer")[0]
    check_array("draws", draws, (n,), "[examples]", dtype="floating")
    slots = jnp.arange(capacity)

    def counts_of(slot_labels, filled):
        return jnp.zeros((num_classes,), jnp.int32).at[slot_labels].add((slots < filled).astype(jnp.int32))

    def offer(carry, inputs):
        slot_labels, filled = carry
        label, draw = inputs
        counts = counts_of(slot_labels, filled)
        seen = jnp.sum((counts > 0) | (jnp.arange(num_classes) == label))
        stored = counts[label] * seen < capacity  # counts[label] < capacity / seen, exactly.
        largest = jnp.argmax(counts)
        of_largest = (slot_labels == largest) & (slots < filled)
        victim_rank = jnp.minimum(jnp.floor(draw * counts[largest]).astype(jnp.int32), counts[largest] - 1)
        victim = jnp.argmax(of_largest & (jnp.cumsum(of_largest) == victim_rank + 1))
        slot = jnp.where(filled < capacity, filled, victim)
        slot = jnp.where(stored, slot, -1)
        slot_labels = jnp.where(stored, slot_labels.at[slot].set(label), slot_labels)
        filled = filled + (stored & (filled < capacity))
        return (slot_labels, filled), slot

    (slot_labels, filled), written = jax.lax.scan(offer, (slot_labels, filled), (labels, draws))
    return written, slot_labels, filled


def greedy_class_balanced_add(
    memory: ReplayBuffer, items: BufferedExample, draws: jax.Array, *, num_classes: int
) -> ReplayBuffer:
    """``memory`` after GDumb's sampler took ``items`` (each leaf ``[n, ...]``) in order."""
    n = items.y.shape[0]
    written, _, filled = greedy_class_balanced_slots(
        memory.items.y, memory.filled, items.y, draws, num_classes=num_classes
    )
    capacity = memory.capacity
    # The last example written to a slot is what it holds.
    stored = written >= 0
    last_writer = jax.ops.segment_max(
        jnp.where(stored, jnp.arange(n), -1), jnp.where(stored, written, capacity), num_segments=capacity + 1
    )[:capacity]
    taken = last_writer >= 0
    source = jnp.clip(last_writer, 0)

    def merged(new, old):
        return jnp.where(taken.reshape(-1, *(1,) * (old.ndim - 1)), new[source].astype(old.dtype), old)

    return ReplayBuffer(jax.tree.map(merged, items, memory.items), filled, memory.seen + n)


def gdumb(memory_size: int, *, example_shape: tuple[int, ...], num_outputs: int) -> Strategy:
    """GDumb as a strategy: every experience trains the initial parameters on the class-balanced memory."""
    if memory_size < num_outputs:
        raise ValueError(
            f"gdumb's buffer-size {memory_size} is smaller than the number of classes ({num_outputs}): "
            "it cannot hold one example of each"
        )
    example = buffered_example(example_shape, num_outputs)

    def init(params):
        return GDumbState(params, empty_buffer(memory_size, example))

    def before_experience(state: GDumbState, params, experience: Experience, key):
        items = offered_examples(experience)
        draws = jax.random.uniform(key, items.y.shape)
        memory = greedy_class_balanced_add(state.memory, items, draws, num_classes=num_outputs)
        occupied = jnp.arange(memory_size) < memory.filled
        on_memory = Experience(
            memory.items.x,
            memory.items.y,
            memory.items.logit_mask,
            experience.index,
            occupied.astype(jnp.float32),
        )
        return GDumbState(state.initial_params, memory), state.initial_params, on_memory

    return Strategy(init=init, before_experience=before_experience)


def check_buffer_size(buffer_size: int, context: StrategyContext) -> None:
    """A one-line error for a buffer larger than the whole stream (it could never be filled)."""
    if buffer_size > context.stream_examples:
        raise ValueError(
            f"buffer-size {buffer_size} is larger than the whole stream ({context.stream_examples} training examples)"
        )


@dataclasses.dataclass(frozen=True)
class GDumbOptions:
    buffer_size: int = option(1000, "examples kept in the buffer", minimum=1)


@CONTINUAL_STRATEGIES.register(
    "gdumb",
    hyperparams=GDumbOptions,
    description="GDumb (Prabhu et al. 2020): train a fresh model on a greedy class-balanced memory alone.",
)
def build_gdumb(options: GDumbOptions, context: StrategyContext) -> Strategy:
    check_buffer_size(options.buffer_size, context)
    return gdumb(options.buffer_size, example_shape=context.example_shape, num_outputs=context.num_outputs)
