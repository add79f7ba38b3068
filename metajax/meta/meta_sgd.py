"""Meta-SGD (Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for
Few-Shot Learning", https://arxiv.org/abs/1707.09835).

MAML whose inner step sizes are meta-parameters too: one rate per weight,
``adapted = params - inner_lrs * grad``, with ``inner_lrs`` trained by the outer
optimizer together with ``params``. The rates are Meta-SGD's own state
(``MetaSGDState`` in ``MetaState.learner_state``). The paper draws the initial
rates at random; we start them all at ``inner_lr`` so that step 0 is exactly
MAML's.
"""

from __future__ import annotations

import dataclasses

import optax

from metajax.meta.base import ApplyFn, LossFn, MetaContext, MetaLearner
from metajax.meta.maml import MAMLOptions, MetaSGDState, build_from_options, gradient_meta_learner
from metajax.options import option
from metajax.registry import META_LEARNERS

__all__ = ["MetaSGDOptions", "MetaSGDState", "meta_sgd"]


@dataclasses.dataclass(frozen=True)
class MetaSGDOptions(MAMLOptions):
    inner_lr: float = option(0.4, "the inner rates' initial value", above=0)
    # Meta-SGD learns rates for the number of steps it trains with and tests
    # with that many (one in the paper); more steps of the learned rates can diverge.
    eval_inner_steps: int | None = option(  # type: ignore[assignment]  # None: follow inner-steps.
        None, "inner steps when adapting at evaluation (default: inner-steps, which the rates were learned for)",
        minimum=1,
    )  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        if self.eval_inner_steps is None:
            object.__setattr__(self, "eval_inner_steps", self.inner_steps)


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


@META_LEARNERS.register(
    "meta-sgd",
    hyperparams=MetaSGDOptions,
    description="Meta-SGD (Li et al. 2017): MAML with per-parameter inner step sizes learned in the outer loop.",
    presets={"sinusoid": {"inner_lr": 0.01}},
)
def build_meta_sgd(options: MetaSGDOptions, context: MetaContext) -> MetaLearner:
    return build_from_options(meta_sgd, options, context)
