"""MAML, first-order MAML, ANIL, Meta-SGD and Prototypical Networks against
plain references: each meta-gradient from a Python loop over tasks and inner
steps differentiated by ``jax.grad``, jitted and not."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.data import TaskBatch
from metajax.meta import (
    MetaSGDState,
    anil,
    fomaml,
    maml,
    mean_squared_error,
    meta_sgd,
    protonets,
    softmax_cross_entropy,
)
from metajax.meta.protonets import prototype_logits, prototypes
from metajax.models import MLP, Conv4
from metajax.models.interfaces import declared_split

WAYS, SHOTS, TASKS, STEPS, LR = 3, 2, 4, 3, 0.3
# float32 through second derivatives of a small conv net: differences from the
# reference are ~1e-6; a dropped term or a wrong sign moves them by far more.
RTOL, ATOL = 1e-4, 1e-5


def _tiny_conv_problem(seed=0, num_classes=WAYS):
    model = Conv4(num_classes=num_classes, features=4, depth=2)
    keys = jax.random.split(jax.random.key(seed), 3)
    support_x = jax.random.normal(keys[0], (TASKS, WAYS * SHOTS, 8, 8, 1))
    query_x = jax.random.normal(keys[1], (TASKS, WAYS * 2, 8, 8, 1))
    support_y = jnp.tile(jnp.arange(WAYS, dtype=jnp.int32).repeat(SHOTS), (TASKS, 1))
    query_y = jnp.tile(jnp.arange(WAYS, dtype=jnp.int32).repeat(2), (TASKS, 1))
    params = model.init(keys[2], support_x[0])
    return model, params, TaskBatch(support_x, support_y, query_x, query_y)


def _loss(model, params, x, y):
    return softmax_cross_entropy(model.apply(params, x), y)


def _reference_task_loss(model, params, rates, task, steps, *, second_order_from=0, moves=lambda path: True):
    """One task's query loss after ``steps`` plain gradient-descent steps, written as a Python loop.

    Steps before ``second_order_from`` treat their gradient as a constant.
    Only leaves whose key path satisfies ``moves`` are updated.
    """
    support_x, support_y, query_x, query_y = task
    p = params
    for index in range(steps):
        grads = jax.grad(lambda q: _loss(model, q, support_x, support_y))(p)
        if index < second_order_from:
            grads = jax.lax.stop_gradient(grads)
        p = jax.tree_util.tree_map_with_path(
            lambda path, w, g, r: w - r * g if moves(path) else w,
            p,
            grads,
            rates if isinstance(rates, dict) else jax.tree.map(lambda _: rates, p),
        )
    return _loss(model, p, query_x, query_y)


def _reference_meta_gradient(task_loss, meta_params, tasks, *, compile_task_gradient=True):
    """The mean over tasks of each task's meta-gradient, a Python loop over tasks."""
    # Compiled once (the Python loops inside unroll); the loop over tasks stays plain Python.
    task_gradient = jax.grad(task_loss)
    if compile_task_gradient:
        task_gradient = jax.jit(task_gradient)
    grads = [task_gradient(meta_params, jax.tree.map(lambda a, t=t: a[t], tasks)) for t in range(TASKS)]
    return jax.tree.map(lambda *g: sum(g) / TASKS, *grads)


