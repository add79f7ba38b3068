"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE).

Tang, Liu, Zhao & Gong, "Progressive Layered Extraction (PLE): A Novel
Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020
(https://doi.org/10.1145/3383313.3412236). Each task has experts of its own
beside the shared ones; task k's gate mixes its own and the shared experts. PLE
stacks such extraction levels, with a shared gate over all experts feeding the
shared experts of the next level; CGC is PLE with one level.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.models.task_stacks import (
    MultiTaskOutput,
    ReluStack,
    SharedParameters,
    Tower,
    check_features,
    softmax_gates,
    stacked,
)


class ExtractionLevel(nn.Module):
    """One PLE level: ``(task_inputs [tasks, batch, d], shared_input [batch, d])`` to the next level's inputs."""

    num_tasks: int
    task_experts: int
    shared_experts: int
    expert_widths: Sequence[int]
    last: bool

    @nn.compact
    def __call__(self, task_inputs: jax.Array, shared_input: jax.Array):
        experts_per_task = stacked(ReluStack, self.task_experts, shared_input=True)
        own = stacked(experts_per_task, self.num_tasks, shared_input=False)(self.expert_widths, name="task_experts")(
            task_inputs
        )  # [tasks, task_experts, batch, width]
        shared = stacked(ReluStack, self.shared_experts, shared_input=True)(self.expert_widths, name="shared_experts")(
            shared_input
        )  # [shared_experts, batch, width]
        candidates = jnp.concatenate([own, jnp.broadcast_to(shared, (self.num_tasks, *shared.shape))], axis=1)
        gate_logits = softmax_gates(
            self.num_tasks, self.task_experts + self.shared_experts, shared_input=False, name="task_gates"
        )(task_inputs)
        gate_weights = jax.nn.softmax(gate_logits, axis=-1)  # [tasks, batch, task_experts + shared_experts]
        next_task_inputs = jnp.einsum("tbe,tebh->tbh", gate_weights, candidates)
        if self.last:
            return next_task_inputs, None, gate_weights
        every_expert = jnp.concatenate([own.reshape(-1, *own.shape[2:]), shared], axis=0)
        shared_gate = nn.Dense(every_expert.shape[0], name="shared_gate")(shared_input)
        next_shared_input = jnp.einsum("be,ebh->bh", jax.nn.softmax(shared_gate, axis=-1), every_expert)
        return next_task_inputs, next_shared_input, gate_weights


class PLE(SharedParameters, nn.Module):
    """``[batch, features] -> MultiTaskOutput([tasks, batch], [tasks, batch, task_experts + shared_experts])``.

    The gate weights returned are those of the last level: per task, its own
    experts first, then the shared ones.

    Attributes:
      num_tasks: number of tasks.
      num_levels: extraction levels (1 is CGC).
      task_experts: experts owned by each task, per level.
      shared_experts: shared experts per level.
      expert_widths: layer widths of each expert.
      tower_hidden: hidden widths of each task's tower.
    """

    num_tasks: int
    num_levels: int = 2
    task_experts: int = 4
    shared_experts: int = 4
    expert_widths: Sequence[int] = (16,)
    tower_hidden: Sequence[int] = (8,)

    @nn.compact
    def __call__(self, x: jax.Array) -> MultiTaskOutput:
        check_features(x, "PLE" if self.num_levels > 1 else "CGC")
        if self.num_levels < 1:
            raise ValueError(f"PLE num_levels must be at least 1, got {self.num_levels}")
        task_inputs, shared_input = jnp.broadcast_to(x, (self.num_tasks, *x.shape)), x
        for level in range(self.num_levels):
            task_inputs, shared_input, gate_weights = ExtractionLevel(
                self.num_tasks,
                self.task_experts,
                self.shared_experts,
                self.expert_widths,
                last=level == self.num_levels - 1,
                name=f"level_{level}",
            )(task_inputs, shared_input)
        towers = stacked(Tower, self.num_tasks, shared_input=False)(self.tower_hidden, name="task_towers")
        return MultiTaskOutput(predictions=towers(task_inputs), gate_weights=gate_weights)


def CGC(num_tasks: int, **kwargs) -> PLE:  # noqa: N802 (a module constructor, named like one)
    """Customized Gate Control: PLE with a single extraction level."""
    return PLE(num_tasks=num_tasks, num_levels=1, **kwargs)
