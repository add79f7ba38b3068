"""Multi-gate Mixture-of-Experts (MMoE) and its one-gate baseline (OMoE).

Ma, Zhao, Yi, Chen, Hong & Chi, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018
(https://doi.org/10.1145/3219819.3220007). Experts are shared by all tasks;
task k mixes their outputs with its own softmax gate g_k(x) = softmax(W_k x),
f_k(x) = sum_i g_k(x)_i expert_i(x), and a tower per task reads f_k(x).
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


class MMoE(SharedParameters, nn.Module):
    """``[batch, features] -> MultiTaskOutput([tasks, batch], [tasks, batch, experts])``.

    Attributes:
      num_tasks: number of tasks (gates and towers).
      num_experts: number of shared experts.
      expert_widths: layer widths of each expert (ReLU after every layer).
      tower_hidden: hidden widths of each task's tower.
      one_gate: one gate shared by every task: the paper's OMoE baseline.
    """

    num_tasks: int
    num_experts: int = 8
    expert_widths: Sequence[int] = (16,)
    tower_hidden: Sequence[int] = (8,)
    one_gate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> MultiTaskOutput:
        check_features(x, "OMoE" if self.one_gate else "MMoE")
        experts = stacked(ReluStack, self.num_experts, shared_input=True)(self.expert_widths, name="shared_experts")
        expert_outputs = experts(x)  # [experts, batch, width]
        num_gates = 1 if self.one_gate else self.num_tasks
        gate_logits = softmax_gates(num_gates, self.num_experts, shared_input=True, name="task_gates")(x)
        gate_weights = jnp.broadcast_to(
            jax.nn.softmax(gate_logits, axis=-1), (self.num_tasks, x.shape[0], self.num_experts)
        )
        task_inputs = jnp.sum(gate_weights[..., None] * expert_outputs.transpose(1, 0, 2)[None], axis=2)
        towers = stacked(Tower, self.num_tasks, shared_input=False)(self.tower_hidden, name="task_towers")
        return MultiTaskOutput(predictions=towers(task_inputs), gate_weights=gate_weights)


def OMoE(num_tasks: int, **kwargs) -> MMoE:  # noqa: N802 (a module constructor, named like one)
    """The paper's one-gate Mixture-of-Experts baseline: MMoE with a single gate shared by all tasks."""
    return MMoE(num_tasks=num_tasks, one_gate=True, **kwargs)
