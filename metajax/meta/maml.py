"""MAML (Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", https://arxiv.org/abs/1703.03400) and its
first-order approximation.

For each task of a meta-batch, take a few gradient-descent steps on its support
set, then score the adapted weights on its query set; the meta-gradient is the
gradient of the mean query loss with respect to the initial weights, through
the inner steps:

    params <- outer_update(grad_params mean_tasks L_query(adapt(params, support)))

Second-order MAML differentiates through the inner gradients (Hessian-vector
products); first-order MAML treats them as constants, so its meta-gradient is
the query gradient at the adapted weights. ``second_order_steps=k`` keeps the
second-order terms of the last ``k`` inner steps only.

ANIL (``anil.py``) and Meta-SGD (``meta_sgd.py``) are this learner with the
inner loop restricted to the head, and with learned per-parameter inner rates.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.array_checks import check_key, is_traced
from metajax.data.tasks import TaskBatch, check_support_set, check_task_batch
from metajax.meta.base import ApplyFn, LossFn, MetaContext, MetaLearner, MetaState, Params, predict_queries, task_scores
from metajax.meta.inner_loop import make_gradient_descent_adapt
from metajax.options import option
from metajax.registry import META_LEARNERS


@dataclasses.dataclass(frozen=True)
class InnerLoopOptions:
    """The options of every learner of the MAML family; defaults are MAML's Omniglot preset (section 5.2:
    one inner step of size 0.4 in training, three at test time, Adam 1e-3 outside)."""

    inner_steps: int = option(1, "inner gradient steps per task in meta-training", minimum=1)
    eval_inner_steps: int = option(3, "inner steps when adapting at evaluation", minimum=1)
    inner_lr: float = option(0.4, "the inner step size", above=0)
    meta_lr: float = option(1e-3, "the outer Adam optimizer's learning rate", above=0)


@dataclasses.dataclass(frozen=True)
class MAMLOptions(InnerLoopOptions):
    first_order: bool = option(False, "drop the second-order terms")
    second_order_steps: int | None = option(
        None, "differentiate through only the last K inner steps (default: all)", minimum=0
    )

    def __post_init__(self):
        if self.second_order_steps is not None and not 0 <= self.second_order_steps <= self.inner_steps:
            raise ValueError(
                f"second-order-steps must be between 0 and inner-steps = {self.inner_steps}, "
                f"got {self.second_order_steps}"
            )


# MAML's sinusoid experiment (K = 10, one step of 0.01); the run's sizes are the dataset's defaults.
MAML_FAMILY_PRESETS = {"sinusoid": {"inner_lr": 0.01, "eval_inner_steps": 10}}


class MetaSGDState(NamedTuple):
    """Meta-SGD's own state: the learned per-parameter inner rates, a pytree like the params."""

    inner_lrs: Params


def maml(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    inner_lr: float,
    inner_steps: int,
    outer_optimizer: optax.GradientTransformation,
    first_order: bool = False,
    second_order_steps: int | None = None,
    eval_inner_steps: int | None = None,
    transductive: bool = False,
) -> MetaLearner:
    """Builds MAML (or first-order MAML) as pure functions.

    Args:
      apply_fn: ``apply_fn(params, x[batch, ...]) -> predictions[batch, ...]``.
      loss_fn: ``loss_fn(predictions, targets) -> scalar`` mean loss.
      inner_lr: the inner gradient-descent step size (the paper: 0.4 for
        Omniglot, 0.01 for sinusoid regression).
      inner_steps: full-batch inner steps on the support set in meta-training.
      outer_optimizer: the meta-optimizer (the paper: ``optax.adam(1e-3)``).
      first_order: drop all second-order terms (FOMAML).
      second_order_steps: differentiate through only the last this-many inner
        steps (default: all of them; ignored when ``first_order``).
      eval_inner_steps: inner steps when adapting at evaluation (default
        ``inner_steps``; the paper uses more at test time).
      transductive: at evaluation, predict the whole query set as one batch.
        During meta-training the query set is always one batch, as in the
        paper's code.

    Returns:
      A ``MetaLearner``. ``step`` metrics: ``support_loss`` (before adapting),
      ``query_loss`` (the meta-loss) and, for class labels, ``query_accuracy``.

    Example:
      >>> learner = maml(model.apply, softmax_cross_entropy, inner_lr=0.4, inner_steps=1,
      ...                outer_optimizer=optax.adam(1e-3))
      >>> state = learner.init(params)
      >>> state, metrics = jax.jit(learner.step)(state, tasks, key=key)
    """
    return gradient_meta_learner(
        apply_fn,
        loss_fn,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        outer_optimizer=outer_optimizer,
        second_order_steps=0 if first_order else second_order_steps,
        eval_inner_steps=eval_inner_steps,
        transductive=transductive,
    )


def fomaml(apply_fn: ApplyFn, loss_fn: LossFn, **kwargs) -> MetaLearner:
    """First-order MAML: ``maml(..., first_order=True)``."""
    return maml(apply_fn, loss_fn, first_order=True, **kwargs)


