"""Continual-learning strategies, buffers and metrics against plain references."""

import functools
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.continual import (
    ContinualBatch,
    Experience,
    Strategy,
    agem,
    average_accuracy,
    backward_transfer,
    compose,
    continual_learner,
    diagonal_fisher,
    ewc,
    forgetting,
    forward_transfer,
    learning_without_forgetting,
    masked_cross_entropy,
    naive,
    replay,
    synaptic_intelligence,
)
from metajax.continual.replay import buffered_example
from metajax.continual.replay_buffer import BufferedExample, class_balanced_add, empty_buffer, reservoir_add, sample
from metajax.models import MLP
from metajax.train.continual_training import vmap_runs

FEATURES, OUTPUTS, N, BATCH = 5, 4, 24, 8
RTOL, ATOL = 1e-4, 1e-6
MODEL = MLP((6,), OUTPUTS)


def _experience(index, seed=0):
    x = jax.random.normal(jax.random.key(seed + 100 * index), (N, FEATURES))
    y = (jnp.arange(N) % 2 + 2 * (index % 2)).astype(jnp.int32)
    head = jnp.arange(OUTPUTS) // 2 == index % 2
    return Experience(x, y, head, jnp.asarray(index))


def _buffer(capacity, features, outputs):
    """An empty buffer of replay's items: examples of ``features`` inputs and heads of ``outputs``."""
    return empty_buffer(capacity, buffered_example((features,), outputs))


def _offered(x, y, head):
    """Replay's items for ``n`` examples sharing one head."""
    return BufferedExample(x, y, jnp.broadcast_to(head, (x.shape[0], head.shape[-1])))


def _params(seed=0):
    return MODEL.init(jax.random.key(seed), jnp.zeros((1, FEATURES)))


def test_metrics_on_a_hand_made_matrix():
    r = np.array([[0.9, 0.1, 0.2], [0.6, 0.8, 0.3], [0.5, 0.7, 0.95]])
    assert average_accuracy(r) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert backward_transfer(r) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert forward_transfer(r, [0.1, 0.05, 0.25]) == pytest.approx(((0.1 - 0.05) + (0.3 - 0.25)) / 2)
    # Forgetting: best earlier accuracy minus final, over all but the last experience.
    assert forgetting(r) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    with pytest.raises(ValueError, match=r"accuracy_matrix must have shape \[experiences, experiences\]"):
        average_accuracy(np.zeros((2, 3)))


def _fisher_by_a_loop(apply_fn, params, experience):
    squares = []
    for i in range(N):
        grads = jax.grad(
            lambda p, i=i: masked_cross_entropy(
                apply_fn(p, experience.x[i : i + 1]), experience.y[i : i + 1], experience.logit_mask[None], jnp.ones(1)
            )
        )(params)
        squares.append(jax.tree.map(jnp.square, grads))
    return jax.tree.map(lambda *s: sum(s) / N, *squares)


class _SharedDense(nn.Module):
    """One Dense applied twice: its per-example squares do not factorize, so the general path must run."""

    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(FEATURES)
        return nn.Dense(OUTPUTS)(layer(nn.relu(layer(x))))


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("path", ["dense-layers", "per-example-chunks-of-1", "per-example-chunks-of-6"])
def test_diagonal_fisher_equals_a_loop_of_per_example_gradients(path, jit):
    experience, params = _experience(0), _params()
    options = {"dense-layers": {"dense_layers": MODEL.dense_layers}, "per-example-chunks-of-1": {"chunk_size": 1},
               "per-example-chunks-of-6": {"chunk_size": 6}}[path]  # fmt: skip
    fisher_of = functools.partial(diagonal_fisher, MODEL.apply, **options)
    fisher = (jax.jit(fisher_of) if jit else fisher_of)(params, experience.x, experience.y, experience.logit_mask)
    chex.assert_trees_all_close(fisher, _fisher_by_a_loop(MODEL.apply, params, experience), rtol=RTOL, atol=1e-8)


