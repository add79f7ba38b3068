"""Building blocks of multi-task models: modules stacked along an expert or task axis.

A stack of ``count`` identical modules is one module whose parameters carry a
leading axis of size ``count`` (``flax.linen.vmap``): the experts of a mixture,
or the gates and towers of the tasks, run as one batched computation instead of
a Python loop.
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax

from metajax.models.interfaces import SharedParameters as SharedParameters  # noqa: F401
from metajax.models.interfaces import parameters_under as parameters_under  # noqa: F401


class MultiTaskOutput(NamedTuple):
    """What every multi-task model returns.

    Attributes:
      predictions: ``[tasks, batch]`` one output per task and example (a logit
        for binary tasks, the value for regression tasks).
      gate_weights: ``[tasks, batch, experts]`` how much each task's gate gives
        each expert (rows sum to 1), or ``None`` for models without gates
        (shared-bottom).
    """

    predictions: jax.Array
    gate_weights: jax.Array | None


class ReluStack(nn.Module):
    """Dense layers with a ReLU after every one, the output included: an expert or a shared bottom."""

    widths: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(x))
        return x


class Tower(nn.Module):
    """A task's head: ReLU hidden layers then one linear output, ``[batch, in] -> [batch]``."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = ReluStack(self.hidden)(x)
        return nn.Dense(1)(x)[..., 0]


def stacked(module: type[nn.Module], count: int, *, shared_input: bool) -> type[nn.Module]:
    """``module`` repeated ``count`` times along a new leading parameter and output axis.

    Args:
      module: the flax module class to repeat.
      count: the size of the new axis (experts or tasks).
      shared_input: True when all copies read the same input; False when the
        input has the same leading axis of size ``count`` (one input per copy).
    """
    return nn.vmap(
        module,
        in_axes=None if shared_input else 0,
        out_axes=0,
        axis_size=count,
        variable_axes={"params": 0},
        split_rngs={"params": True},
    )


def softmax_gates(count: int, experts: int, *, shared_input: bool, name: str) -> nn.Module:
    """``count`` linear gates over ``experts`` experts, as one stacked ``Dense`` (softmax applied by the caller)."""
    return stacked(nn.Dense, count, shared_input=shared_input)(experts, name=name)


def check_features(x: jax.Array, model: str) -> None:
    """A multi-task model reads ``[batch, features]`` rows."""
    if x.ndim != 2:
        raise ValueError(f"{model} input x must have shape [batch, features], got shape {x.shape}")
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        raise TypeError(f"{model} input x must be a floating-point array, got dtype {x.dtype}")
