"""Scoring a meta-learner on many test tasks."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from metajax.array_checks import check_array, check_key
from metajax.data.tasks import TaskBatch
from metajax.train.sharding import to_host

Z_95 = 1.959963984540054  # Two-sided 95% quantile of the standard normal.


def mean_and_ci95(values: np.ndarray) -> tuple[float, float]:
    """The mean of per-task scores and the half-width of its 95% confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(
            f"values must have shape [tasks] with at least 2 tasks for a confidence interval, got shape {values.shape}"
        )
    return float(values.mean()), float(Z_95 * values.std(ddof=1) / np.sqrt(values.size))


def evaluate_tasks(
    evaluate_chunk: Callable[[jax.Array], dict[str, jax.Array]],
    *,
    key: jax.Array,
    num_tasks: int,
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Runs ``evaluate_chunk(key) -> {metric: [chunk_size]}`` until ``num_tasks`` tasks are scored.

    ``evaluate_chunk`` samples ``chunk_size`` tasks from its key and scores them
    (one compiled, vmapped call); chunks keep memory bounded for thousands of
    tasks. Returns per-task arrays of exactly ``num_tasks`` entries. Several
    runs at once (``metajax.train.sweeps``): ``key`` is a key array ``[runs]``,
    ``evaluate_chunk`` gets one key per run and returns ``{metric: [runs,
    chunk_size]}``, and the result is ``[runs, num_tasks]`` (each run's chunks
    drawn from its own key, as it alone would).
    """
    runs = None
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 1:
        runs = key.shape[0]
    else:
        check_key("key", key)
    if num_tasks < 1 or chunk_size < 1:
        raise ValueError(f"num_tasks and chunk_size must be positive, got {num_tasks} and {chunk_size}")
    expected, words = ((chunk_size,), "[chunk_size]") if runs is None else ((runs, chunk_size), "[runs, chunk_size]")
    chunks = []
    for index in range(-(-num_tasks // chunk_size)):
        if runs is None:
            chunk_key = jax.random.fold_in(key, index)
        else:
            chunk_key = jax.vmap(jax.random.fold_in, (0, None))(key, index)
        chunk = to_host(evaluate_chunk(chunk_key))
        for name, values in chunk.items():  # One score per task: a wrong length would be cut silently below.
            check_array(f"evaluate_chunk's {name!r}", values, expected, words)
        chunks.append(chunk)
        if progress is not None:
            progress(chunk_size)
    return {name: np.concatenate([c[name] for c in chunks], axis=-1)[..., :num_tasks] for name in chunks[0]}


def sample_and_evaluate(
    evaluate: Callable[..., dict[str, jax.Array]],
    sample: Callable[[jax.Array, int], TaskBatch],
    chunk_size: int,
    place: Callable[[TaskBatch], TaskBatch] = lambda tasks: tasks,
) -> Callable[..., dict[str, jax.Array]]:
    """``(state, key) -> per-task metrics`` for ``chunk_size`` tasks sampled from ``key``.

    ``place`` may lay the sampled tasks out over devices (``shard_leading_axis``).
    """

    def evaluate_chunk(state, key):
        sample_key, adapt_key = jax.random.split(key)
        return evaluate(state, place(sample(sample_key, chunk_size)), key=adapt_key)

    return evaluate_chunk