def _meta_gradient_of(learner, state, tasks, jit):
    """The meta-gradient a learner applied, read back through ``optax.sgd(1)``: grad = old - new."""
    step = jax.jit(learner.step) if jit else learner.step
    new_state, metrics = step(state, tasks, key=jax.random.key(0))
    return new_state, metrics


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "no-jit"])
class TestMetaGradients:
    def test_maml_second_order_matches_differentiated_python_loop(self, jit):
        model, params, tasks = _tiny_conv_problem()
        learner = maml(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=STEPS,
                       outer_optimizer=optax.sgd(1.0))  # fmt: skip
        state = learner.init(params)
        new_state, metrics = _meta_gradient_of(learner, state, tasks, jit)
        expected = _reference_meta_gradient(
            lambda p, task: _reference_task_loss(model, p, LR, task, STEPS), params, tasks
        )
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, params, new_state.params), expected, rtol=RTOL, atol=ATOL
        )
        chex.assert_trees_all_equal(new_state.step, 1)
        assert set(metrics) == {"support_loss", "query_loss", "query_accuracy"}

    def test_second_order_terms_are_not_negligible_here(self, jit):
        # Guards the test above: if MAML and FOMAML agreed on this problem, it
        # could not tell a missing Hessian term.
        model, params, tasks = _tiny_conv_problem()
        kwargs = dict(inner_lr=LR, inner_steps=STEPS, outer_optimizer=optax.sgd(1.0))
        second = _meta_gradient_of(
            maml(model.apply, softmax_cross_entropy, **kwargs),
            maml(model.apply, softmax_cross_entropy, **kwargs).init(params),
            tasks,
            jit,
        )[0].params
        first_learner = fomaml(model.apply, softmax_cross_entropy, **kwargs)
        first = _meta_gradient_of(first_learner, first_learner.init(params), tasks, jit)[0].params
        gap = max(
            float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(second), jax.tree.leaves(first), strict=True)
        )
        assert gap > 100 * ATOL

    def test_fomaml_is_the_query_gradient_at_the_adapted_weights(self, jit):
        model, params, tasks = _tiny_conv_problem()
        learner = fomaml(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=STEPS,
                         outer_optimizer=optax.sgd(1.0))  # fmt: skip
        new_state, _ = _meta_gradient_of(learner, learner.init(params), tasks, jit)

        def query_gradient_after_adapting(p, task):
            support_x, support_y, query_x, query_y = task
            for _ in range(STEPS):
                p = jax.tree.map(
                    lambda w, g: w - LR * g, p, jax.grad(lambda q: _loss(model, q, support_x, support_y))(p)
                )
            return jax.grad(lambda q: _loss(model, q, query_x, query_y))(p)

        gradients = [
            query_gradient_after_adapting(params, jax.tree.map(lambda a, t=t: a[t], tasks)) for t in range(TASKS)
        ]
        expected = jax.tree.map(lambda *g: sum(g) / TASKS, *gradients)
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, params, new_state.params), expected, rtol=RTOL, atol=ATOL
        )

    def test_second_order_through_the_last_k_steps_only(self, jit):
        model, params, tasks = _tiny_conv_problem()
        learner = maml(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=STEPS, second_order_steps=1,
                       outer_optimizer=optax.sgd(1.0))  # fmt: skip
        new_state, _ = _meta_gradient_of(learner, learner.init(params), tasks, jit)
        expected = _reference_meta_gradient(
            lambda p, task: _reference_task_loss(model, p, LR, task, STEPS, second_order_from=STEPS - 1), params, tasks
        )
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, params, new_state.params), expected, rtol=RTOL, atol=ATOL
        )

    def test_anil_adapts_the_head_only_and_differentiates_through_it(self, jit):
        model, params, tasks = _tiny_conv_problem()
        learner = anil(model.apply, softmax_cross_entropy, head=model.head_parameters, inner_lr=LR,
                       inner_steps=STEPS, outer_optimizer=optax.sgd(1.0))  # fmt: skip
        state = learner.init(params)
        adapt = jax.jit(learner.adapt) if jit else learner.adapt
        adapted = adapt(state, tasks.support_x[0], tasks.support_y[0], key=jax.random.key(0))
        body = {name: value for name, value in params["params"].items() if name != "head"}
        chex.assert_trees_all_equal({n: adapted["params"][n] for n in body}, body)
        assert not np.allclose(adapted["params"]["head"]["kernel"], params["params"]["head"]["kernel"])

        new_state, _ = _meta_gradient_of(learner, state, tasks, jit)
        in_head = lambda path: any(getattr(entry, "key", None) == "head" for entry in path)  # noqa: E731
        expected = _reference_meta_gradient(
            lambda p, task: _reference_task_loss(model, p, LR, task, STEPS, moves=in_head), params, tasks
        )
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, params, new_state.params), expected, rtol=RTOL, atol=ATOL
        )

    def test_meta_sgd_learns_the_per_parameter_rates(self, jit):
        model, params, tasks = _tiny_conv_problem()
        learner = meta_sgd(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=2,
                           outer_optimizer=optax.sgd(1.0))  # fmt: skip
        state = learner.init(params)
        # Different rates per weight, so a rate applied to the wrong leaf shows.
        rates = jax.tree.map(
            lambda p, k: jax.random.uniform(k, p.shape, minval=0.05, maxval=0.4),
            params,
            jax.tree.unflatten(
                jax.tree.structure(params), list(jax.random.split(jax.random.key(3), len(jax.tree.leaves(params))))
            ),
        )
        state = state._replace(learner_state=MetaSGDState(rates), opt_state=optax.sgd(1.0).init((params, rates)))
        new_state, _ = _meta_gradient_of(learner, state, tasks, jit)
        expected_params, expected_rates = _reference_meta_gradient(
            lambda meta, task: _reference_task_loss(model, meta[0], meta[1], task, 2), (params, rates), tasks
        )
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, params, new_state.params), expected_params, rtol=RTOL, atol=ATOL
        )
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, rates, new_state.learner_state.inner_lrs), expected_rates, rtol=RTOL, atol=ATOL
        )

    def test_protonets_meta_gradient_and_logits(self, jit):
        model, params, tasks = _tiny_conv_problem(num_classes=None)
        learner = protonets(model.apply, ways=WAYS, outer_optimizer=optax.sgd(1.0))
        new_state, metrics = _meta_gradient_of(learner, learner.init(params), tasks, jit)

        def reference_task_loss(p, task):
            support_x, support_y, query_x, query_y = task
            support = model.apply(p, support_x)
            means = jnp.stack([support[support_y == c].mean(axis=0) for c in range(WAYS)])
            queries = model.apply(p, query_x)
            logits = -jnp.stack([jnp.sum((queries - means[c][None]) ** 2, axis=-1) for c in range(WAYS)], axis=-1)
            return softmax_cross_entropy(logits, query_y)

        # Boolean-mask indexing picks each class's examples: plain, and not jittable.
        expected = _reference_meta_gradient(reference_task_loss, params, tasks, compile_task_gradient=False)
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, params, new_state.params), expected, rtol=RTOL, atol=ATOL
        )
        assert 0.0 <= float(metrics["query_accuracy"]) <= 1.0


