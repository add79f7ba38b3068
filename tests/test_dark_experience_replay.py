"""DER and DER++ against the paper's formula written as a plain loop, and strategies on images."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.continual import (
    ContinualBatch,
    Experience,
    compose,
    continual_learner,
    dark_experience_replay,
    ewc,
    masked_cross_entropy,
    replay,
)
from metajax.continual.dark_experience_replay import LoggedExample
from metajax.continual.replay_buffer import reservoir_add, sample
from metajax.models import MLP, Conv4

FEATURES, OUTPUTS, N, BATCH, REPLAY = 5, 4, 24, 8, 6
MODEL = MLP((6,), OUTPUTS)


def _experience(index):
    x = jax.random.normal(jax.random.key(100 + index), (N, FEATURES))
    y = (jnp.arange(N) % 2 + 2 * (index % 2)).astype(jnp.int32)
    return Experience(x, y, jnp.ones(OUTPUTS, bool), jnp.asarray(index))


def _learner_draws(key):
    """The learner's one draw for an epoch (see test_continual._learner_draws)."""
    steps = N // BATCH
    words = jax.random.bits(key, (N + (3 * steps + 1) * 2,), jnp.uint32)
    rows = np.argsort(np.asarray(words[:N]), kind="stable")[: steps * BATCH].reshape(steps, BATCH)
    keys = jax.random.wrap_key_data(words[N:].reshape(-1, 2))
    return rows, keys[:-1].reshape(steps, 3)


