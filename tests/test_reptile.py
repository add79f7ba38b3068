"""Reptile against a plain Python loop over tasks and steps, jitted and not."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.data import TaskBatch
from metajax.meta import mean_squared_error, reptile, softmax_cross_entropy
from metajax.meta.inner_loop import minibatch_indices
from metajax.models import MLP, Conv4

WAYS, SHOTS, TASKS, STEPS, BATCH = 3, 2, 4, 3, 4
# float32 through a few dozen ops of a conv net: 1e-5 relative is ample, and an
# off-by-one step or a wrong sign moves results by far more.
RTOL, ATOL = 1e-4, 1e-5


def _tiny_conv_problem(seed=0):
    model = Conv4(num_classes=WAYS, features=4, depth=2)
    keys = jax.random.split(jax.random.key(seed), 4)
    support_x = jax.random.normal(keys[0], (TASKS, WAYS * SHOTS, 8, 8, 1))
    query_x = jax.random.normal(keys[1], (TASKS, WAYS, 8, 8, 1))
    support_y = jnp.tile(jnp.arange(WAYS, dtype=jnp.int32).repeat(SHOTS), (TASKS, 1))
    query_y = jnp.tile(jnp.arange(WAYS, dtype=jnp.int32), (TASKS, 1))
    params = model.init(keys[2], support_x[0])
    return model, params, TaskBatch(support_x, support_y, query_x, query_y)


def _reference_meta_step(model, params, slots, tasks, key, inner_update, meta_step_size):
    """The paper's algorithm written plainly: a loop over tasks, a loop over steps.

    Every task starts from the carried inner optimizer ``slots``; the carried
    slots become the mean of the tasks' final slots.
    """
    task_keys = jax.random.split(key, TASKS)
    adapted_all, slots_all = [], []
    for t in range(TASKS):
        x, y = np.asarray(tasks.support_x[t]), np.asarray(tasks.support_y[t])
        batches = np.asarray(minibatch_indices(task_keys[t], x.shape[0], BATCH, STEPS))
        p, task_slots = params, slots
        for batch in batches:
            grads = _reference_grad(model, p, x[batch], y[batch])
            p, task_slots = inner_update(p, grads, task_slots)
        adapted_all.append(p)
        slots_all.append(task_slots)
    mean_adapted = jax.tree.map(lambda *a: sum(a) / TASKS, *adapted_all)
    new_params = jax.tree.map(lambda p, a: p + meta_step_size * (a - p), params, mean_adapted)
    return new_params, (None if slots is None else jax.tree.map(lambda *s: sum(s) / TASKS, *slots_all))


@partial(jax.jit, static_argnums=0)  # Compiled once; the loops around it stay plain Python.
def _reference_grad(model, params, x, y):
    return jax.grad(lambda p: softmax_cross_entropy(model.apply(p, x), y))(params)


def _sgd_update(lr):
    def update(p, g, slots):
        return jax.tree.map(lambda p, g: p - lr * g, p, g), slots

    return update


def _adam_beta1_zero_update(lr, b2=0.999, eps=1e-8):
    """Adam with beta1 = 0 from its formula: v = b2 v + (1 - b2) g^2, bias-corrected with the step count."""

    def update(p, g, slots):
        count, v = slots
        count = count + 1
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g**2, v, g)
        step = jax.tree.map(lambda g, v: g / (jnp.sqrt(v / (1 - b2**count)) + eps), g, v)
        return jax.tree.map(lambda p, s: p - lr * s, p, step), (count, v)

    return update


@pytest.mark.parametrize(
    "optimizer,reference_update",
    [(optax.sgd(0.1), _sgd_update(0.1)), (optax.adam(1e-2, b1=0.0), _adam_beta1_zero_update(1e-2))],
    ids=["sgd", "adam-beta1-0"],
)
class TestMetaStepMatchesPythonLoop:
    @pytest.mark.parametrize("jit", [True, False], ids=["jit", "no-jit"])
    def test_first_and_annealed_steps(self, optimizer, reference_update, jit):
        model, params, tasks = _tiny_conv_problem()
        meta_iters = 4
        learner = reptile(
            model.apply,
            softmax_cross_entropy,
            inner_optimizer=optimizer,
            inner_steps=STEPS,
            inner_batch=BATCH,
            meta_step_size=0.8,
            meta_step_size_final=0.2,
            meta_iters=meta_iters,
        )
        step = jax.jit(learner.step) if jit else learner.step
        state = learner.init(params)
        expected = params
        is_adam = hasattr(state.learner_state.inner_opt_state[0], "nu")
        slots = (0, jax.tree.map(jnp.zeros_like, params)) if is_adam else None
        for i in range(3):
            key = jax.random.key(10 + i)
            # The paper's annealing: frac = i / meta_iters, linear from 0.8 to 0.2.
            meta_step_size = (1 - i / meta_iters) * 0.8 + (i / meta_iters) * 0.2
            expected, slots = _reference_meta_step(model, expected, slots, tasks, key, reference_update, meta_step_size)
            state, metrics = step(state, tasks, key=key)
            np.testing.assert_allclose(metrics["meta_step_size"], meta_step_size, rtol=1e-6)
            chex.assert_trees_all_close(state.params, expected, rtol=RTOL, atol=ATOL)
            if is_adam:  # The carried second moments and step count.
                adam_state = state.learner_state.inner_opt_state[0]
                assert int(adam_state.count) == slots[0] == STEPS * (i + 1)
                chex.assert_trees_all_close(adam_state.nu, slots[1], rtol=RTOL, atol=1e-9)
        assert int(state.step) == 3


def test_reset_inner_optimizer_starts_every_task_fresh():
    model, params, tasks = _tiny_conv_problem(seed=2)
    learner = reptile(
        model.apply, softmax_cross_entropy, inner_optimizer=optax.adam(1e-2, b1=0.0), inner_steps=STEPS,
        inner_batch=BATCH, meta_step_size=0.5, meta_step_size_final=0.5, meta_iters=10, reset_inner_optimizer=True,
    )  # fmt: skip
    step = jax.jit(learner.step)
    state, expected = learner.init(params), params
    fresh = (0, jax.tree.map(jnp.zeros_like, params))
    for i in range(2):
        key = jax.random.key(20 + i)
        expected, _ = _reference_meta_step(model, expected, fresh, tasks, key, _adam_beta1_zero_update(1e-2), 0.5)
        state, _ = step(state, tasks, key=key)
        chex.assert_trees_all_close(state.params, expected, rtol=RTOL, atol=ATOL)
    assert int(state.learner_state.inner_opt_state[0].count) == 0


def test_meta_step_moves_params_toward_adapted_weights():
    """With meta step size 1 the new params are the mean of the adapted ones."""
    model, params, tasks = _tiny_conv_problem(seed=1)
    learner = reptile(
        model.apply, softmax_cross_entropy, inner_optimizer=optax.sgd(0.1), inner_steps=STEPS, inner_batch=BATCH,
        meta_step_size=1.0, meta_step_size_final=1.0, meta_iters=10,
    )  # fmt: skip
    key = jax.random.key(3)
    state, _ = jax.jit(learner.step)(learner.init(params), tasks, key=key)
    # adapt() uses the evaluation inner loop, which defaults to the training one.
    keys = jax.random.split(key, TASKS)
    adapted = [
        learner.adapt(learner.init(params), tasks.support_x[t], tasks.support_y[t], key=keys[t]) for t in range(TASKS)
    ]
    chex.assert_trees_all_close(state.params, jax.tree.map(lambda *a: sum(a) / TASKS, *adapted), rtol=RTOL, atol=ATOL)


def test_second_step_does_not_recompile():
    model, params, tasks = _tiny_conv_problem()
    learner = reptile(
        model.apply, softmax_cross_entropy, inner_optimizer=optax.sgd(0.1), inner_steps=STEPS, inner_batch=BATCH,
        meta_iters=10,
    )  # fmt: skip
    step = jax.jit(chex.assert_max_traces(learner.step, n=1))
    state = learner.init(params)
    for i in range(3):
        state, _ = step(state, tasks, key=jax.random.key(i))
    chex.clear_trace_counter()


def test_minibatches_sweep_shuffled_epochs():
    batches = np.asarray(minibatch_indices(jax.random.key(0), 6, 4, 3))  # 12 indices = 2 epochs of 6.
    flat = batches.reshape(-1)
    assert sorted(flat[:6]) == list(range(6)) and sorted(flat[6:]) == list(range(6))


class TestEvaluate:
    def _learner(self, model, transductive):
        return reptile(
            model.apply, softmax_cross_entropy, inner_optimizer=optax.sgd(0.1), inner_steps=STEPS,
            inner_batch=BATCH, meta_iters=10, eval_inner_steps=2, eval_inner_batch=3, transductive=transductive,
        )  # fmt: skip

    @pytest.mark.parametrize("jit", [True, False], ids=["jit", "no-jit"])
    @pytest.mark.parametrize("transductive", [True, False])
    def test_accuracy_matches_manual_prediction(self, transductive, jit):
        model, params, tasks = _tiny_conv_problem()
        learner = self._learner(model, transductive)
        key = jax.random.key(5)
        state = learner.init(params)
        metrics = (jax.jit(learner.evaluate) if jit else learner.evaluate)(state, tasks, key=key)
        keys = jax.random.split(key, TASKS)
        adapt = jax.jit(learner.adapt)
        for t in range(TASKS):
            adapted = adapt(state, tasks.support_x[t], tasks.support_y[t], key=keys[t])
            if transductive:
                logits = model.apply(adapted, tasks.query_x[t])
            else:  # Each query example shares batch statistics with the support set only.
                logits = jnp.stack(
                    [model.apply(adapted, jnp.concatenate([tasks.support_x[t], q[None]]))[-1] for q in tasks.query_x[t]]
                )
            expected = np.mean(np.argmax(logits, -1) == np.asarray(tasks.query_y[t]))
            np.testing.assert_allclose(metrics["accuracy"][t], expected)
            np.testing.assert_allclose(
                metrics["loss"][t], softmax_cross_entropy(logits, tasks.query_y[t]), rtol=RTOL, atol=ATOL
            )

    def test_transduction_changes_batch_norm_predictions(self):
        model, params, tasks = _tiny_conv_problem()
        key = jax.random.key(5)
        learners = [self._learner(model, mode) for mode in (True, False)]
        transductive, inductive = (lrn.evaluate(lrn.init(params), tasks, key=key)["loss"] for lrn in learners)
        assert not np.allclose(transductive, inductive)

    def test_regression_reports_loss_only(self):
        model = MLP((8,), 1)
        x = jax.random.normal(jax.random.key(0), (2, 5, 1))
        tasks = TaskBatch(x, jnp.sin(x), x, jnp.sin(x))
        learner = reptile(
            model.apply, mean_squared_error, inner_optimizer=optax.sgd(0.01), inner_steps=2, inner_batch=5,
            meta_iters=1,
        )  # fmt: skip
        metrics = learner.evaluate(learner.init(model.init(jax.random.key(1), x[0])), tasks, key=jax.random.key(2))
        assert set(metrics) == {"loss"} and metrics["loss"].shape == (2,)


class TestBadInput:
    def _learner(self, model):
        return reptile(model.apply, softmax_cross_entropy, inner_optimizer=optax.sgd(0.1), inner_steps=1,
                       inner_batch=2, meta_iters=1)  # fmt: skip

    def test_query_example_shape_mismatch_names_argument(self):
        model, params, tasks = _tiny_conv_problem()
        bad = tasks._replace(query_x=tasks.query_x[:, :, :4])
        with pytest.raises(ValueError, match=r"tasks\.query_x must have shape \[4, query_size, \*\(8, 8, 1\)\]"):
            self._learner(model).step(self._learner(model).init(params), bad, key=jax.random.key(0))

    def test_labels_without_task_axis_names_argument(self):
        model, params, tasks = _tiny_conv_problem()
        bad = tasks._replace(support_y=tasks.support_y[0])
        with pytest.raises(ValueError, match=r"tasks\.support_y must have shape"):
            learner = self._learner(model)
            learner.evaluate(learner.init(params), bad, key=jax.random.key(0))

    def test_non_positive_inner_steps(self):
        with pytest.raises(ValueError, match="inner steps and inner batch must be >= 1"):
            reptile(lambda p, x: x, softmax_cross_entropy, inner_optimizer=optax.sgd(0.1), inner_steps=0,
                    inner_batch=1)  # fmt: skip
