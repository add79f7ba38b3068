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
    if num_examples < 1:
        raise ValueError(f"a task's support set must hold at least one example, got {num_examples}")
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


def resolve_mask(mask, params: Params):
    """A pytree of bools like ``params`` from ``mask``: ``None`` (all), a pytree, or ``mask(params)`` (as optax).

    Raises:
      ValueError: the mask selects no parameter (an inner loop that would move nothing).
    """
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    selected = mask(params) if callable(mask) else mask
    if not any(jax.tree.leaves(selected)):
        raise ValueError("adapt_mask selects no parameters: the inner loop would move nothing")
    return selected


def make_gradient_descent_adapt(
    apply_fn: ApplyFn, loss_fn: LossFn, steps: int, *, second_order_steps: int, adapt_mask=None
) -> Callable[..., tuple[Params, jax.Array]]:
    """Returns ``adapt(params, learning_rates, x, y) -> (adapted, losses[steps])`` for ONE task.

    MAML's inner loop: ``steps`` full-batch gradient-descent steps on ``(x, y)``,
    ``p <- p - lr * grad``, as ``lax.scan``. ``learning_rates`` is a scalar or a
    pytree like ``params`` (Meta-SGD's per-parameter rates).

    Only the parameters selected by ``adapt_mask`` (see ``resolve_mask``) move;
    the others are held fixed and their inner gradients never computed (ANIL).

    Gradients of the result flow through the last ``second_order_steps`` steps
    (MAML's second-order terms); the earlier steps' gradients are treated as
    constants, so through them ``d adapted / d params`` is the identity, as in
    first-order MAML. ``second_order_steps=0`` is first-order MAML throughout.
    ``losses[i]`` is the loss before step ``i``.
    """
    if steps < 1:
        raise ValueError(f"inner steps must be >= 1, got {steps}")
    if not 0 <= second_order_steps <= steps:
        raise ValueError(f"second_order_steps must be in [0, inner steps = {steps}], got {second_order_steps}")

    def adapt(params: Params, learning_rates, x: jax.Array, y: jax.Array) -> tuple[Params, jax.Array]:
        leaves, treedef = jax.tree.flatten(params)
        moving = treedef.flatten_up_to(resolve_mask(adapt_mask, params))  # type: ignore[attr-defined]  # (missing from jax's stubs)
        if jax.tree_util.treedef_is_leaf(jax.tree.structure(learning_rates)):  # One rate for every parameter.
            rates = [learning_rates] * len(leaves)
        else:
            rates = treedef.flatten_up_to(learning_rates)  # type: ignore[attr-defined]  # (missing from jax's stubs)
        rates = [rate for rate, move in zip(rates, moving, strict=True) if move]

        def merge(adapted: list[jax.Array]) -> Params:
            adapted_iter = iter(adapted)
            return treedef.unflatten(  # type: ignore[attr-defined]  # (missing from jax's stubs)
                [next(adapted_iter) if move else leaf for leaf, move in zip(leaves, moving, strict=True)]
            )

        def loss(adapted: list[jax.Array]) -> jax.Array:
            return loss_fn(apply_fn(merge(adapted), x), y)

        def descend(adapted: list[jax.Array], num_steps: int, second_order: bool):
            def step(adapted, _):
                value, grads = jax.value_and_grad(loss)(adapted)
                if not second_order:
                    grads = lax.stop_gradient(grads)
                return [p - rate * g for p, rate, g in zip(adapted, rates, grads, strict=True)], value

            if num_steps == 0:
                return adapted, jnp.zeros((0,), x.dtype)
            return lax.scan(step, adapted, None, length=num_steps)

        adapted = [leaf for leaf, move in zip(leaves, moving, strict=True) if move]
        adapted, early_losses = descend(adapted, steps - second_order_steps, second_order=False)
        adapted, late_losses = descend(adapted, second_order_steps, second_order=True)
        return merge(adapted), jnp.concatenate([early_losses, late_losses])

    return adapt
