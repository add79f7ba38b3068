"""Rehearsal strategies: experience replay and A-GEM, both over an on-device buffer."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Strategy

BUFFER_UPDATES = ("experience", "step")


def _buffer_strategy(capacity: int, features: int, num_outputs: int, policy: str, update: str) -> Strategy:
    """The buffer part both rehearsal strategies share: an empty buffer at first, then each
    experience offered to it when the experience ends (``update="experience"``) or each
    training batch after its step (``"step"``)."""
    if policy == "reservoir":
        add = replay_buffer.reservoir_add
    elif policy == "class-balanced":
        add = functools.partial(replay_buffer.class_balanced_add, num_classes=num_outputs)
    else:
        raise ValueError(f"buffer policy must be 'reservoir' or 'class-balanced', got {policy!r}")

    if update not in BUFFER_UPDATES:
        raise ValueError(f"buffer update must be one of {', '.join(BUFFER_UPDATES)}, got {update!r}")

    def after_experience(buffer, params, experience, key):
        return add(buffer, experience.x, experience.y, experience.logit_mask, key=key)

    def observe(buffer, batch, key):
        return add(buffer, batch.x, batch.y, batch.logit_mask, key=key)

    buffer = Strategy(init=lambda params: replay_buffer.empty_buffer(capacity, features, num_outputs))
    return buffer._replace(observe=observe) if update == "step" else buffer._replace(after_experience=after_experience)


def replay(
    buffer_size: int,
    *,
    features: int,
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
        x, y, mask, weight = replay_buffer.sample(buffer, replay_batch or batch.x.shape[0], key=key)
        return ContinualBatch(*(jnp.concatenate(pair) for pair in zip(batch, (x, y, mask, weight), strict=True)))

    return _buffer_strategy(buffer_size, features, num_outputs, policy, update)._replace(augment=augment)


def agem(
    memory_size: int,
    *,
    features: int,
    num_outputs: int,
    reference_batch: int = 256,
    policy: str = "reservoir",
    update: str = "experience",
) -> Strategy:
    """Averaged gradient episodic memory (Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, arXiv 1812.00420).

    When the gradient g of the current batch conflicts with the gradient g_ref
    on ``reference_batch`` examples from the memory (g . g_ref < 0), it is
    projected: g - (g . g_ref) / (g_ref . g_ref) g_ref. The memory is updated as
    ``replay``'s buffer (``update``).
    """

    def project(grads, params, memory, key, data_loss):
        x, y, mask, weight = replay_buffer.sample(memory, reference_batch, key=key)
        reference = jax.grad(data_loss)(params, ContinualBatch(x, y, mask, weight))
        dot = sum(jnp.vdot(g, r) for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True))
        norm = sum(jnp.vdot(r, r) for r in jax.tree.leaves(reference))
        scale = jnp.where((dot < 0) & (memory.filled > 0), dot / jnp.maximum(norm, 1e-20), 0.0)
        return jax.tree.map(lambda g, r: g - scale * r, grads, reference)

    return _buffer_strategy(memory_size, features, num_outputs, policy, update)._replace(project=project)