def test_the_mlp_declares_its_dense_layers_and_other_models_take_the_general_path():
    experience, x = _experience(0), _experience(0).x
    params = _params()
    perturbations = {"Dense_0": jnp.ones((N, 6)), "head": jnp.zeros((N, OUTPUTS))}
    outputs, inputs = MODEL.dense_layers(params, x, perturbations)
    assert set(inputs) == {"Dense_0", "head"} and inputs["Dense_0"] is x
    first = params["params"]["Dense_0"]
    hidden = jax.nn.relu(x @ first["kernel"] + first["bias"][None] + 1.0)
    chex.assert_trees_all_close(inputs["head"], hidden, rtol=RTOL)
    head = params["params"]["head"]
    chex.assert_trees_all_close(outputs, hidden @ head["kernel"] + head["bias"][None], rtol=RTOL, atol=ATOL)
    zero = jax.tree.map(jnp.zeros_like, perturbations)
    chex.assert_trees_all_equal(MODEL.dense_layers(params, x, zero)[0], MODEL.apply(params, x))
    shared = _SharedDense()  # No dense_layers: its weights serve twice, where the closed form would be wrong.
    assert not hasattr(shared, "dense_layers")
    params = shared.init(jax.random.key(0), x[:1])
    fisher = diagonal_fisher(shared.apply, params, x, experience.y, experience.logit_mask)
    chex.assert_trees_all_close(fisher, _fisher_by_a_loop(shared.apply, params, experience), rtol=RTOL, atol=1e-8)


@pytest.mark.parametrize("mode", ["separate", "online"])
def test_ewc_penalty_is_the_papers_quadratic(mode):
    strategy = ewc(MODEL.apply, ewc_lambda=3.0, mode=mode, decay=0.5)
    params = _params()
    state = strategy.init(params)
    assert float(strategy.penalty(params, state, None, None)) == 0.0
    anchors, fishers = [], []
    for index in range(2):
        anchor = jax.tree.map(lambda p, i=index: p + 0.1 * (i + 1), params)
        experience = _experience(index)
        state = strategy.after_experience(state, anchor, experience, jax.random.key(0))
        anchors.append(anchor)
        fishers.append(diagonal_fisher(MODEL.apply, anchor, experience.x, experience.y, experience.logit_mask))
    current = _params(seed=1)

    def quadratic(fisher, anchor):
        terms = jax.tree.map(lambda f, a, p: jnp.sum(f * jnp.square(p - a)), fisher, anchor, current)
        return sum(jax.tree.leaves(terms))

    if mode == "separate":
        expected = 1.5 * (quadratic(fishers[0], anchors[0]) + quadratic(fishers[1], anchors[1]))
    else:  # F = decay * F_0 + F_1, anchored at the last weights.
        expected = 1.5 * quadratic(jax.tree.map(lambda a, b: 0.5 * a + b, *fishers), anchors[1])
    np.testing.assert_allclose(strategy.penalty(current, state, None, None), expected, rtol=1e-5)


def _reservoir_trials(trials, capacity, chunks, chunk_size):
    def one(key):
        buffer = _buffer(capacity, 1, 1)
        for c in range(chunks):
            x = (jnp.arange(chunk_size) + c * chunk_size).astype(jnp.float32)[:, None]
            items = _offered(x, jnp.zeros(chunk_size, jnp.int32), jnp.ones(1, bool))
            buffer = reservoir_add(buffer, items, key=jax.random.fold_in(key, c))
        return buffer.items.x[:, 0].astype(jnp.int32)

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), trials)))


def test_reservoir_keeps_every_seen_example_with_equal_probability():
    capacity, total, trials = 10, 100, 4000
    kept = _reservoir_trials(trials, capacity, chunks=4, chunk_size=25)
    assert all(len(set(row)) == capacity for row in kept)  # no example twice
    counts = np.bincount(kept.ravel(), minlength=total)
    # Each example is kept with probability capacity / total = 0.1: 400 of 4000 trials,
    # binomial standard deviation 19; 5 sigma bounds every one of the 100 counts.
    expected, sigma = trials * capacity / total, np.sqrt(trials * 0.1 * 0.9)
    assert np.all(np.abs(counts - expected) < 5 * sigma), counts
    # Chi-square over the 100 examples, 99 degrees of freedom: 99 +- 14; 160 is about 4 sigma.
    assert np.sum((counts - expected) ** 2 / expected) < 160
    # The buffer fills in order before it starts replacing.
    first = _reservoir_trials(2, capacity, chunks=1, chunk_size=7)
    np.testing.assert_array_equal(first[0, :7], np.arange(7))


