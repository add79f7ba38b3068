"""What every meta-learner shares: its state, its interface, its losses."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_array, check_same_shape

Params = Any  # A pytree of arrays.
ApplyFn = Callable[[Params, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


class MetaState(NamedTuple):
    """The whole training state of a meta-learner: a pytree of arrays.

    Attributes:
      params: the meta-learned weights of the network.
      opt_state: the outer optimizer's state.
      step: meta-steps taken.
      learner_state: what one learner keeps beyond the weights, of that
        learner's own type (as an optax transform owns its state): Reptile's
        ``ReptileState`` (the carried inner optimizer state), Meta-SGD's
        ``MetaSGDState`` (the learned inner rates), R2D2's ``R2D2State`` (its
        head's learned scale, bias and ridge penalty); ``()`` for learners
        with none (MAML, ProtoNets).
    """

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    learner_state: Any = ()


class MetaContext(NamedTuple):
    """What a registered meta-learner's ``build(options, context)`` is given beyond its own options.

    Attributes:
      apply_fn: ``apply_fn(params, x[batch, ...]) -> [batch, ...]``: the network (its logits, or its
        embeddings for learners registered with ``embeds=True``).
      loss_fn: ``loss_fn(predictions, targets) -> scalar``, the dataset's.
      model: the flax module, for the splits a learner needs it to declare
        (``metajax.models.interfaces``: ANIL's ``head_parameters``).
      ways: classes per task (1 for regression).
      meta_iters: the run's length in meta-steps (for schedules).
      transductive: at evaluation, predict each query set as one batch.
    """

    apply_fn: ApplyFn
    loss_fn: LossFn
    model: Any
    ways: int
    meta_iters: int
    transductive: bool


class MetaLearner(NamedTuple):
    """A meta-learning algorithm as pure functions (in the spirit of optax).

    Attributes:
      init: ``init(params) -> MetaState``.
      step: ``step(state, tasks, *, key) -> (state, metrics)``: one meta-update
        on a ``TaskBatch``.
      adapt: ``adapt(state, support_x, support_y, *, key) -> params``: fine-tunes
        on ONE task's support set with the evaluation inner loop.
      evaluate: ``evaluate(state, tasks, *, key) -> metrics``: adapts on each
        task's support set and scores its query set; per-task arrays ``[tasks]``
        (``loss``, and ``accuracy`` for integer labels).
    """

    init: Callable[..., MetaState]
    step: Callable[..., tuple[MetaState, dict[str, jax.Array]]]
    adapt: Callable[..., Params]
    evaluate: Callable[..., dict[str, jax.Array]]


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of ``[batch, classes]`` logits against ``[batch]`` int labels."""
    batch, _ = check_array("logits", logits, (None, None), "[batch, classes]", dtype="floating")
    check_array("labels", labels, (batch,), "[batch]", dtype="integer")
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over all elements of same-shaped ``predictions`` and ``targets``."""
    check_same_shape(("predictions", "targets"), predictions, targets)
    return jnp.mean(jnp.square(predictions - targets))


def predict_queries(
    apply_fn: ApplyFn, params: Params, support_x: jax.Array, query_x: jax.Array, *, transductive: bool
) -> jax.Array:
    """Predictions for one task's query set under the chosen batch-norm regime.

    Transductive: the query set is one batch, its batch-norm statistics shared.
    Otherwise each query example is predicted in a batch with the support set
    alone, so no query example sees another (the Reptile paper's setting).
    """
    support_shape = check_array("support_x", support_x, (None, ...), "[support, ...]")
    check_array("query_x", query_x, (None, *support_shape[1:]), f"[queries, {', '.join(map(str, support_shape[1:]))}]")
    if transductive:
        return apply_fn(params, query_x)
    # One query at a time (a loop, not a vmap): vmapped, the batches of every query
    # of every task in an evaluation chunk were live at once, the support set
    # copied once per query (ProtoNets, 100 tasks of 5-way 5-shot: about 16 GB).
    return jax.lax.map(lambda q: apply_fn(params, jnp.concatenate([support_x, q[None]]))[-1], query_x)


def task_scores(loss_fn: LossFn, predictions: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
    """``loss``, and ``accuracy`` when the targets are integer class labels."""
    if jnp.issubdtype(jnp.result_type(targets), jnp.integer):  # Class labels: a score per class.
        target_shape = tuple(jnp.shape(targets))
        check_array("predictions", predictions, (*target_shape, None), f"[*targets.shape = {target_shape}, classes]")
    scores = {"loss": loss_fn(predictions, targets)}
    if jnp.issubdtype(targets.dtype, jnp.integer):
        scores["accuracy"] = jnp.mean(jnp.argmax(predictions, axis=-1) == targets)
    return scores
