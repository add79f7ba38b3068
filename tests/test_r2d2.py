"""R2D2 against the paper's formula: the ridge solution in its primal form, the meta-gradient from a
Python loop over tasks differentiated by ``jax.grad``, jitted and not; and from the command."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.cli import main
from metajax.data import TaskBatch
from metajax.meta import R2D2State, r2d2, softmax_cross_entropy
from metajax.meta.r2d2 import ridge_regression_weights
from metajax.models import Conv4
from metajax.train import MetaLearningConfig

WAYS, SHOTS, QUERIES, TASKS = 3, 2, 2, 4
RTOL, ATOL = 1e-4, 1e-5


def _tiny_problem(seed=0):
    model = Conv4(num_classes=None, features=4, depth=2)  # An embedding: 2 x 2 x 4 = 16 features.
    keys = jax.random.split(jax.random.key(seed), 3)
    support_x = jax.random.normal(keys[0], (TASKS, WAYS * SHOTS, 8, 8, 1))
    query_x = jax.random.normal(keys[1], (TASKS, WAYS * QUERIES, 8, 8, 1))
    support_y = jnp.tile(jnp.arange(WAYS, dtype=jnp.int32).repeat(SHOTS), (TASKS, 1))
    query_y = jnp.tile(jnp.arange(WAYS, dtype=jnp.int32).repeat(QUERIES), (TASKS, 1))
    return model, model.init(keys[2], support_x[0]), TaskBatch(support_x, support_y, query_x, query_y)


def _primal_logits(support, support_y, queries, scale, bias, penalty):
    """The paper's ridge classifier in its primal form, ``(X^T X + n penalty I_d)^-1 X^T Y``, with the
    bias column; a d x d solve where the learner does an n x n one."""
    support = jnp.concatenate([support, jnp.ones((support.shape[0], 1))], axis=1)
    queries = jnp.concatenate([queries, jnp.ones((queries.shape[0], 1))], axis=1)
    n, d = support.shape
    targets = jax.nn.one_hot(support_y, WAYS)
    weights = jnp.linalg.inv(support.T @ support + n * penalty * jnp.eye(d)) @ support.T @ targets
    return scale * queries @ weights + bias


def test_dual_ridge_weights_equal_the_primal_solution():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 40)), rng.normal(size=(6, 3))
    primal = np.linalg.solve(x.T @ x + 6 * 0.7 * np.eye(40), x.T @ y)
    dual = ridge_regression_weights(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), 0.7)
    np.testing.assert_allclose(dual, primal, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("learn_penalty", [False, True], ids=["fixed-penalty", "learned-penalty"])
def test_meta_gradient_matches_the_primal_formula_in_a_python_loop(jit, learn_penalty):
    model, params, tasks = _tiny_problem()
    learner = r2d2(model.apply, ways=WAYS, outer_optimizer=optax.sgd(1.0), initial_scale=3.0, initial_penalty=0.5,
                   learn_penalty=learn_penalty)  # fmt: skip
    state = learner.init(params)
    step = jax.jit(learner.step) if jit else learner.step
    new_state, metrics = step(state, tasks, key=jax.random.key(0))

    def task_loss(meta, task):
        p, (log_scale, bias, log_penalty) = meta
        support_x, support_y, query_x, query_y = task
        logits = _primal_logits(
            model.apply(p, support_x), support_y, model.apply(p, query_x), jnp.exp(log_scale), bias,
            jnp.exp(log_penalty),
        )  # fmt: skip
        return softmax_cross_entropy(logits, query_y)

    head = (jnp.log(3.0), jnp.zeros(()), jnp.log(0.5))
    grads = [jax.grad(task_loss)((params, head), jax.tree.map(lambda a, t=t: a[t], tasks)) for t in range(TASKS)]
    expected_params, expected_head = jax.tree.map(lambda *g: sum(g) / TASKS, *grads)

    # SGD with rate 1: the update is minus the meta-gradient.
    moved = jax.tree.map(jnp.subtract, params, new_state.params)
    chex.assert_trees_all_close(moved, expected_params, rtol=RTOL, atol=ATOL)
    start, end = state.learner_state, new_state.learner_state
    np.testing.assert_allclose(start.log_scale - end.log_scale, expected_head[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(start.bias - end.bias, expected_head[1], rtol=RTOL, atol=ATOL)
    expected_penalty_move = expected_head[2] if learn_penalty else 0.0
    np.testing.assert_allclose(start.log_penalty - end.log_penalty, expected_penalty_move, rtol=RTOL, atol=ATOL)
    assert not learn_penalty or abs(float(expected_head[2])) > 1e-6  # The penalty's gradient is not zero here.
    np.testing.assert_allclose(metrics["scale"], np.exp(end.log_scale), rtol=1e-6)


@pytest.mark.parametrize("transductive", [True, False])
def test_evaluate_scores_the_ridge_classifier(transductive):
    model, params, tasks = _tiny_problem(seed=1)
    learner = r2d2(model.apply, ways=WAYS, outer_optimizer=optax.adam(1e-3), transductive=transductive)
    state = learner.init(params)
    scores = jax.jit(learner.evaluate)(state, tasks, key=jax.random.key(0))
    head = state.learner_state
    for t in range(TASKS):
        support = model.apply(params, tasks.support_x[t])
        if transductive:
            queries = model.apply(params, tasks.query_x[t])
        else:  # Each query embedded in a batch with the support set alone.
            queries = jnp.stack(
                [model.apply(params, jnp.concatenate([tasks.support_x[t], q[None]]))[-1] for q in tasks.query_x[t]]
            )
        logits = _primal_logits(support, tasks.support_y[t], queries, head.scale, head.bias, head.penalty)
        accuracy = np.mean(np.argmax(logits, axis=-1) == np.asarray(tasks.query_y[t]))
        np.testing.assert_allclose(scores["accuracy"][t], accuracy)
        np.testing.assert_allclose(scores["loss"][t], softmax_cross_entropy(logits, tasks.query_y[t]), rtol=1e-3)


def test_second_step_does_not_recompile():
    model, params, tasks = _tiny_problem()
    learner = r2d2(model.apply, ways=WAYS, outer_optimizer=optax.adam(1e-3))
    step = jax.jit(chex.assert_max_traces(learner.step, n=1))
    state = learner.init(params)
    for i in range(3):
        state, _ = step(state, jax.tree.map(lambda a, i=i: jnp.roll(a, i, axis=0), tasks), key=jax.random.key(i))
    chex.clear_trace_counter()
    assert isinstance(state.learner_state, R2D2State)


def test_bad_arguments():
    model, _, _ = _tiny_problem()
    with pytest.raises(ValueError, match="ways must be >= 2"):
        r2d2(model.apply, ways=1, outer_optimizer=optax.sgd(1.0))
    with pytest.raises(ValueError, match="initial_penalty must be > 0"):
        r2d2(model.apply, ways=3, outer_optimizer=optax.sgd(1.0), initial_penalty=0.0)
    with pytest.raises(ValueError, match="r2d2 is a classifier, and sinusoid regression has no classes"):
        MetaLearningConfig(algorithm="r2d2", dataset="sinusoid").resolved()
    assert MetaLearningConfig(algorithm="r2d2").resolved().dataset == "omniglot"  # Its default: a dataset with classes.


def test_r2d2_runs_from_the_command(omniglot_dir, tmp_path):
    args = [
        "r2d2", "--dataset", "omniglot", "--data-dir", str(omniglot_dir), "--ways", "3", "--shots", "1",
        "--query-shots", "2", "--meta-batch", "2", "--meta-iters", "4", "--log-every", "2", "--eval-tasks", "8",
        "--eval-chunk", "4", "--no-progress", "--learn-penalty", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["algorithm_options"]["learn_penalty"] is True
    for mode in ("transductive", "non_transductive"):
        assert 0.0 <= summary[f"test_accuracy_{mode}"] <= 1.0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"query_loss", "query_accuracy", "scale", "penalty"} <= set(lines[0])
