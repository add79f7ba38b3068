"""ANIL, "Almost No Inner Loop" (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid
Learning or Feature Reuse?", https://arxiv.org/abs/1909.09157).

MAML whose inner loop adapts only the network's head; the body is meta-learned
by the outer loop alone. Its inner gradients are taken with respect to the
head only, so the body's backward pass never runs inside the inner loop.
"""

import optax

from metajax.meta.base import ApplyFn, LossFn, MetaLearner
from metajax.meta.inner_loop import module_mask
from metajax.meta.maml import gradient_meta_learner


def anil(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    inner_lr: float,
    inner_steps: int,
    outer_optimizer: optax.GradientTransformation,
    head: str = "head",
    first_order: bool = False,
    second_order_steps: int | None = None,
    eval_inner_steps: int | None = None,
    transductive: bool = False,
) -> MetaLearner:
    """Builds ANIL as pure functions; arguments as ``maml``'s.

    Args:
      head: the name of the flax module the inner loop adapts (``"head"`` in
        ``Conv4`` and ``MLP``); every parameter outside it stays fixed in the
        inner loop.
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
        adapt_mask=module_mask(head),
    )
