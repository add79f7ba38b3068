"""Meta-SGD (Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for
Few-Shot Learning", https://arxiv.org/abs/1707.09835).

MAML whose inner step sizes are meta-parameters too: one rate per weight,
``adapted = params - inner_lrs * grad``, with ``inner_lrs`` trained by the outer
optimizer together with ``params``. The rates live in ``MetaState.inner_lrs``.
The paper draws the initial rates at random; we start them all at ``inner_lr``
so that step 0 is exactly MAML's.
"""

import optax

from metajax.meta.base import ApplyFn, LossFn, MetaLearner
from metajax.meta.maml import gradient_meta_learner


def meta_sgd(
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
    """Builds Meta-SGD as pure functions; arguments as ``maml``'s, ``inner_lr`` the rates' start."""
    return gradient_meta_learner(
        apply_fn,
        loss_fn,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        outer_optimizer=outer_optimizer,
        second_order_steps=0 if first_order else second_order_steps,
        eval_inner_steps=eval_inner_steps,
        transductive=transductive,
        learn_inner_lr=True,
    )