def test_prototype_logits_are_negative_squared_distances_to_class_means():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(7, 5)).astype(np.float32)
    labels = np.array([0, 2, 1, 2, 0, 1, 1], dtype=np.int32)
    queries = rng.normal(size=(4, 5)).astype(np.float32)
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in range(3)])
    expected = -np.array([[np.sum((q - m) ** 2) for m in means] for q in queries])
    np.testing.assert_allclose(prototypes(jnp.asarray(embeddings), jnp.asarray(labels), 3), means, rtol=1e-6)
    np.testing.assert_allclose(prototype_logits(jnp.asarray(queries), jnp.asarray(means)), expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "meta_sgd", "protonets"])
def test_second_step_does_not_recompile(name):
    model, params, tasks = _tiny_conv_problem(num_classes=None if name == "protonets" else WAYS)
    kwargs = dict(inner_lr=LR, inner_steps=2, outer_optimizer=optax.adam(1e-3))
    learner = {
        "maml": lambda: maml(model.apply, softmax_cross_entropy, **kwargs),
        "fomaml": lambda: fomaml(model.apply, softmax_cross_entropy, **kwargs),
        "anil": lambda: anil(model.apply, softmax_cross_entropy, head=model.head_parameters, **kwargs),
        "meta_sgd": lambda: meta_sgd(model.apply, softmax_cross_entropy, **kwargs),
        "protonets": lambda: protonets(model.apply, ways=WAYS, outer_optimizer=optax.adam(1e-3)),
    }[name]()
    step = jax.jit(chex.assert_max_traces(learner.step, n=1))
    state = learner.init(params)
    for i in range(3):
        shuffled = jax.tree.map(lambda a, i=i: jnp.roll(a, i, axis=0), tasks)
        state, _ = step(state, shuffled, key=jax.random.key(i))
    chex.clear_trace_counter()


@pytest.mark.parametrize("transductive", [True, False])
def test_evaluate_scores_adapted_predictions(transductive):
    model, params, tasks = _tiny_conv_problem()
    learner = maml(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=1, eval_inner_steps=STEPS,
                   outer_optimizer=optax.sgd(1.0), transductive=transductive)  # fmt: skip
    state = learner.init(params)
    scores = jax.jit(learner.evaluate)(state, tasks, key=jax.random.key(0))
    for t in range(TASKS):
        p = params
        for _ in range(STEPS):  # Evaluation adapts with eval_inner_steps.
            p = jax.tree.map(
                lambda w, g: w - LR * g,
                p,
                jax.grad(lambda q, t=t: _loss(model, q, tasks.support_x[t], tasks.support_y[t]))(p),
            )
        if transductive:
            logits = model.apply(p, tasks.query_x[t])
        else:
            logits = jnp.stack(
                [model.apply(p, jnp.concatenate([tasks.support_x[t], q[None]]))[-1] for q in tasks.query_x[t]]
            )
        np.testing.assert_allclose(scores["loss"][t], softmax_cross_entropy(logits, tasks.query_y[t]), rtol=1e-4)
        np.testing.assert_allclose(scores["accuracy"][t], np.mean(np.argmax(logits, -1) == tasks.query_y[t]))


