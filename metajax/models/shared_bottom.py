"""The shared-bottom multi-task model (Caruana 1997), MMoE's main baseline."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.models.task_stacks import MultiTaskOutput, ReluStack, SharedParameters, Tower, check_features, stacked


class SharedBottom(SharedParameters, nn.Module):
    """One bottom network shared by all tasks, a tower per task on top.

    Attributes:
      num_tasks: number of towers.
      bottom_widths: layer widths of the shared bottom (ReLU after every layer).
      tower_hidden: hidden widths of each task's tower.
    """

    num_tasks: int
    bottom_widths: Sequence[int] = (128,)
    tower_hidden: Sequence[int] = (8,)

    @nn.compact
    def __call__(self, x: jax.Array) -> MultiTaskOutput:
        check_features(x, "SharedBottom")
        shared = ReluStack(self.bottom_widths, name="shared_bottom")(x)
        task_inputs = jnp.broadcast_to(shared, (self.num_tasks, *shared.shape))
        towers = stacked(Tower, self.num_tasks, shared_input=False)(self.tower_hidden, name="task_towers")
        return MultiTaskOutput(predictions=towers(task_inputs), gate_weights=None)