def test_class_balanced_buffer_gives_every_seen_class_its_quota():
    buffer = _buffer(12, 1, 3)
    for index, classes in enumerate([[0, 1], [2, 3], [4, 5]]):
        y = jnp.repeat(jnp.asarray(classes, jnp.int32), 50)
        x = (y * 1000 + jnp.arange(100)).astype(jnp.float32)[:, None]
        buffer = class_balanced_add(buffer, _offered(x, y, jnp.ones(3, bool)), key=jax.random.key(index), num_classes=6)
        seen = 2 * (index + 1)
        counts = np.bincount(np.asarray(buffer.items.y[: int(buffer.filled)]), minlength=6)
        np.testing.assert_array_equal(counts[:seen], 12 // seen)
        assert int(buffer.filled) == seen * (12 // seen)
        # Stored examples are intact rows of their class.
        np.testing.assert_array_equal(
            np.asarray(buffer.items.x[: int(buffer.filled), 0]) // 1000, buffer.items.y[: int(buffer.filled)]
        )


@pytest.mark.parametrize("jit", [True, False])
def test_sample_draws_the_filled_slots_uniformly(jit):
    buffer = _buffer(8, 1, 1)  # 5 of 8 slots filled, with their slot numbers
    items = _offered(jnp.arange(5.0)[:, None], jnp.zeros(5, jnp.int32), jnp.ones(1, bool))
    buffer = reservoir_add(buffer, items, key=jax.random.key(0))
    draw = jax.jit(sample, static_argnums=1) if jit else sample
    drawn, weight = draw(buffer, 20000, key=jax.random.key(7))
    counts = np.bincount(np.asarray(drawn.x[:, 0]).astype(int), minlength=8)
    assert counts[5:].sum() == 0 and float(weight.min()) == 1.0
    # 4000 expected each, binomial standard deviation 57: 5 sigma bounds every count.
    assert np.all(np.abs(counts[:5] - 4000) < 5 * np.sqrt(20000 * 0.2 * 0.8)), counts


def test_sample_is_weightless_while_the_buffer_is_empty():
    drawn, weight = sample(_buffer(5, 2, 3), 4, key=jax.random.key(0))
    assert drawn.x.shape == (4, 2) and float(weight.sum()) == 0.0


@pytest.mark.parametrize("replay_batch, rows", [(None, 2 * BATCH), (3, BATCH + 3)])
def test_replay_extends_each_batch_by_replay_batch_buffer_examples(replay_batch, rows):
    strategy = replay(6, example_shape=(FEATURES,), num_outputs=OUTPUTS, replay_batch=replay_batch)
    experience = _experience(0)
    buffer = strategy.after_experience(strategy.init(None), None, experience, jax.random.key(1))
    heads = jnp.ones((BATCH, OUTPUTS), bool)
    batch = ContinualBatch(experience.x[:BATCH], experience.y[:BATCH], heads, jnp.ones(BATCH))
    extended = jax.jit(strategy.augment)(buffer, batch, jax.random.key(2))
    chex.assert_shape(extended.x, (rows, FEATURES))
    chex.assert_trees_all_equal(extended.x[:BATCH], batch.x)
    # The appended rows are examples the buffer holds, at full weight once it is filled.
    held = {tuple(np.asarray(row)) for row in buffer.items.x[: int(buffer.filled)]}
    assert all(tuple(np.asarray(row)) in held for row in extended.x[BATCH:])
    assert float(extended.weight[BATCH:].min()) == 1.0


def _learner_draws(key):
    """The batches and step keys the learner draws for one epoch of N examples, as ``_draw`` documents
    them: one draw of random words; the first N order the examples, the rest are threefry keys (two
    words each), three per step (augment, project, observe) and one at the end."""
    steps = N // BATCH
    words = jax.random.bits(key, (N + (3 * steps + 1) * 2,), jnp.uint32)
    rows = np.argsort(np.asarray(words[:N]), kind="stable")[: steps * BATCH].reshape(steps, BATCH)
    keys = jax.random.wrap_key_data(words[N:].reshape(-1, 2))
    return rows, keys[:-1].reshape(steps, 3)


@pytest.mark.parametrize("jit", [True, False])
def test_every_epoch_visits_each_example_once_in_a_new_order(jit):
    """A strategy that records, for each step, which examples (one-hot ids) the stream gave it."""
    n, epochs, batch = 12, 3, 4
    record = Strategy(
        init=lambda params: jnp.zeros((epochs * n // batch, n)),
        observe=lambda seen, arrived, outputs, key: seen.at[jnp.argmax(jnp.sum(seen, axis=1) == 0)].set(
            arrived.x.sum(0)
        ),
    )
    learner = continual_learner(MLP((3,), 2).apply, record, optax.sgd(0.1), epochs=epochs, batch_size=batch)
    experience = Experience(jnp.eye(n), jnp.zeros(n, jnp.int32), jnp.ones(2, bool), jnp.int32(0))
    state = learner.init(MLP((3,), 2).init(jax.random.key(0), jnp.zeros((1, n))))
    train = jax.jit(learner.train_experience) if jit else learner.train_experience
    seen, _ = train(state, experience, key=jax.random.key(4))
    per_epoch = np.asarray(seen.strategy_state).reshape(epochs, n // batch, n)
    np.testing.assert_array_equal(per_epoch.sum(axis=1), np.ones((epochs, n)))  # each example once an epoch
    step_of_example = [tuple(np.argmax(epoch, axis=0)) for epoch in per_epoch]
    assert len(set(step_of_example)) == epochs  # a new order every epoch


def test_a_raw_key_trains_as_its_typed_key_and_other_key_implementations_train():
    learner = continual_learner(MODEL.apply, naive(), optax.sgd(0.1), epochs=2, batch_size=BATCH)
    train = jax.jit(learner.train_experience)
    state, experience = learner.init(_params()), _experience(0)
    typed, _ = train(state, experience, key=jax.random.key(3))
    raw, _ = train(state, experience, key=jax.random.PRNGKey(3))  # uint32[2]
    chex.assert_trees_all_equal(raw.params, typed.params)
    rbg, metrics = train(state, experience, key=jax.random.key(3, impl="rbg"))  # four words a key
    assert np.isfinite(metrics["loss"])
    assert not np.allclose(rbg.params["params"]["Dense_0"]["kernel"], typed.params["params"]["Dense_0"]["kernel"])


def _reference_naive_run(params, experiences, key, optimizer, reset_optimizer):
    """Plain SGD over the same shuffled batches the learner draws, one Python step at a time."""
    opt_state = optimizer.init(params)
    for experience, exp_key in zip(experiences, jax.random.split(key, len(experiences)), strict=True):
        if reset_optimizer:
            opt_state = optimizer.init(params)
        rows, _ = _learner_draws(exp_key)
        for batch_rows in rows:
            batch = ContinualBatch(
                experience.x[batch_rows],
                experience.y[batch_rows],
                jnp.broadcast_to(experience.logit_mask, (BATCH, OUTPUTS)),
                jnp.ones(BATCH),
            )
            grads = jax.grad(lambda p, b=batch: masked_cross_entropy(MODEL.apply(p, b.x), b.y, b.logit_mask, b.weight))(
                params
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("reset_optimizer", [False, True], ids=["carried-state", "reset-state"])
@pytest.mark.parametrize("jit", [True, False])
def test_naive_learner_equals_plain_sgd_over_the_same_batches(jit, reset_optimizer):
    optimizer = optax.sgd(0.1, momentum=0.5)
    learner = continual_learner(
        MODEL.apply, naive(), optimizer, epochs=1, batch_size=BATCH, reset_optimizer=reset_optimizer
    )
    train = jax.jit(learner.train_experience) if jit else learner.train_experience
    experiences = [_experience(i) for i in range(2)]
    key = jax.random.key(3)
    state = learner.init(_params())
    for experience, exp_key in zip(experiences, jax.random.split(key, 2), strict=True):
        state, metrics = train(state, experience, key=exp_key)
    expected = _reference_naive_run(_params(), experiences, key, optimizer, reset_optimizer)
    chex.assert_trees_all_close(state.params, expected, rtol=RTOL, atol=ATOL)
    assert int(state.experiences_done) == 2 and np.isfinite(metrics["loss"])


STRATEGIES = {
    "naive": lambda: naive(),
    "replay": lambda: replay(16, example_shape=(FEATURES,), num_outputs=OUTPUTS),
    "replay-class-balanced": lambda: replay(
        16, example_shape=(FEATURES,), num_outputs=OUTPUTS, policy="class-balanced"
    ),
    "replay-online": lambda: replay(
        16, example_shape=(FEATURES,), num_outputs=OUTPUTS, policy="class-balanced", update="step"
    ),
    "agem": lambda: agem(16, example_shape=(FEATURES,), num_outputs=OUTPUTS, reference_batch=8),
    "ewc": lambda: ewc(MODEL.apply, ewc_lambda=10.0),
    "online-ewc": lambda: ewc(MODEL.apply, ewc_lambda=10.0, mode="online", decay=0.9),
    "si": lambda: synaptic_intelligence(si_c=0.5),
    "lwf": lambda: learning_without_forgetting(MODEL.apply, alpha=1.0, num_outputs=OUTPUTS),
    "replay+ewc": lambda: compose(
        replay(16, example_shape=(FEATURES,), num_outputs=OUTPUTS), ewc(MODEL.apply, ewc_lambda=10.0)
    ),
}


@pytest.mark.parametrize("jit", [True, False])
def test_online_replay_equals_a_loop_that_replays_then_stores_each_batch(jit):
    """Chaudhry et al.'s ER: each step trains on the batch plus as many buffer examples, then the batch
    is offered to the reservoir; the buffer is in use from the first experience on."""
    capacity, optimizer = 16, optax.sgd(0.1)
    strategy = replay(capacity, example_shape=(FEATURES,), num_outputs=OUTPUTS, update="step")
    learner = continual_learner(MODEL.apply, strategy, optimizer, epochs=1, batch_size=BATCH)
    train = jax.jit(learner.train_experience) if jit else learner.train_experience
    experiences, key = [_experience(i) for i in range(2)], jax.random.key(5)
    state = learner.init(_params())
    for experience, exp_key in zip(experiences, jax.random.split(key, 2), strict=True):
        state, _ = train(state, experience, key=exp_key)

    params, buffer = _params(), _buffer(capacity, FEATURES, OUTPUTS)
    for experience, exp_key in zip(experiences, jax.random.split(key, 2), strict=True):
        rows, step_keys = _learner_draws(exp_key)
        for batch_rows, (augment_key, _, observe_key) in zip(rows, step_keys, strict=True):
            head = jnp.broadcast_to(experience.logit_mask, (BATCH, OUTPUTS))
            arrived = ContinualBatch(experience.x[batch_rows], experience.y[batch_rows], head, jnp.ones(BATCH))
            replayed, weight = sample(buffer, BATCH, key=augment_key)
            batch = ContinualBatch(
                *(jnp.concatenate(pair) for pair in zip(arrived[:4], (*replayed, weight), strict=True))
            )
            grads = jax.grad(lambda p, b=batch: masked_cross_entropy(MODEL.apply(p, b.x), b.y, b.logit_mask, b.weight))(
                params
            )
            updates, _ = optimizer.update(grads, optimizer.init(params), params)
            params = optax.apply_updates(params, updates)
            buffer = reservoir_add(buffer, BufferedExample(arrived.x, arrived.y, arrived.logit_mask), key=observe_key)
        if experience is experiences[0]:
            assert int(buffer.filled) == capacity  # 24 examples seen: replay already ran inside experience 0.

    chex.assert_trees_all_close(state.params, params, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_equal(state.strategy_state, buffer)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategies_jitted_and_not_agree_and_do_not_recompile(name):
    learner = continual_learner(MODEL.apply, STRATEGIES[name](), optax.adam(1e-2), epochs=2, batch_size=BATCH)
    jitted = jax.jit(chex.assert_max_traces(learner.train_experience, n=1))
    plain_state = jit_state = learner.init(_params())
    for index in range(3):
        experience, key = _experience(index), jax.random.key(index)
        jit_state, _ = jitted(jit_state, experience, key=key)
        plain_state, _ = learner.train_experience(plain_state, experience, key=key)
    chex.clear_trace_counter()
    chex.assert_trees_all_close(jit_state.params, plain_state.params, rtol=1e-3, atol=1e-5)
    chex.assert_tree_all_finite(jit_state.params)


def test_vmapped_seeds_equal_separate_runs():
    learner = continual_learner(
        MODEL.apply,
        replay(16, example_shape=(FEATURES,), num_outputs=OUTPUTS),
        optax.adam(1e-2),
        epochs=1,
        batch_size=BATCH,
    )
    keys = jax.random.split(jax.random.key(9), 3)
    params = jax.vmap(lambda k: MODEL.init(k, jnp.zeros((1, FEATURES))))(keys)
    train = jax.jit(jax.vmap(lambda s, e, k: learner.train_experience(s, e, key=k), in_axes=(0, None, 0)))
    single = jax.jit(lambda s, e, k: learner.train_experience(s, e, key=k))
    batched = jax.vmap(learner.init)(params)
    separate = [learner.init(jax.tree.map(lambda p, i=i: p[i], params)) for i in range(3)]
    for index in range(2):
        experience = _experience(index)
        step_keys = jax.vmap(lambda k, i=index: jax.random.fold_in(k, i))(keys)
        batched, _ = train(batched, experience, step_keys)
        separate = [single(s, experience, step_keys[i])[0] for i, s in enumerate(separate)]
    for i, state in enumerate(separate):
        chex.assert_trees_all_close(
            jax.tree.map(lambda p, i=i: p[i], batched.params), state.params, rtol=RTOL, atol=ATOL
        )


@pytest.mark.parametrize("runs", [1, 3])
def test_vmap_runs_equals_vmap_and_runs_a_lone_run_without_batched_matmuls(runs):
    learner = continual_learner(MODEL.apply, naive(), optax.adam(1e-2), epochs=1, batch_size=BATCH)
    keys = jax.random.split(jax.random.key(4), runs)
    states = jax.vmap(learner.init)(jax.vmap(lambda k: MODEL.init(k, jnp.zeros((1, FEATURES))))(keys))
    experience = _experience(0)

    def train(state, key):
        return learner.train_experience(state, experience, key=key)

    expected, _ = jax.vmap(train)(states, keys)
    actual, _ = jax.jit(vmap_runs(train, (0, 0)))(states, keys)
    chex.assert_trees_all_close(actual, expected, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_equal_shapes(actual, expected)
    # A matmul with batch dimensions prints as dimension_numbers=(([..], [..]), ([b..], [b..])).
    program = str(jax.make_jaxpr(vmap_runs(train, (0, 0)))(states, keys))
    batched_matmuls = re.findall(
        r"dot_general\[[^]]*?dimension_numbers=\(\(\[[\d, ]*\], \[[\d, ]*\]\), \(\[\d", program
    )
    assert bool(batched_matmuls) == (runs > 1)


def test_agem_projects_only_conflicting_gradients():
    strategy = agem(8, example_shape=(FEATURES,), num_outputs=OUTPUTS, reference_batch=8)
    params = _params()
    experience = _experience(0)
    memory = strategy.after_experience(strategy.init(params), params, experience, jax.random.key(0))

    def data_loss(p, batch):
        return masked_cross_entropy(MODEL.apply(p, batch.x), batch.y, batch.logit_mask, batch.weight)

    key = jax.random.key(1)
    drawn, weight = sample(memory, 8, key=key)
    reference = jax.grad(data_loss)(params, ContinualBatch(drawn.x, drawn.y, drawn.logit_mask, weight))
    flat_ref, unravel = jax.flatten_util.ravel_pytree(reference)
    for sign in (1.0, -1.0):
        g = sign * flat_ref + 0.3 * jnp.roll(flat_ref, 1)
        projected = jax.flatten_util.ravel_pytree(strategy.project(unravel(g), params, memory, key, data_loss))[0]
        if g @ flat_ref < 0:
            np.testing.assert_allclose(projected, g - (g @ flat_ref) / (flat_ref @ flat_ref) * flat_ref, rtol=1e-5)
            np.testing.assert_allclose(projected @ flat_ref, 0.0, atol=1e-5)
        else:
            np.testing.assert_allclose(projected, g, rtol=1e-6)


def test_synaptic_intelligence_accumulates_the_path_integral():
    strategy = synaptic_intelligence(si_c=2.0, damping=0.1)
    start = {"w": jnp.array([1.0, 2.0])}
    state = strategy.init(start)
    middle, end = {"w": jnp.array([1.5, 2.0])}, {"w": jnp.array([2.0, 1.0])}
    state = strategy.after_step(state, start, middle, {"w": jnp.array([-1.0, 3.0])})
    state = strategy.after_step(state, middle, end, {"w": jnp.array([-2.0, 1.0])})
    path = np.array([1.0 * 0.5 + 2.0 * 0.5, -3.0 * 0.0 + 1.0 * 1.0])  # sum of -g * delta
    np.testing.assert_allclose(state.path["w"], path)
    state = strategy.after_experience(state, end, None, None)
    importance = path / (np.array([1.0, 1.0]) ** 2 + 0.1)
    np.testing.assert_allclose(state.importance["w"], importance, rtol=1e-6)
    probe = {"w": jnp.array([3.0, 3.0])}
    np.testing.assert_allclose(
        strategy.penalty(probe, state, None, None), 2.0 * np.sum(importance * np.array([1.0, 4.0]))
    )


def test_lwf_penalty_is_zero_before_and_positive_after_the_first_experience():
    strategy = learning_without_forgetting(MODEL.apply, alpha=1.0, num_outputs=OUTPUTS)
    params = _params()
    experience = _experience(0)
    batch = ContinualBatch(experience.x, experience.y, jnp.ones((N, OUTPUTS), bool), jnp.ones(N))
    state = strategy.init(params)

    def penalty(p, state):
        return float(strategy.penalty(p, state, batch, MODEL.apply(p, batch.x)))

    assert penalty(_params(1), state) == 0.0
    state = strategy.after_experience(state, params, experience, None)
    assert penalty(params, state) == pytest.approx(0.0, abs=1e-6)  # same model
    assert penalty(_params(1), state) > 0.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="buffer size must be positive, got 0"):
        replay(0, example_shape=(FEATURES,), num_outputs=OUTPUTS).init(None)
    with pytest.raises(ValueError, match="buffer policy must be one of reservoir, class-balanced, got 'fifo'"):
        replay(4, example_shape=(FEATURES,), num_outputs=OUTPUTS, policy="fifo")
    with pytest.raises(ValueError, match="replay batch must be a positive integer or None, got 0"):
        replay(4, example_shape=(FEATURES,), num_outputs=OUTPUTS, replay_batch=0)
    with pytest.raises(ValueError, match="buffer update must be one of experience, step, got 'sometimes'"):
        replay(4, example_shape=(FEATURES,), num_outputs=OUTPUTS, update="sometimes")
    with pytest.raises(ValueError, match="EWC mode must be 'separate' or 'online'"):
        ewc(MODEL.apply, ewc_lambda=1.0, mode="both")
    learner = continual_learner(MODEL.apply, naive(), optax.sgd(0.1), epochs=1, batch_size=BATCH)
    experience = _experience(0)
    with pytest.raises(ValueError, match=r"experience.y must have shape \[examples\] = \(24,\)"):
        learner.train_experience(
            learner.init(_params()), experience._replace(y=experience.y[:5]), key=jax.random.key(0)
        )


def test_a_vmapped_sweep_over_ewc_lambda_equals_separate_runs():
    """lambda lives in the strategy state, so runs with different lambdas train together."""
    lambdas = jnp.array([0.0, 10.0, 1000.0])
    learner = continual_learner(
        MODEL.apply, ewc(MODEL.apply, ewc_lambda=1.0), optax.adam(1e-2), epochs=1, batch_size=BATCH
    )

    def with_strength(strength):
        state = learner.init(_params())
        return state._replace(strategy_state=state.strategy_state._replace(strength=strength))

    batched = jax.vmap(with_strength)(lambdas)
    train = jax.jit(jax.vmap(lambda s, e, k: learner.train_experience(s, e, key=k), in_axes=(0, None, None)))
    for index in range(2):
        batched, _ = train(batched, _experience(index), jax.random.key(index))
    for i, strength in enumerate(lambdas):
        separate = continual_learner(
            MODEL.apply, ewc(MODEL.apply, ewc_lambda=float(strength)), optax.adam(1e-2), epochs=1, batch_size=BATCH
        )
        state = separate.init(_params())
        for index in range(2):
            state, _ = separate.train_experience(state, _experience(index), key=jax.random.key(index))
        chex.assert_trees_all_close(
            jax.tree.map(lambda p, i=i: p[i], batched.params), state.params, rtol=RTOL, atol=ATOL
        )
    # The sweep is not degenerate: lambda changes the second experience's result.
    assert not np.allclose(
        batched.params["params"]["Dense_0"]["kernel"][0], batched.params["params"]["Dense_0"]["kernel"][2]
    )
