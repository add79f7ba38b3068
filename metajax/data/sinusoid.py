"""Sinusoid regression tasks (Finn et al. 2017, arXiv 1703.03400, section 5.1).

Each task is ``y = amplitude * sin(x - phase)`` with amplitude in [0.1, 5],
phase in [0, pi] and inputs x uniform in [-5, 5]. It needs no files, which is
why it is the library's embedded default.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metajax.array_checks import check_key
from metajax.data.tasks import TaskBatch

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, jnp.pi)
INPUT_RANGE = (-5.0, 5.0)


def sinusoid_task(amplitude: jax.Array, phase: jax.Array, x: jax.Array) -> jax.Array:
    """The target of one sinusoid task at inputs ``x``."""
    return amplitude * jnp.sin(x - phase)


def _sample_one_task(key: jax.Array, shots: int, query_shots: int):
    amplitude_key, phase_key, x_key = jax.random.split(key, 3)
    amplitude = jax.random.uniform(amplitude_key, (), minval=AMPLITUDE_RANGE[0], maxval=AMPLITUDE_RANGE[1])
    phase = jax.random.uniform(phase_key, (), minval=PHASE_RANGE[0], maxval=PHASE_RANGE[1])
    x = jax.random.uniform(x_key, (shots + query_shots, 1), minval=INPUT_RANGE[0], maxval=INPUT_RANGE[1])
    y = sinusoid_task(amplitude, phase, x)
    return TaskBatch(x[:shots], y[:shots], x[shots:], y[shots:]), amplitude, phase


def sinusoid_sampler(shots: int, query_shots: int) -> Callable[[jax.Array, int], TaskBatch]:
    """Returns ``sample(key, num_tasks) -> TaskBatch`` of sinusoid tasks.

    Inputs and targets have shape ``[tasks, points, 1]``.

    Args:
      shots: points per task in the support set (K in "K-shot regression").
      query_shots: points per task in the query set.
    """
    if shots <= 0 or query_shots < 0:
        raise ValueError(f"shots must be > 0 and query_shots >= 0, got shots={shots}, query_shots={query_shots}")

    def sample(key: jax.Array, num_tasks: int) -> TaskBatch:
        check_key("key", key)
        keys = jax.random.split(key, num_tasks)
        tasks, _, _ = jax.vmap(lambda k: _sample_one_task(k, shots, query_shots))(keys)
        return tasks

    return sample


def sample_sinusoid_parameters(key: jax.Array, num_tasks: int, shots: int, query_shots: int):
    """Like ``sinusoid_sampler`` but also returns each task's amplitude and phase (for plots)."""
    check_key("key", key)
    keys = jax.random.split(key, num_tasks)
    return jax.vmap(lambda k: _sample_one_task(k, shots, query_shots))(keys)
