"""A meta-learner of your own, outside metajax: prototypes compared by cosine similarity.

Prototypical Networks with the negative squared distance replaced by a scaled
cosine similarity between a query's embedding and each class mean (as in the
cosine classifiers of Chen et al. 2019, "A Closer Look at Few-shot
Classification"). One module, one ``register`` call; then::

    PYTHONPATH=examples/plugin metajax --plugin cosine_prototypes cosine-protonets \\
        --dataset omniglot --data-dir ../shared/data/omniglot --temperature 10
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from metajax.meta import MetaLearner, MetaState, softmax_cross_entropy
from metajax.meta.base import predict_queries, task_scores
from metajax.meta.protonets import prototypes
from metajax.options import option
from metajax.registry import META_LEARNERS


@dataclasses.dataclass(frozen=True)
class CosinePrototypeOptions:
    meta_lr: float = option(1e-3, "the outer Adam optimizer's learning rate", above=0)
    temperature: float = option(10.0, "the cosine similarities' scale in the logits", above=0)


def _unit(x):
    return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


@META_LEARNERS.register(
    "cosine-protonets",
    hyperparams=CosinePrototypeOptions,
    description="ProtoNets with cosine similarity to the class means (an example plugin).",
    embeds=True,  # The network is built without a head: it returns embeddings.
    needs_classes=True,
)
def build_cosine_protonets(options: CosinePrototypeOptions, context) -> MetaLearner:
    optimizer = optax.adam(options.meta_lr)

    def logits(params, support_x, support_y, query_x, transductive):
        means = prototypes(context.apply_fn(params, support_x), support_y, context.ways)
        queries = predict_queries(context.apply_fn, params, support_x, query_x, transductive=transductive)
        return options.temperature * _unit(queries) @ _unit(means).T

    def scores(params, task, transductive):
        return task_scores(softmax_cross_entropy, logits(params, *task[:3], transductive), task[3])

    def meta_loss(params, tasks):
        per_task = jax.vmap(lambda *task: scores(params, task, True))(*tasks)
        return per_task["loss"].mean(), {"query_loss": per_task["loss"].mean(),
                                         "query_accuracy": per_task["accuracy"].mean()}  # fmt: skip

    def init(params):
        return MetaState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))

    def step(state, tasks, *, key):
        (_, metrics), grads = jax.value_and_grad(meta_loss, has_aux=True)(state.params, tasks)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return MetaState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def evaluate(state, tasks, *, key):
        return jax.vmap(lambda *task: scores(state.params, task, context.transductive))(*tasks)

    return MetaLearner(init=init, step=step, adapt=lambda state, x, y, *, key: state.params, evaluate=evaluate)