def test_maml_learns_sinusoid_regression():
    """A few hundred meta-steps on sinusoids lower the post-adaptation query loss well below the start."""
    from metajax.data import sinusoid_sampler

    model = MLP((40, 40), 1)
    sample = sinusoid_sampler(10, 10)
    learner = maml(model.apply, mean_squared_error, inner_lr=0.01, inner_steps=1, outer_optimizer=optax.adam(1e-3))
    state = learner.init(model.init(jax.random.key(0), jnp.zeros((1, 1))))
    step = jax.jit(learner.step)
    test_tasks = sample(jax.random.key(99), 200)
    before = float(jnp.mean(learner.evaluate(state, test_tasks, key=jax.random.key(0))["loss"]))
    for i in range(300):
        state, _ = step(state, sample(jax.random.key(i), 25), key=jax.random.key(i))
    after = float(jnp.mean(learner.evaluate(state, test_tasks, key=jax.random.key(0))["loss"]))
    assert after < 0.5 * before


class TestBadInput:
    def test_second_order_steps_out_of_range(self):
        model, params, tasks = _tiny_conv_problem()
        with pytest.raises(ValueError, match=r"second_order_steps must be in \[0, inner steps = 2\], got 3"):
            maml(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=2, second_order_steps=3,
                 outer_optimizer=optax.sgd(1.0))  # fmt: skip

    def test_non_positive_inner_lr(self):
        with pytest.raises(ValueError, match="inner_lr must be > 0, got 0"):
            maml(lambda p, x: x, softmax_cross_entropy, inner_lr=0, inner_steps=1, outer_optimizer=optax.sgd(1.0))

    def test_anil_with_a_head_of_no_parameters_says_so(self):
        model, params, tasks = _tiny_conv_problem()
        nothing = jax.tree.map(lambda _: False, params)
        learner = anil(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=1, head=nothing,
                       outer_optimizer=optax.sgd(1.0))  # fmt: skip
        with pytest.raises(ValueError, match="adapt_mask selects no parameters"):
            learner.step(learner.init(params), tasks, key=jax.random.key(0))

    def test_a_model_that_declares_no_head_is_named(self):
        class Bare(nn.Module):  # No head_parameters: ANIL cannot know what to adapt.
            @nn.compact
            def __call__(self, x):
                return nn.Dense(WAYS)(x.reshape(x.shape[0], -1))

        with pytest.raises(ValueError, match="anil needs the model to declare its output layer .* which Bare lacks"):
            declared_split(Bare(), "head_parameters", needed_by="anil")
        with pytest.raises(ValueError, match="Conv4 was built without a head"):
            Conv4(num_classes=None, features=4, depth=2).head_parameters(_tiny_conv_problem(num_classes=None)[1])

    def test_protonets_refuse_float_labels(self):
        model, params, tasks = _tiny_conv_problem(num_classes=None)
        learner = protonets(model.apply, ways=WAYS, outer_optimizer=optax.sgd(1.0))
        bad = tasks._replace(support_y=tasks.support_y.astype(jnp.float32), query_y=tasks.query_y.astype(jnp.float32))
        with pytest.raises(TypeError, match="tasks.support_y must be an integer array, got dtype float32"):
            learner.step(learner.init(params), bad, key=jax.random.key(0))

    def test_maml_query_shape_mismatch_names_argument(self):
        model, params, tasks = _tiny_conv_problem()
        learner = maml(model.apply, softmax_cross_entropy, inner_lr=LR, inner_steps=1, outer_optimizer=optax.sgd(1.0))
        with pytest.raises(ValueError, match="tasks.query_x must have shape"):
            learner.step(learner.init(params), tasks._replace(query_x=tasks.query_x[:, :, :4]), key=jax.random.key(0))
