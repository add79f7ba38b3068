"""GDumb, iCaRL and X-DER against plain loops of the papers' rules, and each through the command."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.cli import main
from metajax.continual import ContinualBatch, Experience, continual_learner, gdumb, icarl, naive, xder
from metajax.continual.gdumb import greedy_class_balanced_add, greedy_class_balanced_slots
from metajax.continual.icarl import herding_order, nearest_mean_logits
from metajax.continual.replay import buffered_example
from metajax.continual.replay_buffer import BufferedExample, empty_buffer
from metajax.models import MLP, Conv4
from metajax.models.interfaces import declared_split

FEATURES, OUTPUTS, N, BATCH = 5, 4, 24, 8
MODEL = MLP((6,), OUTPUTS)


def _experience(index, classes):
    """``N`` examples of ``classes`` (in turn), class-shifted Gaussians so that classes differ."""
    y = jnp.asarray([classes[i % len(classes)] for i in range(N)], jnp.int32)
    x = jax.random.normal(jax.random.key(100 + index), (N, FEATURES)) + y[:, None].astype(jnp.float32)
    return Experience(x, y, jnp.ones(OUTPUTS, bool), jnp.asarray(index))


def _params():
    return MODEL.init(jax.random.key(0), jnp.zeros((1, FEATURES)))


def _greedy_loop(labels, draws, capacity):
    """GDumb's sampler as the paper states it, one example at a time."""
    slots: list[int] = []
    written = []
    for label, draw in zip(labels, draws, strict=True):
        counts = {c: slots.count(c) for c in set(slots)}
        seen = len(set(slots) | {label})
        if counts.get(label, 0) < capacity / seen:
            if len(slots) < capacity:
                slot = len(slots)
                slots.append(label)
            else:
                largest = min(counts, key=lambda c: (-counts[c], c))  # The most slots; the lowest class on a tie.
                of_largest = [s for s, c in enumerate(slots) if c == largest]
                slot = of_largest[math.floor(draw * len(of_largest))]
                slots[slot] = label
            written.append(slot)
        else:
            written.append(-1)
    return written, slots


@pytest.mark.parametrize("jit", [True, False])
def test_gdumb_sampler_equals_the_papers_rule_as_a_loop(jit):
    rng = np.random.default_rng(0)
    capacity, classes = 10, 5
    # Classes arrive in uneven runs, so that evictions happen from different largest classes.
    labels = np.concatenate([rng.integers(0, 2, 15), rng.integers(1, 4, 20), rng.integers(0, 5, 25)]).astype(np.int32)
    draws = rng.uniform(size=labels.shape).astype(np.float32)
    slots = jax.jit(greedy_class_balanced_slots, static_argnames="num_classes") if jit else greedy_class_balanced_slots
    written, slot_labels, filled = slots(
        jnp.zeros(capacity, jnp.int32), jnp.zeros((), jnp.int32), labels, draws, num_classes=classes
    )
    expected_written, expected_slots = _greedy_loop(labels.tolist(), draws.tolist(), capacity)
    assert np.asarray(written).tolist() == expected_written
    assert int(filled) == len(expected_slots) == capacity
    assert np.asarray(slot_labels).tolist() == expected_slots
    assert sorted(np.bincount(expected_slots, minlength=classes).tolist()) == [2, 2, 2, 2, 2]  # Balanced.

    # The buffer holds, in each slot, the last example the sampler wrote there.
    memory = empty_buffer(capacity, buffered_example((1,), classes))
    items = BufferedExample(
        jnp.arange(len(labels), dtype=jnp.float32)[:, None], labels, jnp.ones((len(labels), classes), bool)
    )
    memory = greedy_class_balanced_add(memory, items, draws, num_classes=classes)
    last = {slot: i for i, slot in enumerate(expected_written) if slot >= 0}
    assert np.asarray(memory.items.x[:, 0]).tolist() == [float(last[s]) for s in range(capacity)]
    assert np.asarray(memory.items.y).tolist() == expected_slots


def test_gdumb_trains_a_fresh_model_on_the_memory_alone():
    capacity, optimizer = 16, optax.sgd(0.1)
    strategy = gdumb(capacity, example_shape=(FEATURES,), num_outputs=OUTPUTS)
    learner = continual_learner(MODEL.apply, strategy, optimizer, epochs=2, batch_size=BATCH)
    reference = continual_learner(MODEL.apply, naive(), optimizer, epochs=2, batch_size=BATCH)
    params = _params()
    state = learner.init(params)
    for index, classes in enumerate([(0, 1), (2, 3)]):
        key = jax.random.key(7 + index)
        state, _ = jax.jit(learner.train_experience)(state, _experience(index, classes), key=key)
        memory = state.strategy_state.memory
        occupied = (jnp.arange(capacity) < memory.filled).astype(jnp.float32)
        on_memory = Experience(memory.items.x, memory.items.y, memory.items.logit_mask, jnp.asarray(index), occupied)
        fresh, _ = reference.train_experience(reference.init(params), on_memory, key=key)
        # The same arithmetic in another order of compilation: float32 rounding only.
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, fresh.params)
    assert np.bincount(np.asarray(memory.items.y), minlength=OUTPUTS).tolist() == [4, 4, 4, 4]


