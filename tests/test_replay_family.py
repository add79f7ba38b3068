"""ER-ACE, MAS and GEM against the papers' formulas written as plain loops, and each through the command."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from metajax.cli import main
from metajax.continual import ContinualBatch, Experience, continual_learner, er_ace, gem, memory_aware_synapses
from metajax.continual.gem import GEM_EPS, nonnegative_quadratic_program, project_to_cone
from metajax.continual.mas import output_sensitivity
from metajax.continual.replay import buffered_example
from metajax.continual.replay_buffer import BufferedExample, empty_buffer, reservoir_add
from metajax.models import MLP

FEATURES, OUTPUTS, N, BATCH = 5, 8, 12, 4
RTOL, ATOL = 1e-4, 1e-6  # float32 sums of a few dozen terms
MODEL = MLP((7,), OUTPUTS)


def _params(seed=0):
    return MODEL.init(jax.random.key(seed), jnp.zeros((1, FEATURES)))


def _experience(index, n=N):
    """Experience ``index`` holds classes 2 index and 2 index + 1; its head is every output (class-IL)."""
    x = jax.random.normal(jax.random.key(100 + index), (n, FEATURES))
    y = (jnp.arange(n) % 2 + 2 * index).astype(jnp.int32)
    return Experience(x, y, jnp.ones((OUTPUTS,), bool), jnp.asarray(index))


def _cross_entropy_over(logits, label, allowed):
    """-log softmax over the ``allowed`` outputs (a list of indices) at ``label``: the formula, one row."""
    allowed_logits = jnp.stack([logits[c] for c in allowed])
    return jax.nn.logsumexp(allowed_logits) - logits[label]


def _er_ace_loss_by_a_loop(incoming, replayed):
    """The paper's L_ACE as a function of the parameters: incoming rows over the classes present in the
    incoming batch, replayed rows over their head, each a mean over its rows, added (jitted: the loop
    over rows is traced once)."""
    labels_in, labels_bf = ([int(label) for label in np.asarray(rows.y)] for rows in (incoming, replayed))
    present = sorted(set(labels_in))
    heads = [[c for c in range(OUTPUTS) if row[c]] for row in np.asarray(replayed.logit_mask)]

    def loss(params):
        logits, replay_logits = MODEL.apply(params, incoming.x), MODEL.apply(params, replayed.x)
        loss_in = sum(_cross_entropy_over(logits[i], y, present) for i, y in enumerate(labels_in))
        loss_bf = sum(_cross_entropy_over(replay_logits[i], y, heads[i]) for i, y in enumerate(labels_bf))
        return loss_in / len(labels_in) + loss_bf / max(len(labels_bf), 1)

    return jax.jit(loss)


def _filled_buffer(capacity, experience, rows):
    items = BufferedExample(experience.x[:rows], experience.y[:rows], jnp.ones((rows, OUTPUTS), bool))
    buffer = empty_buffer(capacity, buffered_example((FEATURES,), OUTPUTS))
    return jax.jit(reservoir_add)(buffer, items, key=jax.random.key(0))


def test_er_ace_scores_incoming_rows_over_their_batchs_classes_and_replayed_rows_over_their_head():
    strategy = er_ace(8, example_shape=(FEATURES,), num_outputs=OUTPUTS, replay_batch=5)
    current = _experience(1)
    incoming = ContinualBatch(current.x[:BATCH], current.y[:BATCH], jnp.ones((BATCH, OUTPUTS), bool), jnp.ones(BATCH))
    params = _params()

    @jax.jit
    def learner_loss(p, batch):  # What the learner adds up: the data loss and the penalty, one forward pass.
        outputs = MODEL.apply(p, batch.x)
        data = jnp.sum(batch.weight * _masked_nll(outputs, batch)) / jnp.maximum(jnp.sum(batch.weight), 1.0)
        return data + strategy.penalty(p, buffer, batch, outputs)

    buffer = _filled_buffer(8, _experience(0), 6)
    batch = jax.jit(strategy.augment)(buffer, incoming, jax.random.key(1))
    np.testing.assert_array_equal(
        batch.logit_mask[:BATCH], jnp.broadcast_to(jnp.arange(OUTPUTS) // 2 == 1, (BATCH, OUTPUTS))
    )
    replayed = BufferedExample(batch.x[BATCH:], batch.y[BATCH:], batch.logit_mask[BATCH:])
    assert replayed.y.shape == (5,) and set(np.asarray(replayed.y)) <= {0, 1}
    expected = _er_ace_loss_by_a_loop(incoming, replayed)(params)
    np.testing.assert_allclose(learner_loss(params, batch), expected, rtol=RTOL)

    buffer = strategy.init(params)  # Empty: nothing replayed, the incoming term alone.
    batch = jax.jit(strategy.augment)(buffer, incoming, jax.random.key(1))
    nothing = BufferedExample(*(rows[:0] for rows in (incoming.x, incoming.y, incoming.logit_mask)))
    alone = _er_ace_loss_by_a_loop(incoming, nothing)(params)
    np.testing.assert_allclose(learner_loss(params, batch), alone, rtol=RTOL)


def _masked_nll(outputs, batch):
    log_probs = jax.nn.log_softmax(jnp.where(batch.logit_mask, outputs, -1e9))
    return -jnp.take_along_axis(log_probs, batch.y[:, None], axis=1)[:, 0]


@pytest.mark.parametrize("jit", [True, False])
def test_an_er_ace_learner_step_descends_the_papers_loss(jit):
    """One SGD step of the learner over a buffer of one example (so every replayed row is that example)
    equals a step down the gradient of the loop's L_ACE."""
    strategy = er_ace(4, example_shape=(FEATURES,), num_outputs=OUTPUTS)
    learner = continual_learner(MODEL.apply, strategy, optax.sgd(0.5), epochs=1, batch_size=N)
    train = jax.jit(learner.train_experience) if jit else learner.train_experience
    old, current = _experience(0), _experience(1)
    state = learner.init(_params())
    state = state._replace(strategy_state=_filled_buffer(4, old, 1))
    trained, _ = train(state, current, key=jax.random.key(2))

    heads = jnp.ones((N, OUTPUTS), bool)  # One step takes the whole experience, in some order: the loss ignores it.
    replayed = BufferedExample(jnp.repeat(old.x[:1], N, 0), jnp.repeat(old.y[:1], N), heads)
    incoming = ContinualBatch(current.x, current.y, heads, jnp.ones(N))
    grads = jax.grad(_er_ace_loss_by_a_loop(incoming, replayed))(_params())
    expected = jax.tree.map(lambda p, g: p - 0.5 * g, _params(), grads)
    chex.assert_trees_all_close(trained.params, expected, rtol=RTOL, atol=ATOL)


