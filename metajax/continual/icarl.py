"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert 2017, "iCaRL: Incremental Classifier and Representation
Learning", https://arxiv.org/abs/1611.07725).

A memory of ``capacity`` exemplars, ``capacity // classes seen`` per class,
chosen by herding; the model is scored by the nearest mean of exemplars.
Here, through the strategy hooks:

* ``before_experience`` keeps the model as it is (the previous model, for
  distillation) and extends the experience with the memory (``weight`` 0 on
  empty slots): the training set is the new data and the exemplars, as the
  paper's;
* ``penalty`` is the paper's distillation: over the classes seen before the
  experience, the binary cross-entropy of the model's sigmoid outputs against
  the previous model's, summed over those classes, averaged over the batch's
  rows, times ``distillation`` (1 in the paper);
* ``after_experience`` keeps the first ``m = capacity // classes seen``
  exemplars of each earlier class (herding orders them by priority) and
  chooses ``m`` of each class new in the experience by herding on the
  L2-normalized features: the k-th exemplar is the example, not yet chosen,
  whose features bring the mean of the k chosen closest to the class mean;
  then each class's mean of exemplar features (normalized, averaged,
  renormalized) with the trained model;
* ``predict`` returns minus the distance of the normalized features to each
  class mean (the nearest mean of exemplars); classes without exemplars get
  -1e9.

