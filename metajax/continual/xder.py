"""X-DER (Boschini, Bonicelli, Buzzega, Porrello & Calderara 2022, "Class-Incremental Continual Learning
into the eXtended DER-verse", https://arxiv.org/abs/2201.00766): its core, DER++ with logits that learn
about classes that came later.

DER++ (``dark_experience_replay``) stores with each example the logits the
model gave it, and so never learns what an old example looks like to the
classes learned after it was stored. X-DER keeps the buffered logits up to
date at the end of each experience:

* every buffered example of an earlier class gets, for the classes of the
  experience just learned, the trained model's logits (scaled by
  ``gamma * stored label logit / their maximum`` when their maximum exceeds
  the example's stored logit of its own label, so that its label keeps the
  largest logit);
* the buffer then takes examples of the experience with the trained model's
  logits (those of the earlier classes scaled the same way), class-balanced:
  ``capacity // classes seen`` per class, as the paper's buffer;

and the data loss of the stream's examples is over the classes of the
current experience only (the paper's present head). Training adds DER++'s
two terms (``alpha`` on the buffered logits, ``beta`` on the buffered
labels).

Not implemented: the paper's future preparation (the supervised contrastive
loss on the future classes' outputs, and its augmentations), its two margin
constraints on the past and future outputs (``eta``, ``m``), the logit
update of buffered examples during an experience (the paper's code updates
the ones it replays, then less often each time), and the update of the
future classes' logits (the paper transplants those too; here they keep the
values stored). The DER++ label term is over each buffered example's whole
head, not only the classes before the current experience.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, is_traced
from metajax.continual import replay_buffer
from metajax.continual.base import ContinualBatch, Experience, Strategy, StrategyContext
from metajax.continual.dark_experience_replay import LoggedExample, dark_experience_replay
from metajax.continual.gdumb import check_buffer_size
from metajax.continual.icarl import apply_in_chunks
from metajax.continual.replay import offered_examples
from metajax.continual.replay_buffer import ReplayBuffer
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class XDERState(NamedTuple):
    """The buffer of ``LoggedExample``s, the classes of the current experience and those seen so far."""

    buffer: ReplayBuffer
    present_classes: jax.Array
    seen_classes: jax.Array


def transplanted(stored: jax.Array, current: jax.Array, labels: jax.Array, columns: jax.Array, gamma) -> jax.Array:
    """``stored [b, outputs]`` with its ``columns [outputs]`` replaced by ``current [b, outputs]``'s,
    scaled on the rows where their maximum exceeds the row's stored logit of its label ``labels [b]``:
    by ``gamma * that logit / their maximum`` (X-DER's update of buffered logits)."""
    b, outputs = check_array("stored", stored, (None, None), "[b, outputs]", dtype="floating")
    check_array("current", current, (b, outputs), "[b, outputs]", dtype="floating")
    check_array("labels", labels, (b,), "[b]", dtype="integer")
    check_array("columns", columns, (outputs,), "[outputs]", dtype="bool")
    label_logit = jnp.take_along_axis(stored, labels[:, None], axis=1)[:, 0]
    peak = jnp.max(jnp.where(columns[None], current, -jnp.inf), axis=-1)
    exceeds = peak > label_logit
    scale = jnp.where(exceeds, gamma * label_logit / jnp.where(exceeds, peak, 1.0), 1.0)
    return jnp.where(columns[None], current * scale[:, None], stored)


def xder(
    buffer_size: int,
    *,
    apply_fn,
    example_shape: tuple[int, ...],
    num_outputs: int,
    alpha: float,
    beta: float,
    gamma: float = 0.85,
    replay_batch: int | None = None,
) -> Strategy:
    """X-DER's core as a strategy (see the module docstring)."""
    if not is_traced(gamma) and not gamma > 0:
        raise ValueError(f"xder gamma must be > 0, got {gamma}")
    der = dark_experience_replay(
        buffer_size,
        example_shape=example_shape,
        num_outputs=num_outputs,
        alpha=alpha,
        beta=beta,
        replay_batch=replay_batch,
    )

    def init(params):
        no_classes = jnp.zeros((num_outputs,), bool)
        return XDERState(der.init(params), no_classes, no_classes)

    def before_experience(state: XDERState, params, experience: Experience, key):
        arrived = jnp.ones(experience.y.shape, bool) if experience.weight is None else experience.weight > 0
        present = jnp.zeros((num_outputs,), bool).at[experience.y].max(arrived)
        return XDERState(state.buffer, present, state.seen_classes | present), params, experience

    def augment(state: XDERState, batch: ContinualBatch, key) -> ContinualBatch:
        present_head = batch._replace(logit_mask=batch.logit_mask & state.present_classes[None])
        return der.augment(state.buffer, present_head, key)

    def penalty(params, state: XDERState, batch, outputs):
        return der.penalty(params, state.buffer, batch, outputs)

    def after_experience(state: XDERState, params, experience: Experience, key):
        buffer, present = state.buffer, state.present_classes
        stored = buffer.items
        earlier = (jnp.arange(buffer.capacity) < buffer.filled) & ~present[stored.y]
        now = apply_in_chunks(lambda x: apply_fn(params, x), stored.x)
        updated = transplanted(stored.logits, now, stored.y, present, gamma)
        buffer = buffer._replace(items=stored._replace(logits=jnp.where(earlier[:, None], updated, stored.logits)))

        outputs = apply_in_chunks(lambda x: apply_fn(params, x), experience.x)
        earlier_classes = state.seen_classes & ~present
        logits = transplanted(outputs, outputs, experience.y, earlier_classes, gamma)
        arrivals = LoggedExample(*offered_examples(experience), logits=logits)
        buffer = replay_buffer.class_balanced_add(buffer, arrivals, key=key, num_classes=num_outputs)
        return state._replace(buffer=buffer)

    return Strategy(
        init=init,
        before_experience=before_experience,
        augment=augment,
        penalty=penalty,
        after_experience=after_experience,
    )


@dataclasses.dataclass(frozen=True)
class XDEROptions:
    buffer_size: int = option(500, "examples kept in the buffer", minimum=1)
    replay_batch: int | None = option(None, "buffer examples per draw (None: the batch size)", minimum=1)
    der_alpha: float = option(1.0, "weight of DER's logit-matching term", minimum=0)
    der_beta: float = option(0.5, "weight of DER++'s replayed-label cross-entropy", minimum=0)
    xder_gamma: float = option(
        0.85, "X-DER's scale of updated logits that would exceed an example's own label logit", above=0
    )


@CONTINUAL_STRATEGIES.register(
    "xder",
    hyperparams=XDEROptions,
    description="X-DER (Boschini et al. 2022): DER++ whose buffered logits learn the classes that came later.",
)
def build_xder(options: XDEROptions, context: StrategyContext) -> Strategy:
    check_buffer_size(options.buffer_size, context)
    return xder(
        options.buffer_size,
        apply_fn=context.apply_fn,
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        alpha=options.der_alpha,
        beta=options.der_beta,
        gamma=options.xder_gamma,
        replay_batch=options.replay_batch,
    )