def _sensitivity_by_a_loop(params, x, heads):
    """MAS's Omega: the mean over examples of |d ||f(x_k)||^2 / d theta|, one example at a time."""
    gradient = jax.jit(jax.grad(lambda p, xk, hk: jnp.sum(jnp.where(hk, MODEL.apply(p, xk[None])[0], 0.0) ** 2)))
    total = jax.tree.map(jnp.zeros_like, params)
    for k in range(x.shape[0]):
        total = jax.tree.map(lambda t, g: t + jnp.abs(g), total, gradient(params, x[k], heads[k]))
    return jax.tree.map(lambda t: t / x.shape[0], total)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_mas_importance_equals_a_loop_of_per_example_gradients(chunk_size, jit):
    x = _experience(0).x
    heads = jax.random.bernoulli(jax.random.key(3), 0.6, (N, OUTPUTS))  # A head per example: outputs that count.
    sensitivity = lambda p, x, h: output_sensitivity(MODEL.apply, p, x, h, chunk_size=chunk_size)  # noqa: E731
    importance = (jax.jit(sensitivity) if jit else sensitivity)(_params(), x, heads)
    chex.assert_trees_all_close(importance, _sensitivity_by_a_loop(_params(), x, heads), rtol=RTOL, atol=1e-7)


def test_mas_sums_importances_over_experiences_and_anchors_at_the_latest_weights():
    strategy = memory_aware_synapses(MODEL.apply, mas_lambda=0.7, importance_samples=8)
    first, second = _experience(0), _experience(1)
    state = strategy.init(_params(0))
    assert float(strategy.penalty(_params(5), state, None, None)) == 0.0
    state = strategy.after_experience(state, _params(1), first, jax.random.key(0))
    state = strategy.after_experience(state, _params(2), second, jax.random.key(1))
    heads = jnp.ones((8, OUTPUTS), bool)
    omega = jax.tree.map(
        jnp.add,
        _sensitivity_by_a_loop(_params(1), first.x[:8], heads),
        _sensitivity_by_a_loop(_params(2), second.x[:8], heads),
    )
    chex.assert_trees_all_close(state.importance, omega, rtol=RTOL, atol=1e-7)
    moved = _params(5)
    terms = jax.tree.map(lambda o, p, a: jnp.sum(o * (p - a) ** 2), omega, moved, _params(2))
    np.testing.assert_allclose(strategy.penalty(moved, state, None, None), 0.7 * sum(jax.tree.leaves(terms)), rtol=RTOL)


