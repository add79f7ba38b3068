"""R2-D2 (Bertinetto, Henriques, Torr & Vedaldi 2019, "Meta-learning with
differentiable closed-form solvers", https://arxiv.org/abs/1805.08136).

An embedding network and, for each task, a ridge-regression classifier solved
in closed form on the embedded support set: with ``X [n, d + 1]`` the support
embeddings with a column of ones appended (the regression's bias) and
``Y [n, ways]`` their one-hot labels,

    W = argmin ||X W - Y||^2 / n + penalty ||W||^2
      = X^T (X X^T + n penalty I_n)^-1 Y

(Woodbury's identity: an ``n x n`` system, ``n = ways * shots`` far smaller
than the embedding's ``d``), and the query logits are ``scale * X' W + bias``.
Ridge regression's outputs are not calibrated for a softmax, hence the
learned ``scale`` and ``bias``. The squared error is a mean over the support
set, as the authors' code divides ``X`` and ``Y`` by ``sqrt(n)``, so one
penalty suits every shot count; their code keeps the penalty at 50 and
starts the scale at 10 for Omniglot (the defaults here), and the paper
meta-learns the penalty as well (``learn_penalty``). The scalars are R2D2's
own state (``R2D2State``, in ``MetaState.learner_state``), trained by the
outer optimizer with the embedding on the query cross-entropy,
differentiated through the solve. Scale and penalty are learned in log
space (they must stay positive); the authors' code learns the scale as is.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_array, check_key, is_traced
from metajax.data.tasks import TaskBatch
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
from metajax.meta.protonets import check_class_labels, unadapted
from metajax.options import option
from metajax.registry import META_LEARNERS


class R2D2State(NamedTuple):
    """R2D2's learned head, three scalars kept in log space where they must stay positive.

    Attributes:
      log_scale: ``log(scale)`` of the logits.
      bias: added to every logit.
      log_penalty: ``log(penalty)``, the ridge regression's L2 penalty.
    """

    log_scale: jax.Array
    bias: jax.Array
    log_penalty: jax.Array

    @property
    def scale(self) -> jax.Array:
        return jnp.exp(self.log_scale)

    @property
    def penalty(self) -> jax.Array:
        return jnp.exp(self.log_penalty)


@dataclasses.dataclass(frozen=True)
class R2D2Options:
    """R2D2's options; defaults are the authors' Omniglot settings (``bertinetto/r2d2``): Adam 5e-3 halved
    every 2000 steps, the penalty fixed at 50, the scale starting at 10."""

    meta_lr: float = option(5e-3, "the outer Adam optimizer's initial learning rate", above=0)
    meta_lr_halving_every: int = option(2000, "meta-steps between halvings of the outer learning rate", minimum=1)
    initial_scale: float = option(10.0, "the logits' scale at the start (learned)", above=0)
    initial_penalty: float = option(50.0, "the ridge penalty (its start, with --learn-penalty)", above=0)
    learn_penalty: bool = option(False, "meta-learn the ridge penalty too, as the paper does")


def with_ones(embeddings: jax.Array) -> jax.Array:
    """``[n, dim] -> [n, dim + 1]``: a column of ones appended, the regression's bias."""
    return jnp.concatenate([embeddings, jnp.ones((embeddings.shape[0], 1), embeddings.dtype)], axis=1)


def ridge_regression_weights(embeddings: jax.Array, targets: jax.Array, penalty: jax.Array) -> jax.Array:
    """``[dim, outputs]`` minimising ``||X W - Y||^2 / n + penalty ||W||^2`` for ``[n, dim]`` embeddings X
    and ``[n, outputs]`` targets Y.

    The dual (Woodbury) form ``X^T (X X^T + n penalty I)^-1 Y``: one ``n x n`` positive-definite solve.
    """
    n, _ = check_array("embeddings", embeddings, (None, None), "[n, dim]", dtype="floating")
    check_array("targets", targets, (n, None), "[n, outputs]", dtype="floating")
    gram = embeddings @ embeddings.T + n * penalty * jnp.eye(n, dtype=embeddings.dtype)
    return embeddings.T @ jax.scipy.linalg.solve(gram, targets, assume_a="pos")


def r2d2_logits(
    support_embeddings: jax.Array, support_y: jax.Array, query_embeddings: jax.Array, head: R2D2State, ways: int
) -> jax.Array:
    """``[queries, ways]`` logits of the ridge classifier solved on one task's embedded support set."""
    _, dim = check_array("support_embeddings", support_embeddings, (None, None), "[support, dim]", dtype="floating")
    check_array("query_embeddings", query_embeddings, (None, dim), f"[queries, {dim}]", dtype="floating")
    targets = jax.nn.one_hot(support_y, ways, dtype=support_embeddings.dtype)
    weights = ridge_regression_weights(with_ones(support_embeddings), targets, head.penalty)
    return head.scale * (with_ones(query_embeddings) @ weights) + head.bias


