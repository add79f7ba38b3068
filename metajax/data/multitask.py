"""Rows of examples with one label per task: what the multi-task models train on."""

from typing import NamedTuple

import jax
import numpy as np


class MultiTaskBatch(NamedTuple):
    """Examples and their labels for every task.

    Attributes:
      x: ``[examples, features]`` inputs.
      y: ``[examples, tasks]`` labels (0/1 for binary tasks, floats for regression).
    """

    x: jax.Array | np.ndarray
    y: jax.Array | np.ndarray


class MultiTaskDataset(NamedTuple):
    """Train, validation and test rows of one multi-task problem.

    Attributes:
      train, validation, test: the three splits.
      task_names: one name per label column.
      task_kinds: ``"binary"`` or ``"regression"`` per task.
      feature_names: one name per input column (``"column=value"`` for one-hot columns), if known.
    """

    train: MultiTaskBatch
    validation: MultiTaskBatch
    test: MultiTaskBatch
    task_names: tuple[str, ...]
    task_kinds: tuple[str, ...]
    feature_names: tuple[str, ...] = ()


def check_multitask_batch(batch: MultiTaskBatch, num_tasks: int, name: str = "batch") -> None:
    """Checks ranks and shapes at trace time, naming the field, the expected and the actual shape."""
    if not isinstance(batch, MultiTaskBatch):
        raise TypeError(f"{name} must be a metajax.data.MultiTaskBatch, got {type(batch).__name__}")
    x_shape, y_shape = np.shape(batch.x), np.shape(batch.y)
    if len(x_shape) != 2:
        raise ValueError(f"{name}.x must have shape [examples, features], got shape {x_shape}")
    if y_shape != (x_shape[0], num_tasks):
        raise ValueError(f"{name}.y must have shape [examples, tasks] = {(x_shape[0], num_tasks)}, got shape {y_shape}")