def _dual_by_scipy(references, gradient, margin):
    """The paper's dual, ``min_{v >= margin} 1/2 v^T P v + (G g)^T v`` with ``P = G G^T + eps I``, in float64:
    with ``v = margin + u`` and ``P = L L^T`` it is NNLS, ``min_{u >= 0} ||L^T u + L^-1 c||``."""
    g64, r64 = np.asarray(gradient, np.float64), np.asarray(references, np.float64)
    gram = r64 @ r64.T + GEM_EPS * np.eye(len(r64))
    linear = r64 @ g64 + margin * gram.sum(axis=1)
    lower = np.linalg.cholesky(gram)
    u, _ = scipy.optimize.nnls(lower.T, -np.linalg.solve(lower, linear))
    return margin + u


def _conflicting_gradients(k, p, seed):
    """``k`` references and a gradient with a negative dot product with several of them."""
    rng = np.random.default_rng(seed)
    references = rng.normal(size=(k, p)) + 0.5 * rng.normal(size=(1, p))  # Correlated, as tasks' gradients are.
    gradient = -0.8 * references[: max(k // 2, 1)].mean(axis=0) + rng.normal(size=p)
    return jnp.asarray(references, jnp.float32), jnp.asarray(gradient, jnp.float32)


@pytest.mark.parametrize("k", [1, 2, 3, 8, 20])
def test_the_active_set_solver_matches_scipy_on_gems_dual(k):
    for seed in range(3):
        references, gradient = _conflicting_gradients(k, 30, seed)
        gram = references @ references.T + GEM_EPS * jnp.eye(k)
        linear = references @ gradient + 0.5 * jnp.sum(gram, axis=1)
        u = jax.jit(nonnegative_quadratic_program)(gram, linear)
        expected = _dual_by_scipy(references, gradient, 0.5) - 0.5
        np.testing.assert_allclose(u, expected, rtol=1e-3, atol=1e-4 * max(1.0, float(np.max(expected))))


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_gems_projection_keeps_every_past_gradient_at_a_nonnegative_angle(margin):
    for k, seed in [(2, 0), (3, 1), (5, 2), (20, 3)]:
        references, gradient = _conflicting_gradients(k, 30, seed)
        assert np.any(references @ gradient < 0)
        projected = jax.jit(project_to_cone)(gradient, references, jnp.ones(k, bool), margin)
        v = _dual_by_scipy(references, gradient, margin)
        np.testing.assert_allclose(projected, gradient + v @ np.asarray(references), rtol=1e-3, atol=1e-3)
        # KKT of the dual: G g~ + eps v >= 0, so each constraint holds up to the ridge's eps * v.
        slack = np.asarray(references @ projected) + GEM_EPS * v
        assert np.all(slack >= -1e-3 * np.abs(v).max()), slack


def test_gems_projection_leaves_an_agreeing_gradient_and_ignores_empty_rows():
    references, gradient = _conflicting_gradients(3, 30, 0)
    positive = jnp.abs(references)  # Rows of positive entries: a positive gradient agrees with every one.
    agreeing = jnp.abs(gradient)
    np.testing.assert_array_equal(project_to_cone(agreeing, positive, jnp.ones(3, bool), 0.5), agreeing)
    empty_row = jnp.concatenate([references, -10.0 * gradient[None]])  # Would conflict, but holds nothing.
    valid = jnp.array([True, True, True, False])
    np.testing.assert_allclose(
        project_to_cone(gradient, empty_row, valid, 0.5), project_to_cone(gradient, references, valid[:3], 0.5)
    )


def _data_loss(params, batch):
    outputs = MODEL.apply(params, batch.x)
    return jnp.sum(batch.weight * _masked_nll(outputs, batch)) / jnp.maximum(jnp.sum(batch.weight), 1.0)


def test_gem_keeps_a_memory_per_experience_and_projects_against_one_gradient_each():
    strategy = gem(5, example_shape=(FEATURES,), num_outputs=OUTPUTS, memory_experiences=3, margin=0.5)
    params = _params()
    state = strategy.init(params)
    stored = [_experience(0), _experience(1, n=3), _experience(2)]  # The second has fewer than 5 examples.
    for index, experience in enumerate(stored):
        state = jax.jit(strategy.after_experience)(state, params, experience, jax.random.key(index))
    np.testing.assert_array_equal(state.weight.sum(axis=1), [5, 3, 5])
    for row, experience in enumerate(stored):
        stored_x = np.asarray(state.memory.x[row])[np.asarray(state.weight[row]) > 0]
        assert all(any(np.array_equal(x, e) for e in np.asarray(experience.x)) for x in stored_x)
        assert len({tuple(x) for x in stored_x}) == len(stored_x)  # Drawn without replacement.
        assert set(np.asarray(state.memory.y[row])) <= set(np.asarray(experience.y))

    current = _experience(3)
    batch = ContinualBatch(current.x[:BATCH], current.y[:BATCH], jnp.ones((BATCH, OUTPUTS), bool), jnp.ones(BATCH))
    grads = jax.grad(_data_loss)(params, batch)  # Learning new classes raises the old ones' loss.
    projected = jax.jit(strategy.project, static_argnums=4)(grads, params, state, jax.random.key(0), _data_loss)

    def flat(tree):
        return jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree.leaves(tree)])

    references = []
    for row in range(3):  # One gradient per past experience, on its stored examples alone.
        memory = ContinualBatch(
            state.memory.x[row], state.memory.y[row], state.memory.logit_mask[row], state.weight[row]
        )
        references.append(flat(jax.jit(jax.grad(_data_loss))(params, memory)))
    references = jnp.stack(references)
    assert np.any(references @ flat(grads) < 0)
    expected = project_to_cone(flat(grads), references, jnp.ones(3, bool), 0.5)
    np.testing.assert_allclose(flat(projected), expected, rtol=1e-3, atol=1e-5)

    state = strategy.after_experience(state, params, current, jax.random.key(9))  # A ring: row 0 is replaced.
    np.testing.assert_array_equal(np.asarray(state.memory.y[0]) // 2, 3)


@pytest.mark.parametrize(
    "strategy, options",
    [
        ("er-ace", ["--buffer-size", "200", "--batch-size", "10"]),
        ("mas", ["--mas-lambda", "1.0", "--mas-samples", "64"]),
        ("gem", ["--gem-memory", "32", "--gem-experiences", "5"]),
    ],
)
def test_each_runs_from_the_command(strategy, options, tmp_path):
    args = ["continual", "--strategy", strategy, *options, "--no-progress", "--workdir", str(tmp_path)]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["strategy"] == strategy and len(summary["accuracy_matrix"]) == 5
    assert np.isfinite(summary["final_average_accuracy"]["mean"])


@pytest.mark.parametrize(
    "build",
    [
        lambda: er_ace(8, example_shape=(FEATURES,), num_outputs=OUTPUTS),
        lambda: memory_aware_synapses(MODEL.apply, mas_lambda=1.0),
        lambda: gem(4, example_shape=(FEATURES,), num_outputs=OUTPUTS, memory_experiences=2),
    ],
    ids=["er-ace", "mas", "gem"],
)
def test_a_learner_compiles_each_once_for_the_whole_stream(build):
    learner = continual_learner(MODEL.apply, build(), optax.sgd(0.1), epochs=1, batch_size=BATCH)
    train = jax.jit(learner.train_experience)
    state = learner.init(_params())
    for index in range(3):  # The third experience overwrites GEM's first memory row.
        state, metrics = train(state, _experience(index), key=jax.random.key(index))
        assert np.isfinite(metrics["loss"])
    assert train._cache_size() == 1
