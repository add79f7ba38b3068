"""N-way K-shot classification tasks drawn on device from a ``jax.random`` key."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metajax.array_checks import check_key
from metajax.data.tasks import TaskBatch


def random_subset(key: jax.Array, population: int, size: int) -> jax.Array:
    """``size`` distinct integers from ``range(population)`` in uniformly random order.

    The indices of the ``size`` largest of ``population`` random 32-bit words:
    a top-k is linear in ``population``, where ``jax.random.choice(replace=False)``
    sorts it (40x slower for Omniglot's 3856 classes on CPU). Ties between words
    (rare) are broken by index, which keeps the indices distinct.
    """
    return jax.lax.top_k(jax.random.bits(key, (population,), jnp.uint32), size)[1]


def few_shot_sampler(
    images: jax.Array, ways: int, shots: int, query_shots: int
) -> Callable[[jax.Array, int], TaskBatch]:
    """Returns ``sample(key, num_tasks) -> TaskBatch`` of N-way K-shot tasks.

    Each task picks ``ways`` distinct classes and, inside each class,
    ``shots + query_shots`` distinct examples (without replacement). The label
    of a class is its position in the random draw, so labels are a fresh random
    permutation per task. Support and query sets are shuffled, so no learner
    can lean on the class-major order.

    Args:
      images: ``[classes, examples_per_class, *example_shape]`` the class bank,
        already on device.
      ways: classes per task (N).
      shots: support examples per class (K).
      query_shots: query examples per class.

    Raises:
      ValueError: when the bank cannot supply such tasks.
    """
    if images.ndim < 3:
        raise ValueError(
            f"images must have shape [classes, examples_per_class, *example_shape], got shape {images.shape}"
        )
    num_classes, per_class = images.shape[:2]
    if ways < 1 or shots < 1 or query_shots < 0:
        raise ValueError(f"need ways >= 1, shots >= 1, query_shots >= 0; got {ways=}, {shots=}, {query_shots=}")
    if ways > num_classes:
        raise ValueError(f"ways={ways} is more than the {num_classes} classes available in the data")
    if shots + query_shots > per_class:
        raise ValueError(
            f"shots + query_shots = {shots} + {query_shots} = {shots + query_shots} is more than the "
            f"{per_class} examples per class in the data"
        )
    example_shape = images.shape[2:]
    per_task = shots + query_shots

    def sample_one(key: jax.Array) -> TaskBatch:
        class_key, example_key, support_key, query_key = jax.random.split(key, 4)
        classes = random_subset(class_key, num_classes, ways)
        example_keys = jax.random.split(example_key, ways)
        examples = jax.vmap(lambda k: random_subset(k, per_class, per_task))(example_keys)
        chosen = images[classes[:, None], examples]  # [ways, per_task, *example_shape]
        labels = jnp.broadcast_to(jnp.arange(ways, dtype=jnp.int32)[:, None], (ways, per_task))

        def flat_shuffled(key, x, y):
            order = jax.random.permutation(key, x.shape[0] * x.shape[1])
            return x.reshape((-1, *example_shape))[order], y.reshape(-1)[order]

        support_x, support_y = flat_shuffled(support_key, chosen[:, :shots], labels[:, :shots])
        query_x, query_y = flat_shuffled(query_key, chosen[:, shots:], labels[:, shots:])
        return TaskBatch(support_x, support_y, query_x, query_y)

    def sample(key: jax.Array, num_tasks: int) -> TaskBatch:
        check_key("key", key)
        return jax.vmap(sample_one)(jax.random.split(key, num_tasks))

    return sample
