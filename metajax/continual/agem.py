"""Averaged gradient episodic memory (A-GEM) over an on-device buffer."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Strategy, StrategyContext
from metajax.continual.replay import BufferOptions, buffer_strategy, buffered_example
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


def agem(
    memory_size: int,
    *,
    example_shape: tuple[int, ...],
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
        rows, weight = replay_buffer.sample(memory, reference_batch, key=key)
        reference = jax.grad(data_loss)(params, ContinualBatch(rows.x, rows.y, rows.logit_mask, weight))
        dot = sum(jnp.vdot(g, r) for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True))
        norm = sum(jnp.vdot(r, r) for r in jax.tree.leaves(reference))
        scale = jnp.where((dot < 0) & (memory.filled > 0), dot / jnp.maximum(norm, 1e-20), 0.0)
        return jax.tree.map(lambda g, r: g - scale * r, grads, reference)

    example = buffered_example(example_shape, num_outputs)
    return buffer_strategy(memory_size, example, num_outputs, policy, update)._replace(project=project)


@dataclasses.dataclass(frozen=True)
class AGEMOptions(BufferOptions):
    reference_batch: int = option(256, "memory examples of A-GEM's reference gradient", minimum=1)


@CONTINUAL_STRATEGIES.register(
    "agem",
    hyperparams=AGEMOptions,
    description="A-GEM (Chaudhry et al. 2019): project away gradient components that raise the memory's loss.",
)
def build_agem(options: AGEMOptions, context: StrategyContext) -> Strategy:
    options.check_against(context)
    return agem(
        options.buffer_size,
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        reference_batch=options.reference_batch,
        policy=options.buffer_policy,
        update=options.buffer_update,
    )
