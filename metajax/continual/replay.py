"""Rehearsal strategies: experience replay and A-GEM, both over an on-device buffer."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Strategy


def _add_to_buffer(policy: str, num_classes: int):
    if policy == "reservoir":
        return replay_buffer.reservoir_add
    if policy == "class-balanced":
        return lambda buffer, x, y, mask, *, key: replay_buffer.class_balanced_add(
            buffer, x, y, mask, key=key, num_classes=num_classes
        )
    raise ValueError(f"buffer policy must be 'reservoir' or 'class-balanced', got {policy!r}")


def replay(
    buffer_size: int, *, features: int, num_outputs: int, policy: str = "reservoir", replay_batch: int | None = None
) -> Strategy:
    """Experience replay (Chaudhry et al. 2019, arXiv 1902.10486; Avalanche's ``Replay``).

    Every training batch is extended with as many examples drawn from a
    fixed-size buffer (``replay_batch`` to change that); the buffer takes each
    experience's examples when it ends, by reservoir sampling or class-balanced.
    """
    add = _add_to_buffer(policy, num_outputs)

    def augment(buffer, batch, key):
        x, y, mask, weight = replay_buffer.sample(buffer, replay_batch or batch.x.shape[0], key=key)
        return ContinualBatch(*(jnp.concatenate(pair) for pair in zip(batch, (x, y, mask, weight), strict=True)))

    def after_experience(buffer, params, experience, key):
        return add(buffer, experience.x, experience.y, experience.logit_mask, key=key)

    return Strategy(
        init=lambda params: replay_buffer.empty_buffer(buffer_size, features, num_outputs),
        augment=augment,
        after_experience=after_experience,
    )


def agem(
    memory_size: int, *, features: int, num_outputs: int, reference_batch: int = 256, policy: str = "reservoir"
) -> Strategy:
    """Averaged gradient episodic memory (Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, arXiv 1812.00420).

    When the gradient g of the current batch conflicts with the gradient g_ref
    on ``reference_batch`` examples from the memory (g . g_ref < 0), it is
    projected: g - (g . g_ref) / (g_ref . g_ref) g_ref.
    """
    add = _add_to_buffer(policy, num_outputs)

    def project(grads, params, memory, key, data_loss):
        x, y, mask, weight = replay_buffer.sample(memory, reference_batch, key=key)
        reference = jax.grad(data_loss)(params, ContinualBatch(x, y, mask, weight))
        dot = sum(jnp.vdot(g, r) for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True))
        norm = sum(jnp.vdot(r, r) for r in jax.tree.leaves(reference))
        scale = jnp.where((dot < 0) & (memory.filled > 0), dot / jnp.maximum(norm, 1e-20), 0.0)
        return jax.tree.map(lambda g, r: g - scale * r, grads, reference)

    def after_experience(memory, params, experience, key):
        return add(memory, experience.x, experience.y, experience.logit_mask, key=key)

    return Strategy(
        init=lambda params: replay_buffer.empty_buffer(memory_size, features, num_outputs),
        project=project,
        after_experience=after_experience,
    )
