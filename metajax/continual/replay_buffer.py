"""A fixed-size replay buffer held on the device as arrays, updated by pure functions.

The buffer holds ``items``: any pytree of arrays with a leading ``capacity``
axis, one row per stored example (replay stores ``BufferedExample(x, y,
logit_mask)``; DER adds the logits), whatever each example's shape (feature
vectors, images). The filled slots always form a prefix of the arrays, so
sampling is a uniform integer below the filled count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, check_key


class BufferedExample(NamedTuple):
    """What replay keeps of an example: ``x [*example_shape]``, ``y []``, its head ``logit_mask [outputs]``."""

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array


class ReplayBuffer(NamedTuple):
    """``items`` (a pytree, each leaf ``[capacity, ...]``), ``filled`` (slots in use) and ``seen``
    (examples offered so far)."""

    items: Any
    filled: jax.Array
    seen: jax.Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.items)[0].shape[0]


def empty_buffer(capacity: int, example: Any) -> ReplayBuffer:
    """An empty buffer of ``capacity`` slots for items shaped like ``example`` (ONE item: a pytree of
    arrays or ``jax.ShapeDtypeStruct``s)."""
    if capacity < 1:
        raise ValueError(f"buffer size must be positive, got {capacity}")
    return ReplayBuffer(
        items=jax.tree.map(lambda leaf: jnp.zeros((capacity, *jnp.shape(leaf)), leaf.dtype), example),
        filled=jnp.zeros((), jnp.int32),
        seen=jnp.zeros((), jnp.int32),
    )


def _check_offer(buffer: ReplayBuffer, items: Any, key) -> int:
    """Checks items offered to ``buffer`` (each leaf ``[n, *item_shape]`` with the buffer's item shapes);
    returns ``n``."""
    stored = jax.tree_util.tree_leaves_with_path(buffer.items)
    offered = jax.tree.leaves(items)
    if len(offered) != len(stored):
        raise ValueError(
            f"items must have the buffer's structure {jax.tree.structure(buffer.items)}, "
            f"got {jax.tree.structure(items)}"
        )
    n = None
    for (path, leaf), new in zip(stored, offered, strict=True):
        name = f"items{jax.tree_util.keystr(path)}"
        item_shape = leaf.shape[1:]
        shape = check_array(name, new, (n, *item_shape), f"[examples, {', '.join(map(str, item_shape))}]")
        n = shape[0]
        if jnp.result_type(new) != leaf.dtype and not jnp.can_cast(jnp.result_type(new), leaf.dtype, "same_kind"):
            raise TypeError(f"{name} must be of dtype {leaf.dtype}, got {jnp.result_type(new)}")
    check_key("key", key)
    assert n is not None  # zip over a non-empty tree of leaves set it.
    return n


def _uniform_below(key, bounds: jax.Array) -> jax.Array:
    """An integer drawn uniformly from [0, bound) for each of ``bounds`` (positive).

    One random word modulo the bound, not ``jax.random.randint``, whose exact
    unbiasing takes three draws from the key: each draw is code XLA compiles
    inside every continual run's time, and replacing randint's two uses here
    cut the compilation of a Split MNIST batch-10 replay experience from 0.83 s
    to 0.60 s (the build machine's CPU, benchmarks/RESULTS.md). The modulo's
    bias: no value's probability is off 1 / bound by more than 1 / 2**32.
    """
    return (jax.random.bits(key, bounds.shape, jnp.uint32) % bounds.astype(jnp.uint32)).astype(jnp.int32)


def _rows_where(taken: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """Row i of ``new`` where ``taken[i]``, else of ``old`` (rows of any shape)."""
    return jnp.where(taken.reshape(-1, *(1,) * (old.ndim - 1)), new, old)


def reservoir_add(buffer: ReplayBuffer, items: Any, *, key) -> ReplayBuffer:
    """Offers ``n`` items in order to reservoir sampling (Vitter's algorithm R).

    Example number p (counting every example ever offered) fills slot p while
    the buffer is not full, and otherwise replaces a uniformly drawn slot in
    [0, p] when that draw is below the capacity, so each of the N examples seen
    so far is in the buffer with probability capacity / N. Computed for all n
    at once: a slot ends up with the last example that wrote to it, exactly as
    the sequential algorithm with the same draws.
    """
    n = _check_offer(buffer, items, key)
    capacity = buffer.capacity
    positions = buffer.seen + jnp.arange(n)
    draws = _uniform_below(key, positions + 1)
    slots = jnp.where(positions < capacity, positions, draws)
    writes = slots < capacity
    last_writer = jax.ops.segment_max(
        jnp.where(writes, jnp.arange(n), -1), jnp.where(writes, slots, capacity), num_segments=capacity + 1
    )[:capacity]
    taken = last_writer >= 0
    source = jnp.clip(last_writer, 0)
    return ReplayBuffer(
        items=jax.tree.map(
            lambda new, old: _rows_where(taken, new[source].astype(old.dtype), old), items, buffer.items
        ),
        filled=jnp.minimum(buffer.seen + n, capacity),
        seen=buffer.seen + n,
    )


def _labels(items: Any) -> jax.Array:
    return items.y


def class_balanced_add(
    buffer: ReplayBuffer, items: Any, *, key, num_classes: int, label_of: Callable[[Any], jax.Array] = _labels
) -> ReplayBuffer:
    """Keeps, for every class seen so far, ``capacity // classes seen`` random examples of it.

    Candidates are the buffer's items and the new ones; ``label_of(items)``
    gives their classes (default: the ``y`` field). Within each class a
    uniformly random subset of the quota's size is kept.
    """
    n = _check_offer(buffer, items, key)
    capacity = buffer.capacity
    candidates = jax.tree.map(lambda old, new: jnp.concatenate([old, new.astype(old.dtype)]), buffer.items, items)
    candidate_y = label_of(candidates)
    check_array("label_of(items)", candidate_y, (capacity + n,), "[examples]", dtype="integer")
    valid = jnp.concatenate([jnp.arange(capacity) < buffer.filled, jnp.ones((n,), bool)])
    present = jnp.zeros((num_classes,), bool).at[candidate_y].max(valid)
    quota = capacity // jnp.maximum(jnp.sum(present), 1)
    priority = jnp.where(valid, jax.random.uniform(key, valid.shape), 2.0)
    order = jnp.lexsort((priority, candidate_y))  # by class, then random priority
    sorted_y = candidate_y[order]
    first_of_class = jnp.searchsorted(sorted_y, sorted_y, side="left")
    rank_in_class = jnp.arange(order.shape[0]) - first_of_class
    keep_sorted = valid[order] & (rank_in_class < quota)
    # Kept candidates first (a prefix), the rest after; the first ``capacity`` form the buffer.
    chosen = order[jnp.argsort(~keep_sorted, stable=True)[:capacity]]
    kept = jnp.sum(keep_sorted)
    return ReplayBuffer(
        items=jax.tree.map(lambda leaf: leaf[chosen], candidates),
        filled=jnp.minimum(kept, capacity).astype(jnp.int32),
        seen=buffer.seen + n,
    )


def sample(buffer: ReplayBuffer, batch_size: int, *, key) -> tuple[Any, jax.Array]:
    """``batch_size`` items drawn uniformly (with replacement) from the filled slots.

    Returns ``(items, weight)``; ``weight [batch_size]`` is 0 everywhere while the buffer is empty.
    """
    check_key("key", key)
    rows = _uniform_below(key, jnp.broadcast_to(jnp.maximum(buffer.filled, 1), (batch_size,)))
    weight = jnp.broadcast_to((buffer.filled > 0).astype(jnp.float32), (batch_size,))
    return jax.tree.map(lambda leaf: leaf[rows], buffer.items), weight