Where this differs from the paper: its classification term is a sigmoid
binary cross-entropy on the new classes' outputs (one-hot targets); here the
learner's loss, a softmax cross-entropy over each row's head (in class-IL all
outputs), takes its place, and the distillation term is added to it. Herding
never picks an example twice (the paper's formula may), and the features are
those of each input as given (the paper also averages over flipped images).
The features come from the model's declared ``features(params, x)``
(``metajax.models.interfaces.Features``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, is_traced
from metajax.continual.base import Experience, Strategy, StrategyContext
from metajax.continual.gdumb import check_buffer_size
from metajax.continual.replay import offered_examples
from metajax.continual.replay_buffer import ReplayBuffer, empty_buffer
from metajax.models.interfaces import declared_split
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES


class Exemplar(NamedTuple):
    """An exemplar: ``x``, ``y``, its head ``logit_mask`` and ``rank``, its place in its class's herding order."""

    x: jax.Array
    y: jax.Array
    logit_mask: jax.Array
    rank: jax.Array


class ICaRLState(NamedTuple):
    """The model the experience started from, the classes seen before it and so far, the exemplars and
    the class means of their normalized features ``[outputs, features]``."""

    previous: Any
    old_classes: jax.Array
    seen_classes: jax.Array
    memory: ReplayBuffer
    class_means: jax.Array


def apply_in_chunks(fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, chunk: int = 512) -> jax.Array:
    """``fn(x)`` for a batch function ``fn``, ``chunk`` rows at a time (a whole experience at once may not
    fit in memory)."""
    return jax.lax.map(lambda row: fn(row[None])[0], x, batch_size=chunk)


def normalized(features: jax.Array) -> jax.Array:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    return features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def herding_order(features: jax.Array, in_class: jax.Array, count: jax.Array | int, *, length: int) -> jax.Array:
    """The first ``count`` exemplars herding chooses among the rows of ``features [n, d]`` where
    ``in_class [n]``, as row indices ``[length]`` (-1 after them).

    The k-th choice (k = 1, 2, ...) is the row, not chosen yet, that minimizes
    ``|| mean - (sum of the k-1 chosen + row) / k ||`` for the mean of the class's rows.
    """
    n, _ = check_array("features", features, (None, None), "[examples, features]", dtype="floating")
    check_array("in_class", in_class, (n,), "[examples]", dtype="bool")
    members = jnp.sum(in_class)
    mean = jnp.sum(jnp.where(in_class[:, None], features, 0.0), axis=0) / jnp.maximum(members, 1)

    def choose(k, carry):
        chosen_sum, taken, order = carry
        gap = jnp.sum(jnp.square(mean[None] - (chosen_sum[None] + features) / (k + 1)), axis=-1)
        pick = jnp.argmin(jnp.where(in_class & ~taken, gap, jnp.inf))
        return chosen_sum + features[pick], taken.at[pick].set(True), order.at[k].set(pick)

    start = (jnp.zeros_like(mean), jnp.zeros((n,), bool), jnp.full((length,), -1, jnp.int32))
    return jax.lax.fori_loop(0, jnp.minimum(jnp.minimum(count, members), length), choose, start)[2]


def nearest_mean_logits(features: jax.Array, class_means: jax.Array, has_mean: jax.Array) -> jax.Array:
    """Minus the distance of each normalized row of ``features [b, d]`` to each of ``class_means
    [outputs, d]`` (``[b, outputs]``); -1e9 for the classes without ``has_mean``."""
    distance = jnp.linalg.norm(normalized(features)[:, None, :] - class_means[None], axis=-1)
    return jnp.where(has_mean[None], -distance, -1e9)


def icarl(
    memory_size: int,
    *,
    apply_fn: Callable,
    features: Callable,
    example_shape: tuple[int, ...],
    num_outputs: int,
    distillation: float = 1.0,
) -> Strategy:
    """iCaRL as a strategy (see the module docstring); ``features(params, x) -> [batch, d]``."""
    if not is_traced(distillation) and distillation < 0:
        raise ValueError(f"icarl distillation must be >= 0, got {distillation}")
    example = Exemplar(
        x=jax.ShapeDtypeStruct(tuple(example_shape), jnp.float32),  # type: ignore[arg-type]  # Shapes, not arrays.
        y=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]  # Shapes, not arrays.
        logit_mask=jax.ShapeDtypeStruct((num_outputs,), jnp.bool_),  # type: ignore[arg-type]  # Shapes, not arrays.
        rank=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]  # Shapes, not arrays.
    )

    def init(params):
        probe = jax.ShapeDtypeStruct((1, *example_shape), jnp.float32)
        width = jax.eval_shape(features, params, probe).shape[-1]
        no_classes = jnp.zeros((num_outputs,), bool)
        memory = empty_buffer(memory_size, example)
        return ICaRLState(params, no_classes, no_classes, memory, jnp.zeros((num_outputs, width), jnp.float32))

    def before_experience(state: ICaRLState, params, experience: Experience, key):
        n, outputs = experience.x.shape[0], experience.logit_mask.shape[-1]
        stored = jnp.arange(memory_size) < state.memory.filled
        weight = jnp.ones((n,)) if experience.weight is None else experience.weight
        extended = Experience(
            jnp.concatenate([experience.x, state.memory.items.x]),
            jnp.concatenate([experience.y, state.memory.items.y]),
            jnp.concatenate([jnp.broadcast_to(experience.logit_mask, (n, outputs)), state.memory.items.logit_mask]),
            experience.index,
            jnp.concatenate([weight, stored.astype(weight.dtype)]),
        )
        return state._replace(previous=params, old_classes=state.seen_classes), params, extended

    def penalty(params, state: ICaRLState, batch, outputs):
        targets = jax.nn.sigmoid(jax.lax.stop_gradient(apply_fn(state.previous, batch.x)))
        binary_cross_entropy = jax.nn.softplus(outputs) - targets * outputs
        per_row = jnp.sum(jnp.where(state.old_classes[None], binary_cross_entropy, 0.0), axis=-1)
        return distillation * jnp.sum(batch.weight * per_row) / jnp.maximum(jnp.sum(batch.weight), 1.0)

    def after_experience(state: ICaRLState, params, experience: Experience, key):
        n = experience.x.shape[0] - memory_size  # The experience's own rows, before the memory's.
        new = offered_examples(
            experience._replace(x=experience.x[:n], y=experience.y[:n], logit_mask=experience.logit_mask[:n])
        )
        arrived = jnp.ones((n,), bool) if experience.weight is None else experience.weight[:n] > 0
        present = jnp.zeros((num_outputs,), bool).at[new.y].max(arrived)
        seen = state.seen_classes | present
        per_class = memory_size // jnp.maximum(jnp.sum(seen), 1)
        new_classes = present & ~state.seen_classes

        new_features = normalized(apply_in_chunks(lambda x: features(params, x), new.x))

        def order_of(label):
            count = jnp.where(new_classes[label], per_class, 0)
            return herding_order(new_features, arrived & (new.y == label), count, length=memory_size)

        orders = jax.lax.map(order_of, jnp.arange(num_outputs))  # [outputs, memory_size]
        ranks = jnp.broadcast_to(jnp.arange(memory_size), orders.shape)
        old = state.memory.items
        keep_old = (jnp.arange(memory_size) < state.memory.filled) & (old.rank < per_class)
        keep = jnp.concatenate([keep_old, orders.reshape(-1) >= 0])
        source = jnp.concatenate([jnp.arange(memory_size), memory_size + jnp.clip(orders.reshape(-1), 0)])
        rank = jnp.concatenate([old.rank, ranks.reshape(-1)])
        chosen = jnp.argsort(~keep, stable=True)[:memory_size]  # The kept candidates first.
        pooled = zip(old[:3], new, strict=True)
        x, y, logit_mask = (jnp.concatenate([a, b.astype(a.dtype)])[source[chosen]] for a, b in pooled)
        items = Exemplar(x, y, logit_mask, rank[chosen])
        filled = jnp.minimum(jnp.sum(keep), memory_size).astype(jnp.int32)
        memory = ReplayBuffer(items, filled, state.memory.seen + n)

        stored = jnp.arange(memory_size) < filled
        exemplar_features = normalized(apply_in_chunks(lambda x: features(params, x), items.x))
        sums = jax.ops.segment_sum(jnp.where(stored[:, None], exemplar_features, 0.0), items.y, num_outputs)
        class_means = normalized(
            sums / jnp.maximum(jax.ops.segment_sum(stored.astype(jnp.float32), items.y, num_outputs), 1)[:, None]
        )
        return state._replace(seen_classes=seen, memory=memory, class_means=class_means)

    def predict(params, state: ICaRLState, x):
        return nearest_mean_logits(features(params, x), state.class_means, state.seen_classes)

    return Strategy(
        init=init,
        before_experience=before_experience,
        penalty=penalty,
        after_experience=after_experience,
        predict=predict,
    )


@dataclasses.dataclass(frozen=True)
class ICaRLOptions:
    """The paper's memory of 2000 exemplars."""

    buffer_size: int = option(2000, "examples kept in the buffer", minimum=1)
    icarl_distillation: float = option(1.0, "weight of iCaRL's distillation on the old classes' outputs", minimum=0)


@CONTINUAL_STRATEGIES.register(
    "icarl",
    hyperparams=ICaRLOptions,
    description="iCaRL (Rebuffi et al. 2017): herding exemplars, distillation, nearest-mean-of-exemplars scoring.",
)
def build_icarl(options: ICaRLOptions, context: StrategyContext) -> Strategy:
    check_buffer_size(options.buffer_size, context)
    return icarl(
        options.buffer_size,
        apply_fn=context.apply_fn,
        features=declared_split(context.model, "features", needed_by="icarl"),
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        distillation=options.icarl_distillation,
    )