def test_gdumb_refuses_a_buffer_smaller_than_the_classes():
    with pytest.raises(ValueError, match="smaller than the number of classes"):
        gdumb(3, example_shape=(FEATURES,), num_outputs=OUTPUTS)


def _herding_loop(features, in_class, count):
    members = np.flatnonzero(in_class)
    mean = features[members].mean(axis=0)
    chosen: list[int] = []
    for k in range(1, min(count, len(members)) + 1):
        total = features[chosen].sum(axis=0)
        gaps = {i: np.linalg.norm(mean - (total + features[i]) / k) for i in members if i not in chosen}
        chosen.append(min(gaps, key=gaps.get))
    return chosen


@pytest.mark.parametrize("jit", [True, False])
def test_herding_equals_the_papers_rule_as_a_loop(jit):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(30, 4)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    in_class = rng.uniform(size=30) < 0.5
    order = jax.jit(herding_order, static_argnames="length") if jit else herding_order
    got = np.asarray(order(jnp.asarray(features), jnp.asarray(in_class), 6, length=8))
    assert got.tolist() == [*_herding_loop(features.astype(np.float64), in_class, 6), -1, -1]


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_nearest_mean_of_exemplars_equals_numpy():
    rng = np.random.default_rng(2)
    features, means = rng.normal(size=(7, 3)), _unit(rng.normal(size=(OUTPUTS, 3)))
    has_mean = np.array([True, True, False, True])
    expected = -np.linalg.norm(_unit(features)[:, None] - means[None], axis=-1)
    got = nearest_mean_logits(jnp.asarray(features, jnp.float32), jnp.asarray(means, jnp.float32), has_mean)
    np.testing.assert_allclose(np.asarray(got)[:, has_mean], expected[:, has_mean], rtol=1e-5)
    assert np.all(np.asarray(got)[:, ~has_mean] == -1e9)


def test_icarl_keeps_herded_exemplars_and_scores_by_their_class_means():
    capacity = 8
    strategy = icarl(
        capacity, apply_fn=MODEL.apply, features=MODEL.features, example_shape=(FEATURES,), num_outputs=OUTPUTS
    )
    learner = continual_learner(MODEL.apply, strategy, optax.sgd(0.1), epochs=1, batch_size=BATCH)
    state = learner.init(_params())
    experiences = [_experience(0, (0, 1)), _experience(1, (2, 3))]
    for index, experience in enumerate(experiences):
        state, _ = jax.jit(learner.train_experience)(state, experience, key=jax.random.key(index))
    memory, params = state.strategy_state.memory, state.params
    # Two exemplars per class (8 // 4 seen classes). The new classes': herding on the trained model's features.
    assert int(memory.filled) == capacity
    features = _unit(np.asarray(MODEL.features(params, experiences[1].x), np.float64))
    for label in (2, 3):
        in_class = np.asarray(experiences[1].y) == label
        expected = np.asarray(experiences[1].x)[_herding_loop(features, in_class, 2)]
        np.testing.assert_array_equal(np.asarray(memory.items.x)[np.asarray(memory.items.y) == label], expected)
    assert sorted(np.asarray(memory.items.y).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]

    test_x = jax.random.normal(jax.random.key(9), (5, FEATURES))
    exemplar_features = _unit(np.asarray(MODEL.features(params, memory.items.x), np.float64))
    means = _unit(np.stack([exemplar_features[np.asarray(memory.items.y) == c].mean(0) for c in range(OUTPUTS)]))
    expected = -np.linalg.norm(_unit(np.asarray(MODEL.features(params, test_x)))[:, None] - means[None], axis=-1)
    np.testing.assert_allclose(strategy.predict(params, state.strategy_state, test_x), expected, rtol=1e-4, atol=1e-5)