def gradient_meta_learner(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    inner_lr: float,
    inner_steps: int,
    outer_optimizer: optax.GradientTransformation,
    second_order_steps: int | None = None,
    eval_inner_steps: int | None = None,
    transductive: bool = False,
    adapt_mask=None,
    learn_inner_lr: bool = False,
) -> MetaLearner:
    """The learner behind MAML, FOMAML, ANIL and Meta-SGD.

    Beyond ``maml``'s arguments: ``adapt_mask`` (``None``, a pytree of bools
    like the params, or ``mask(params)``) selects the parameters the inner loop
    moves; ``learn_inner_lr`` makes the inner step sizes per-parameter
    meta-parameters, initialised to ``inner_lr``, kept in the state's
    ``learner_state`` (a ``MetaSGDState``) and trained by the outer optimizer
    with the weights.
    """
    if not is_traced(inner_lr) and not inner_lr > 0:
        raise ValueError(f"inner_lr must be > 0, got {inner_lr}")
    if second_order_steps is None:
        second_order_steps = inner_steps
    train_adapt = make_gradient_descent_adapt(
        apply_fn, loss_fn, inner_steps, second_order_steps=second_order_steps, adapt_mask=adapt_mask
    )
    # Evaluation takes no meta-gradient: no second-order terms to keep.
    eval_adapt = make_gradient_descent_adapt(
        apply_fn, loss_fn, eval_inner_steps or inner_steps, second_order_steps=0, adapt_mask=adapt_mask
    )

    def meta_parameters(state: MetaState):
        return (state.params, state.learner_state.inner_lrs) if learn_inner_lr else state.params

    def inner_rates(state: MetaState):
        return state.learner_state.inner_lrs if learn_inner_lr else inner_lr

    def init(params: Params) -> MetaState:
        own = MetaSGDState(jax.tree.map(lambda p: jnp.full_like(p, inner_lr), params)) if learn_inner_lr else ()
        state = MetaState(params=params, opt_state=(), step=jnp.zeros((), jnp.int32), learner_state=own)
        return state._replace(opt_state=outer_optimizer.init(meta_parameters(state)))

    def task_meta_loss(meta_params, support_x, support_y, query_x, query_y):
        params, rates = meta_params if learn_inner_lr else (meta_params, inner_lr)
        adapted, support_losses = train_adapt(params, rates, support_x, support_y)
        scores = task_scores(loss_fn, apply_fn(adapted, query_x), query_y)
        return scores["loss"], (support_losses[0], scores)

    def meta_loss(meta_params, tasks: TaskBatch):
        losses, (support_losses, scores) = jax.vmap(task_meta_loss, in_axes=(None, 0, 0, 0, 0))(meta_params, *tasks)
        metrics = {"support_loss": jnp.mean(support_losses), "query_loss": jnp.mean(losses)}
        if "accuracy" in scores:
            metrics["query_accuracy"] = jnp.mean(scores["accuracy"])
        return jnp.mean(losses), metrics

    def step(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> tuple[MetaState, dict[str, jax.Array]]:
        """One meta-update; ``key`` is unused (full-batch inner steps) but kept for a common interface."""
        check_task_batch(tasks)
        check_key("key", key)
        current = meta_parameters(state)
        (_, metrics), meta_gradient = jax.value_and_grad(meta_loss, has_aux=True)(current, tasks)
        updates, opt_state = outer_optimizer.update(meta_gradient, state.opt_state, current)
        updated = optax.apply_updates(current, updates)
        params, own = (updated[0], MetaSGDState(updated[1])) if learn_inner_lr else (updated, ())
        new_state = MetaState(params=params, opt_state=opt_state, step=state.step + 1, learner_state=own)
        return new_state, metrics

    def adapt(state: MetaState, support_x: jax.Array, support_y: jax.Array, *, key: jax.Array) -> Params:
        check_support_set(support_x, support_y)
        check_key("key", key)  # Full-batch steps: nothing random, but a wrong call is still an error.
        return eval_adapt(state.params, inner_rates(state), support_x, support_y)[0]

    def evaluate_one(state, support_x, support_y, query_x, query_y, key):
        adapted = adapt(state, support_x, support_y, key=key)
        predictions = predict_queries(apply_fn, adapted, support_x, query_x, transductive=transductive)
        return task_scores(loss_fn, predictions, query_y)

    def evaluate(state: MetaState, tasks: TaskBatch, *, key: jax.Array) -> dict[str, jax.Array]:
        check_task_batch(tasks)
        check_key("key", key)
        task_keys = jax.random.split(key, tasks.num_tasks)
        return jax.vmap(evaluate_one, in_axes=(None, 0, 0, 0, 0, 0))(state, *tasks, task_keys)

    return MetaLearner(init=init, step=step, adapt=adapt, evaluate=evaluate)


def build_from_options(factory, options: MAMLOptions, context: MetaContext, **extra) -> MetaLearner:
    """``factory`` (``maml``, ``anil``, ``meta_sgd``) built from a registered entry's options and context."""
    return factory(
        context.apply_fn,
        context.loss_fn,
        **extra,
        inner_lr=options.inner_lr,
        inner_steps=options.inner_steps,
        outer_optimizer=optax.adam(options.meta_lr),
        first_order=options.first_order,
        second_order_steps=options.second_order_steps,
        eval_inner_steps=options.eval_inner_steps,
        transductive=context.transductive,
    )


def build_maml(options: MAMLOptions, context: MetaContext) -> MetaLearner:
    return build_from_options(maml, options, context)


def build_fomaml(options: InnerLoopOptions, context: MetaContext) -> MetaLearner:
    return build_maml(MAMLOptions(**dataclasses.asdict(options), first_order=True), context)


META_LEARNERS.register(
    "maml",
    build_maml,
    hyperparams=MAMLOptions,
    description="MAML (Finn et al. 2017): differentiate the query loss through the inner steps.",
    presets=MAML_FAMILY_PRESETS,
)
META_LEARNERS.register(
    "fomaml",
    build_fomaml,
    hyperparams=InnerLoopOptions,
    description="First-order MAML: MAML without the second-order terms.",
    presets=MAML_FAMILY_PRESETS,
)
