"""ANIL, "Almost No Inner Loop" (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid
Learning or Feature Reuse?", https://arxiv.org/abs/1909.09157).

MAML whose inner loop adapts only the network's head; the body is meta-learned
by the outer loop alone. Its inner gradients are taken with respect to the
head only, so the body's backward pass never runs inside the inner loop. The
head is what the model declares (``head_parameters``,
``metajax.models.interfaces``), never found by a module's name.
"""

from __future__ import annotations

import optax

from metajax.meta.base import ApplyFn, LossFn, MetaContext, MetaLearner
from metajax.meta.maml import MAML_FAMILY_PRESETS, MAMLOptions, build_from_options, gradient_meta_learner
from metajax.models.interfaces import declared_split
from metajax.registry import META_LEARNERS


def anil(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    head,
    inner_lr: float,
    inner_steps: int,
    outer_optimizer: optax.GradientTransformation,
    first_order: bool = False,
    second_order_steps: int | None = None,
    eval_inner_steps: int | None = None,
    transductive: bool = False,
) -> MetaLearner:
    """Builds ANIL as pure functions; arguments as ``maml``'s.

    Args:
      head: the parameters the inner loop adapts: a pytree of bools like the
        params, or ``head(params) -> bools`` (a model's ``head_parameters``,
        e.g. ``Conv4(...).head_parameters``); every other parameter stays
        fixed in the inner loop.
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
        adapt_mask=head,
    )


@META_LEARNERS.register(
    "anil",
    hyperparams=MAMLOptions,
    description="ANIL (Raghu et al. 2020): MAML whose inner loop adapts only the head.",
    presets=MAML_FAMILY_PRESETS,
)
def build_anil(options: MAMLOptions, context: MetaContext) -> MetaLearner:
    head = declared_split(context.model, "head_parameters", needed_by="anil")
    return build_from_options(anil, options, context, head=head)