def test_icarl_distillation_is_the_binary_cross_entropy_on_old_classes():
    strategy = icarl(4, apply_fn=MODEL.apply, features=MODEL.features, example_shape=(FEATURES,), num_outputs=OUTPUTS)
    previous, params = _params(), MODEL.init(jax.random.key(1), jnp.zeros((1, FEATURES)))
    old = jnp.array([True, True, False, False])
    state = strategy.init(previous)._replace(previous=previous, old_classes=old)
    batch = _experience(0, (0, 1))
    weight = jnp.arange(N, dtype=jnp.float32) % 3
    outputs = MODEL.apply(params, batch.x)
    got = strategy.penalty(params, state, batch._replace(weight=weight), outputs)
    q, z = jax.nn.sigmoid(MODEL.apply(previous, batch.x)), outputs
    bce = -(q * jnp.log(jax.nn.sigmoid(z)) + (1 - q) * jnp.log(1 - jax.nn.sigmoid(z)))
    expected = jnp.sum(weight * jnp.sum(bce[:, :2], axis=1)) / jnp.sum(weight)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mlp_features_are_what_its_head_reads_and_a_model_without_them_is_refused():
    params, x = _params(), jax.random.normal(jax.random.key(3), (3, FEATURES))
    _, inputs = MODEL.apply(params, x, {"Dense_0": jnp.zeros((3, 6)), "head": jnp.zeros((3, OUTPUTS))})
    np.testing.assert_array_equal(MODEL.features(params, x), inputs["head"])
    with pytest.raises(ValueError, match="icarl needs the model to declare the features its output layer reads"):
        declared_split(Conv4(num_classes=5), "features", needed_by="icarl")


def test_xder_updates_the_buffered_logits_of_the_new_classes():
    capacity, gamma = 8, 0.85
    strategy = xder(
        capacity, apply_fn=MODEL.apply, example_shape=(FEATURES,), num_outputs=OUTPUTS, alpha=0.3, beta=0.5, gamma=gamma
    )
    learner = continual_learner(MODEL.apply, strategy, optax.sgd(0.1), epochs=1, batch_size=BATCH)
    state = learner.init(_params())
    state, _ = jax.jit(learner.train_experience)(state, _experience(0, (0, 1)), key=jax.random.key(0))
    before = state.strategy_state.buffer
    first = {
        tuple(np.asarray(x).tolist()): np.asarray(z) for x, z in zip(before.items.x, before.items.logits, strict=True)
    }
    # After the first experience: its examples with the model's logits, nothing earlier to rescale.
    np.testing.assert_allclose(before.items.logits, MODEL.apply(state.params, before.items.x), rtol=1e-5, atol=1e-6)

    second = _experience(1, (2, 3))
    state, _ = jax.jit(learner.train_experience)(state, second, key=jax.random.key(1))
    after = state.strategy_state.buffer
    labels, logits = np.asarray(after.items.y), np.asarray(after.items.logits)
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]  # capacity // 4 classes each.
    outputs = np.asarray(MODEL.apply(state.params, after.items.x))
    for row in range(capacity):
        if labels[row] < 2:  # An example of the first experience: classes 2 and 3 updated, the others kept.
            stored = first[tuple(np.asarray(after.items.x[row]).tolist())]
            new, fixed = (2, 3), (0, 1)
        else:  # The second's: the model's logits, classes 0 and 1 rescaled where they exceed its label's.
            stored = outputs[row]
            new, fixed = (0, 1), (2, 3)
        expected = stored.copy()
        expected[list(new)] = outputs[row, list(new)]
        peak = outputs[row, list(new)].max()
        if peak > stored[labels[row]]:
            expected[list(new)] *= gamma * stored[labels[row]] / peak
        np.testing.assert_allclose(logits[row], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(logits[row, list(fixed)], stored[list(fixed)])


@pytest.mark.parametrize(
    ("strategy", "options"),
    [("gdumb", ["--buffer-size", "200", "--epochs", "3"]), ("icarl", ["--buffer-size", "200"]), ("xder", [])],
)
def test_runs_from_the_command(strategy, options, tmp_path):
    args = ["continual", "--strategy", strategy, *options, "--batch-size", "32", "--no-progress"]
    assert main([*args, "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["strategy"] == strategy
    # Each keeps old classes alive: above naive's 1/5 in class-IL.
    assert summary["final_average_accuracy"]["mean"] > 0.4


def test_xder_scores_the_streams_examples_on_the_current_classes_only():
    strategy = xder(8, apply_fn=MODEL.apply, example_shape=(FEATURES,), num_outputs=OUTPUTS, alpha=0.3, beta=0.5)
    experience = _experience(1, (2, 3))
    state, _, _ = strategy.before_experience(strategy.init(_params()), _params(), experience, jax.random.key(0))
    x, y = experience.x[:BATCH], experience.y[:BATCH]
    batch = ContinualBatch(x, y, jnp.ones((BATCH, OUTPUTS), bool), jnp.ones(BATCH))
    augmented = strategy.augment(state, batch, jax.random.key(1))
    assert np.asarray(augmented.logit_mask[:BATCH]).tolist() == [[False, False, True, True]] * BATCH
    assert augmented.x.shape[0] == 3 * BATCH  # The stream's rows, then DER's and DER++'s draws.
