"""Per-task losses: one task's predictions and labels to a scalar, vmapped over tasks by the trainer."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_array, check_same_shape

TaskLoss = Callable[[jax.Array, jax.Array], jax.Array]


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean sigmoid cross-entropy of ``[batch]`` logits against ``[batch]`` labels in {0, 1}."""
    check_array("logits", logits, (None,), "[batch]", dtype="floating")
    check_same_shape(("logits", "labels"), logits, labels)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean of ``(predictions - targets)^2`` over ``[batch]``."""
    check_array("predictions", predictions, (None,), "[batch]", dtype="floating")
    check_same_shape(("predictions", "targets"), predictions, targets)
    return jnp.mean(jnp.square(predictions - targets))


TASK_LOSSES: dict[str, TaskLoss] = {"binary": binary_cross_entropy, "regression": mean_squared_error}
