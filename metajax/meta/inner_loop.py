"""The inner loop shared by the optimisation-based meta-learners."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metajax.meta.base import ApplyFn, LossFn, Params


def minibatch_indices(key: jax.Array, num_examples: int, batch_size: int, num_batches: int) -> jax.Array:
    """``[num_batches, batch_size]`` indices that sweep shuffled epochs of the data.

    As Reptile's ``_mini_batches``: shuffle, cut batches in order, reshuffle when
    the data runs out; a batch may straddle two epochs.
    """
    total = batch_size * num_batches
    epochs = -(-total // num_examples)
    orders = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(jax.random.split(key, epochs))
    return orders.reshape(-1)[:total].reshape(num_batches, batch_size)


def make_adapt(
    apply_fn: ApplyFn, loss_fn: LossFn, optimizer: optax.GradientTransformation, steps: int, batch_size: int
) -> Callable[..., tuple[Params, optax.OptState, jax.Array]]:
    """Returns ``adapt(params, opt_state, x, y, *, key) -> (params, opt_state, losses[steps])`` for ONE task.

    ``steps`` optimizer steps on ``batch_size`` mini-batches, as one ``lax.scan``,
    starting from the given optimizer state.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"inner steps and inner batch must be >= 1, got steps={steps}, batch_size={batch_size}")

    def batch_loss(params, x, y):
        return loss_fn(apply_fn(params, x), y)

    def adapt(
        params: Params, opt_state: optax.OptState, x: jax.Array, y: jax.Array, *, key: jax.Array
    ) -> tuple[Params, optax.OptState, jax.Array]:
        batches = minibatch_indices(key, x.shape[0], batch_size, steps)

        def inner_step(carry, batch):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(batch_loss)(params, jnp.take(x, batch, axis=0), jnp.take(y, batch, axis=0))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (adapted, opt_state), losses = lax.scan(inner_step, (params, opt_state), batches)
        return adapted, opt_state, losses

    return adapt


def mean_over_tasks(tree):
    """Averages a pytree with a leading task axis; integer leaves (step counts) are equal across tasks."""
    return jax.tree.map(lambda a: a[0] if jnp.issubdtype(a.dtype, jnp.integer) else jnp.mean(a, axis=0), tree)
