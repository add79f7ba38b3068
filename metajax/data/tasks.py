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


def check_task_batch(tasks: TaskBatch, name: str = "tasks", *, need_queries: bool = True) -> None:
    """Checks the ranks, shapes and dtypes of a ``TaskBatch`` at trace time.

    ``need_queries=False`` accepts an empty query set (Reptile trains on support sets alone).

    Raises:
      ValueError: naming the field, the expected and the actual shape
        (support and query sets must not be empty: an empty query set would
        score as NaN).
      TypeError: inputs that are not floating point, or support and query
        targets of different dtypes.
    """
    if not isinstance(tasks, TaskBatch):
        raise TypeError(f"{name} must be a metajax.data.TaskBatch, got {type(tasks).__name__}")
    support_x, support_y, query_x, query_y = (jax.numpy.shape(a) for a in tasks)
    if len(support_x) < 3 or 0 in support_x[:2]:
        raise ValueError(
            f"{name}.support_x must have shape [tasks, support_size, *example_shape] with tasks, support_size "
            f">= 1, got shape {support_x}"
        )
    if len(query_x) < 2 or (need_queries and query_x[1] == 0):
        raise ValueError(
            f"{name}.query_x must have shape [tasks, query_size, *example_shape]"
            f"{' with query_size >= 1' if need_queries else ''}, got shape {query_x}"
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
    check_array(f"{name}.support_x", tasks.support_x, dtype="floating")
    check_array(f"{name}.query_x", tasks.query_x, dtype="floating")
    support_dtype, query_dtype = jax.numpy.result_type(tasks.support_y), jax.numpy.result_type(tasks.query_y)
    if support_dtype != query_dtype:
        raise TypeError(
            f"{name}.support_y and {name}.query_y must have one dtype, got {support_dtype} and {query_dtype}"
        )


def check_support_set(support_x: jax.Array, support_y: jax.Array) -> None:
    """Checks ONE task's support set: ``support_x [support_size, *example_shape]``, ``support_y [support_size, ...]``.

    Raises:
      ValueError: naming the argument, the expected and the actual shape.
    """
    x_shape = check_array("support_x", support_x, (None, None, ...), "[support_size, *example_shape]", dtype="floating")
    check_array("support_y", support_y, (x_shape[0], ...), "[support_size, ...]")