def r2d2(
    embed_fn: ApplyFn,
    *,
    ways: int,
    outer_optimizer: optax.GradientTransformation,
    initial_scale: float = 10.0,
    initial_penalty: float = 50.0,
    learn_penalty: bool = False,
    transductive: bool = False,
) -> MetaLearner:
    """Builds R2D2 as pure functions.

    Args:
      embed_fn: ``embed_fn(params, x[batch, ...]) -> [batch, dim]`` embeddings
        (e.g. ``Conv4(num_classes=None).apply``).
      ways: classes per task; labels lie in ``[0, ways)``.
      outer_optimizer: trains the embedding and the head's scalars together.
      initial_scale, initial_penalty: the head's starting values.
      learn_penalty: also learn the penalty (otherwise it keeps its start).
      transductive: at evaluation, embed the query set as one batch; otherwise
        each query example with the support set alone (batch norm).

    Returns:
      A ``MetaLearner`` whose state's ``learner_state`` is an ``R2D2State``;
      ``adapt`` returns the embedding weights unchanged (the classifier is
      solved per task inside ``evaluate``); ``step`` metrics: ``query_loss``,
      ``query_accuracy``, and the head's ``scale`` and ``penalty``.
    """
    if ways < 2:
        raise ValueError(f"ways must be >= 2 for a classifier, got {ways}")
    for name, value in (("initial_scale", initial_scale), ("initial_penalty", initial_penalty)):
        if not is_traced(value) and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")

    def logits(params, head, support_x, support_y, query_x, *, transductive):
        support_embeddings = embed_fn(params, support_x)
        query_embeddings = predict_queries(embed_fn, params, support_x, query_x, transductive=transductive)
        return r2d2_logits(support_embeddings, support_y, query_embeddings, head, ways)

    def task_loss(meta_params, support_x, support_y, query_x, query_y):
        params, head = meta_params
        task_logits = logits(params, head, support_x, support_y, query_x, transductive=True)
        scores = task_scores(softmax_cross_entropy, task_logits, query_y)
        return scores["loss"], scores["accuracy"]

    def meta_loss(meta_params, tasks: TaskBatch):
        params, head = meta_params
        if not learn_penalty:
            meta_params = (params, head._replace(log_penalty=jax.lax.stop_gradient(head.log_penalty)))
        losses, accuracies = jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(meta_params, *tasks)
        return jnp.mean(losses), {"query_loss": jnp.mean(losses), "query_accuracy": jnp.mean(accuracies)}

    def init(params: Params) -> MetaState:
        head = R2D2State(
            log_scale=jnp.log(jnp.asarray(initial_scale, jnp.float32)),
            bias=jnp.zeros((), jnp.float32),
            log_penalty=jnp.log(jnp.asarray(initial_penalty, jnp.float32)),
        )
        return MetaState(
            params=params, opt_state=outer_optimizer.init((params, head)), step=jnp.zeros((), jnp.int32),
            learner_state=head,
        )  # fmt: skip

    def step(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> tuple[MetaState, dict[str, jax.Array]]:
        """One meta-update; ``key`` is unused (nothing random) but kept for a common interface."""
        check_class_labels(tasks)
        check_key("key", key)
        current = (state.params, state.learner_state)
        (_, metrics), grads = jax.value_and_grad(meta_loss, has_aux=True)(current, tasks)
        updates, opt_state = outer_optimizer.update(grads, state.opt_state, current)
        params, head = optax.apply_updates(current, updates)
        if not learn_penalty:  # Adam's update of a zero gradient is zero, but a weight decay's is not.
            head = head._replace(log_penalty=state.learner_state.log_penalty)
        metrics = {**metrics, "scale": head.scale, "penalty": head.penalty}
        return MetaState(params=params, opt_state=opt_state, step=state.step + 1, learner_state=head), metrics

    def evaluate_one(params, head, support_x, support_y, query_x, query_y):
        task_logits = logits(params, head, support_x, support_y, query_x, transductive=transductive)
        return task_scores(softmax_cross_entropy, task_logits, query_y)

    def evaluate(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> dict[str, jax.Array]:
        check_class_labels(tasks)
        check_key("key", key)
        return jax.vmap(evaluate_one, in_axes=(None, None, 0, 0, 0, 0))(state.params, state.learner_state, *tasks)

    return MetaLearner(init=init, step=step, adapt=unadapted, evaluate=evaluate)


@META_LEARNERS.register(
    "r2d2",
    hyperparams=R2D2Options,
    description="R2-D2 (Bertinetto et al. 2019): a ridge-regression head solved in closed form per task.",
    embeds=True,
    needs_classes=True,
)
def build_r2d2(options: R2D2Options, context: MetaContext) -> MetaLearner:
    return r2d2(
        context.apply_fn,
        ways=context.ways,
        outer_optimizer=optax.adam(
            optax.exponential_decay(options.meta_lr, options.meta_lr_halving_every, 0.5, staircase=True)
        ),
        initial_scale=options.initial_scale,
        initial_penalty=options.initial_penalty,
        learn_penalty=options.learn_penalty,
        transductive=context.transductive,
    )
