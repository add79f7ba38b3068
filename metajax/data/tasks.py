"""The batch of tasks every meta-learner consumes."""

from typing import NamedTuple

import jax

from metajax.array_checks import check_array


class TaskBatch(NamedTuple):
    """A batch of few-shot tasks with a leading task axis.

    Attributes:
      support_x: ``[tasks, support_size, *example_shape]`` inputs the learner
        adapts on.
      support_y: ``[tasks, support_size, *target_shape]`` their targets (int
        class labels for classification, floats for regression).
      query_x: ``[tasks, query_size, *example_shape]`` held-out inputs the
        adapted learner is scored on.
      query_y: ``[tasks, query_size, *target_shape]`` their targets.
    """

    support_x: jax.Array
    support_y: jax.Array
    query_x: jax.Array
    query_y: jax.Array

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]


def check_task_batch(tasks: TaskBatch, name: str = "tasks") -> None:
    """Checks the ranks and shapes of a ``TaskBatch`` at trace time.

    Raises:
      ValueError: naming the field, the expected and the actual shape.
    """
    if not isinstance(tasks, TaskBatch):
        raise TypeError(f"{name} must be a metajax.data.TaskBatch, got {type(tasks).__name__}")
    support_x, support_y, query_x, query_y = (jax.numpy.shape(a) for a in tasks)
    if len(support_x) < 3:
        raise ValueError(
            f"{name}.support_x must have shape [tasks, support_size, *example_shape], got shape {support_x}"
        )
    if support_y[:2] != support_x[:2]:
        raise ValueError(
            f"{name}.support_y must have shape [tasks, support_size, ...] = {support_x[:2]} + ..., "
            f"got shape {support_y}"
        )
    if query_x[0] != support_x[0] or query_x[2:] != support_x[2:]:
        raise ValueError(
            f"{name}.query_x must have shape [{support_x[0]}, query_size, *{support_x[2:]}] "
            f"(same tasks and example shape as support_x), got shape {query_x}"
        )
    if query_y[:2] != query_x[:2] or query_y[2:] != support_y[2:]:
        raise ValueError(f"{name}.query_y must have shape {query_x[:2] + support_y[2:]}, got shape {query_y}")


def check_support_set(support_x: jax.Array, support_y: jax.Array) -> None:
    """Checks ONE task's support set: ``support_x [support_size, *example_shape]``, ``support_y [support_size, ...]``.

    Raises:
      ValueError: naming the argument, the expected and the actual shape.
    """
    x_shape = check_array("support_x", support_x, (None, None, ...), "[support_size, *example_shape]")
    check_array("support_y", support_y, (x_shape[0], ...), "[support_size, ...]")
