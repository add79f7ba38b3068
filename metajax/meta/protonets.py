"""Prototypical Networks (Snell, Swersky & Zemel 2017, "Prototypical Networks
for Few-shot Learning", https://arxiv.org/abs/1703.05175).

No inner loop: an embedding network maps the support set to one prototype per
class (the mean of its embeddings), and a query example's logits are the
negative squared Euclidean distances to the prototypes. The embedding is
trained by the outer optimizer on the query cross-entropy of each episode.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_array, check_key
from metajax.data.tasks import TaskBatch, check_support_set, check_task_batch
from metajax.meta.base import (
    ApplyFn,
    MetaContext,
    MetaLearner,
    MetaState,
    Params,
    predict_queries,
    softmax_cross_entropy,
    task_scores,
)
from metajax.options import option
from metajax.registry import META_LEARNERS


@dataclasses.dataclass(frozen=True)
class OuterOptimizerOptions:
    """The options of a learner with no inner loop: the outer Adam's rate (the papers': 1e-3)."""

    meta_lr: float = option(1e-3, "the outer Adam optimizer's learning rate", above=0)


def prototypes(embeddings: jax.Array, labels: jax.Array, ways: int) -> jax.Array:
    """``[ways, dim]`` class means of ``[n, dim]`` embeddings with ``[n]`` labels in ``[0, ways)``."""
    n, _ = check_array("embeddings", embeddings, (None, None), "[n, dim]", dtype="floating")
    check_array("labels", labels, (n,), "[n]", dtype="integer")
    one_hot = jax.nn.one_hot(labels, ways, dtype=embeddings.dtype)
    counts = one_hot.sum(axis=0)
    # A class absent from the support set has no prototype; dividing by 1
    # leaves it at the origin rather than NaN (samplers never produce it).
    return (one_hot.T @ embeddings) / jnp.maximum(counts, 1.0)[:, None]


def prototype_logits(query_embeddings: jax.Array, class_prototypes: jax.Array) -> jax.Array:
    """``[queries, ways]`` negative squared Euclidean distances."""
    _, dim = check_array("class_prototypes", class_prototypes, (None, None), "[ways, dim]", dtype="floating")
    check_array("query_embeddings", query_embeddings, (None, dim), "[queries, dim]", dtype="floating")
    differences = query_embeddings[:, None, :] - class_prototypes[None, :, :]
    return -jnp.sum(jnp.square(differences), axis=-1)


def check_class_labels(tasks: TaskBatch) -> None:
    """A task batch whose support labels are ``[tasks, support_size]`` integer classes."""
    check_task_batch(tasks)
    check_array("tasks.support_y", tasks.support_y, (None, None), "[tasks, support_size] class labels", dtype="integer")


def unadapted(state: MetaState, support_x: jax.Array, support_y: jax.Array, *, key: jax.Array) -> Params:
    """``adapt`` of a learner without an inner loop: the weights unchanged."""
    check_support_set(support_x, support_y)  # Unused, but a wrong call is still an error.
    check_key("key", key)
    return state.params


def protonets(
    embed_fn: ApplyFn, *, ways: int, outer_optimizer: optax.GradientTransformation, transductive: bool = False
) -> MetaLearner:
    """Builds Prototypical Networks as pure functions.

    Args:
      embed_fn: ``embed_fn(params, x[batch, ...]) -> [batch, dim]`` embeddings
        (e.g. ``Conv4(num_classes=None).apply``).
      ways: classes per task; support and query labels lie in ``[0, ways)``.
      outer_optimizer: trains the embedding (the paper: ``optax.adam(1e-3)``).
      transductive: at evaluation, embed the query set as one batch; otherwise
        each query example is embedded in a batch with the support set alone.
        Meta-training embeds the support and the query set as one batch each.

    Returns:
      A ``MetaLearner`` whose ``adapt`` returns the weights unchanged (there is
      no inner loop); ``step`` metrics: ``query_loss`` and ``query_accuracy``.
    """
    if ways < 2:
        raise ValueError(f"ways must be >= 2 for a classifier, got {ways}")

    def logits(params, support_x, support_y, query_x, *, transductive):
        class_prototypes = prototypes(embed_fn(params, support_x), support_y, ways)
        query_embeddings = predict_queries(embed_fn, params, support_x, query_x, transductive=transductive)
        return prototype_logits(query_embeddings, class_prototypes)

    def task_loss(params, support_x, support_y, query_x, query_y):
        scores = task_scores(
            softmax_cross_entropy, logits(params, support_x, support_y, query_x, transductive=True), query_y
        )
        return scores["loss"], scores["accuracy"]

    def meta_loss(params, tasks: TaskBatch):
        losses, accuracies = jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(params, *tasks)
        return jnp.mean(losses), {"query_loss": jnp.mean(losses), "query_accuracy": jnp.mean(accuracies)}

    def init(params: Params) -> MetaState:
        return MetaState(params=params, opt_state=outer_optimizer.init(params), step=jnp.zeros((), jnp.int32))

    def step(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> tuple[MetaState, dict[str, jax.Array]]:
        """One meta-update; ``key`` is unused (nothing random) but kept for a common interface."""
        check_class_labels(tasks)
        check_key("key", key)
        (_, metrics), grads = jax.value_and_grad(meta_loss, has_aux=True)(state.params, tasks)
        updates, opt_state = outer_optimizer.update(grads, state.opt_state, state.params)
        return state._replace(
            params=optax.apply_updates(state.params, updates), opt_state=opt_state, step=state.step + 1
        ), metrics

    def evaluate_one(params, support_x, support_y, query_x, query_y):
        task_logits = logits(params, support_x, support_y, query_x, transductive=transductive)
        return task_scores(softmax_cross_entropy, task_logits, query_y)

    def evaluate(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> dict[str, jax.Array]:
        check_class_labels(tasks)
        check_key("key", key)
        return jax.vmap(evaluate_one, in_axes=(None, 0, 0, 0, 0))(state.params, *tasks)

    return MetaLearner(init=init, step=step, adapt=unadapted, evaluate=evaluate)


@META_LEARNERS.register(
    "protonets",
    hyperparams=OuterOptimizerOptions,
    description="Prototypical Networks (Snell et al. 2017): classify by distance to class means; no inner loop.",
    embeds=True,
    needs_classes=True,
)
def build_protonets(options: OuterOptimizerOptions, context: MetaContext) -> MetaLearner:
    return protonets(
        context.apply_fn,
        ways=context.ways,
        outer_optimizer=optax.adam(options.meta_lr),
        transductive=context.transductive,
    )