def _reference_run(params, experiences, keys, alpha, beta, capacity, optimizer):
    """The paper's loss, each term from its own forward pass, one Python step at a time:
    CE(batch) + alpha * MSE(f(x'), z') + beta * CE(f(x''), y''), then the batch and the logits the
    model gave it before the step offered to the reservoir."""
    strategy = dark_experience_replay(
        capacity, example_shape=(FEATURES,), num_outputs=OUTPUTS, alpha=alpha, beta=beta, replay_batch=REPLAY
    )
    buffer, opt_state = strategy.init(params), optimizer.init(params)
    for experience, key in zip(experiences, keys, strict=True):
        rows, step_keys = _learner_draws(key)
        for batch_rows, (augment_key, _, observe_key) in zip(rows, step_keys, strict=True):
            x, y = experience.x[batch_rows], experience.y[batch_rows]
            heads = jnp.ones((BATCH, OUTPUTS), bool)
            logit_key, label_key = jax.random.split(augment_key)
            logged, logit_weight = sample(buffer, REPLAY, key=logit_key)
            labelled, label_weight = sample(buffer, REPLAY, key=label_key)

            def loss(p, x=x, y=y, heads=heads, logged=logged, logit_weight=logit_weight, labelled=labelled,
                     label_weight=label_weight):  # fmt: skip
                total = masked_cross_entropy(MODEL.apply(p, x), y, heads, jnp.ones(BATCH))
                squared = jnp.mean(jnp.square(MODEL.apply(p, logged.x) - logged.logits), axis=-1)
                total += alpha * jnp.sum(logit_weight * squared) / jnp.maximum(jnp.sum(logit_weight), 1.0)
                if beta:
                    labels = masked_cross_entropy(MODEL.apply(p, labelled.x), labelled.y, labelled.logit_mask,
                                                  label_weight)  # fmt: skip
                    total += beta * labels
                return total

            logits_before = MODEL.apply(params, x)
            updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
            params = optax.apply_updates(params, updates)
            buffer = reservoir_add(buffer, LoggedExample(x, y, heads, logits_before), key=observe_key)
    return params, buffer


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("beta", [0.0, 0.5], ids=["der", "der++"])
def test_der_equals_the_papers_loss_as_a_loop(beta, jit):
    alpha, capacity, optimizer = 0.7, 10, optax.sgd(0.1)
    strategy = dark_experience_replay(
        capacity, example_shape=(FEATURES,), num_outputs=OUTPUTS, alpha=alpha, beta=beta, replay_batch=REPLAY
    )
    learner = continual_learner(MODEL.apply, strategy, optimizer, epochs=1, batch_size=BATCH)
    train = jax.jit(learner.train_experience) if jit else learner.train_experience
    params = MODEL.init(jax.random.key(0), jnp.zeros((1, FEATURES)))
    experiences, keys = [_experience(i) for i in range(2)], jax.random.split(jax.random.key(3), 2)
    state = learner.init(params)
    for experience, key in zip(experiences, keys, strict=True):
        state, _ = train(state, experience, key=key)
    expected_params, expected_buffer = _reference_run(params, experiences, keys, alpha, beta, capacity, optimizer)
    chex.assert_trees_all_close(state.params, expected_params, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(state.strategy_state, expected_buffer, rtol=1e-4, atol=1e-6)
    # The buffer is full and its logits are what the model gave, not zeros: the terms were live.
    assert int(state.strategy_state.filled) == capacity
    assert float(jnp.abs(state.strategy_state.items.logits).min()) > 0


def test_der_with_alpha_zero_and_no_beta_trains_as_naive():
    """Replayed rows have weight 0 in the data loss: with no penalty they change nothing."""
    strategy = dark_experience_replay(16, example_shape=(FEATURES,), num_outputs=OUTPUTS, alpha=0.0)
    from metajax.continual import naive

    params = MODEL.init(jax.random.key(0), jnp.zeros((1, FEATURES)))
    results = []
    for chosen in (strategy, naive()):
        learner = continual_learner(MODEL.apply, chosen, optax.sgd(0.1), epochs=1, batch_size=BATCH)
        state = learner.init(params)
        for index in range(2):
            state, _ = learner.train_experience(state, _experience(index), key=jax.random.key(index))
        results.append(state.params)
    chex.assert_trees_all_close(*results, rtol=1e-5, atol=1e-7)


def test_the_replayed_batch_keeps_the_stream_rows_first():
    strategy = dark_experience_replay(
        8, example_shape=(FEATURES,), num_outputs=OUTPUTS, alpha=1.0, beta=1.0, replay_batch=3
    )
    batch = ContinualBatch(jnp.ones((BATCH, FEATURES)), jnp.zeros(BATCH, jnp.int32), jnp.ones((BATCH, OUTPUTS), bool),
                           jnp.ones(BATCH))  # fmt: skip
    extended = strategy.augment(strategy.init(None), batch, jax.random.key(0))
    assert extended.x.shape == (BATCH + 6, FEATURES)
    np.testing.assert_array_equal(extended.weight, np.r_[np.ones(BATCH), np.zeros(6)])
    assert extended.extras.logits.shape == (3, OUTPUTS)


@pytest.mark.parametrize("jit", [True, False])
def test_replay_and_ewc_train_a_convolutional_network_on_images(jit):
    """Any model, any example shape: images in the experiences, the buffer and the Fisher."""
    model, shape = Conv4(num_classes=OUTPUTS, features=4), (8, 8, 1)
    strategy = compose(replay(12, example_shape=shape, num_outputs=OUTPUTS), ewc(model.apply, ewc_lambda=10.0))
    learner = continual_learner(model.apply, strategy, optax.adam(1e-2), epochs=1, batch_size=BATCH)
    train = jax.jit(learner.train_experience) if jit else learner.train_experience
    state = learner.init(model.init(jax.random.key(0), jnp.zeros((1, *shape))))
    for index in range(2):
        x = jax.random.normal(jax.random.key(index), (N, *shape))
        experience = Experience(x, (jnp.arange(N) % OUTPUTS).astype(jnp.int32), jnp.ones(OUTPUTS, bool),
                                jnp.asarray(index))  # fmt: skip
        state, metrics = train(state, experience, key=jax.random.key(10 + index))
        assert np.isfinite(metrics["loss"])
    buffer, ewc_state = state.strategy_state
    assert buffer.items.x.shape == (12, *shape) and int(buffer.filled) == 12
    assert float(sum(jnp.sum(f) for f in jax.tree.leaves(ewc_state.fisher))) > 0
    test_x = jax.random.normal(jax.random.key(5), (2, 6, *shape))
    accuracy = learner.accuracy(state, test_x, jnp.zeros((2, 6), jnp.int32), jnp.ones((2, 6), bool),
                                jnp.ones((2, OUTPUTS), bool))  # fmt: skip
    assert accuracy.shape == (2,)
