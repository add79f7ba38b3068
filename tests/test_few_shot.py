"""The N-way K-shot sampler: distinct classes, distinct examples, permuted labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.data import few_shot_sampler
from metajax.data.few_shot import random_subset

CLASSES, PER_CLASS = 30, 8


def _identity_bank():
    """Each example's pixels encode (class, example), so a task reveals what was drawn."""
    class_ids = np.arange(CLASSES)[:, None, None].repeat(PER_CLASS, 1)
    example_ids = np.arange(PER_CLASS)[None, :, None].repeat(CLASSES, 0)
    return jnp.asarray(np.concatenate([class_ids, example_ids], axis=-1), jnp.float32)  # [C, E, 2]


def _drawn(tasks):
    support = np.asarray(tasks.support_x).astype(int)
    query = np.asarray(tasks.query_x).astype(int)
    return support, np.asarray(tasks.support_y), query, np.asarray(tasks.query_y)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "no-jit"])
def test_task_structure(jit):
    ways, shots, query_shots, num_tasks = 5, 3, 2, 64
    sample = few_shot_sampler(_identity_bank(), ways, shots, query_shots)
    if jit:
        sample = jax.jit(sample, static_argnums=1)
    tasks = sample(jax.random.key(0), num_tasks)
    assert tasks.support_x.shape == (num_tasks, ways * shots, 2)
    assert tasks.query_x.shape == (num_tasks, ways * query_shots, 2)
    assert tasks.support_y.dtype == jnp.int32
    support, support_y, query, query_y = _drawn(tasks)
    first_label_classes = []
    for t in range(num_tasks):
        both = np.concatenate([support[t], query[t]])
        labels = np.concatenate([support_y[t], query_y[t]])
        classes = both[:, 0]
        assert len(set(classes)) == ways, "a task must hold exactly `ways` distinct classes"
        # One label per class and one class per label.
        mapping = {c: set(labels[classes == c]) for c in set(classes)}
        assert all(len(v) == 1 for v in mapping.values())
        assert sorted(int(next(iter(v))) for v in mapping.values()) == list(range(ways))
        for c in set(classes):  # Without replacement inside a class, support and query disjoint.
            examples = both[classes == c, 1]
            assert len(examples) == shots + query_shots == len(set(examples))
        np.testing.assert_array_equal(np.bincount(support_y[t], minlength=ways), shots)
        first_label_classes.append(int(classes[labels == 0][0]))
    # Label 0 goes to many different classes, not always the smallest class index drawn.
    assert len(set(first_label_classes)) > 10


def test_labels_are_a_random_permutation_of_the_drawn_classes():
    """Label 0 is the smallest drawn class in about 1/ways of tasks, as for a uniform permutation."""
    ways, num_tasks = 5, 2000
    tasks = few_shot_sampler(_identity_bank(), ways, 1, 0)(jax.random.key(1), num_tasks)
    support, support_y, _, _ = _drawn(tasks)
    label_of_min = support_y[np.arange(num_tasks), np.argmin(support[:, :, 0], axis=1)]
    counts = np.bincount(label_of_min, minlength=ways)
    # Each count is Binomial(2000, 0.2): mean 400, sd ~17.9; 5 sd either side.
    assert np.all(np.abs(counts - num_tasks / ways) < 90), counts


def test_classes_are_drawn_uniformly():
    num_tasks, ways = 3000, 5
    tasks = few_shot_sampler(_identity_bank(), ways, 1, 0)(jax.random.key(2), num_tasks)
    counts = np.bincount(_drawn(tasks)[0][:, :, 0].ravel(), minlength=CLASSES)
    expected = num_tasks * ways / CLASSES  # 500 per class, sd ~ 20.4.
    assert np.all(np.abs(counts - expected) < 5 * 20.4), counts


def test_same_key_same_tasks_and_different_keys_differ():
    sample = few_shot_sampler(_identity_bank(), 4, 2, 1)
    a, b, c = sample(jax.random.key(3), 8), sample(jax.random.key(3), 8), sample(jax.random.key(4), 8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.support_x, c.support_x)


def test_random_subset_is_distinct_and_in_range():
    subset = np.asarray(random_subset(jax.random.key(0), 3856, 20))
    assert len(set(subset)) == 20 and subset.min() >= 0 and subset.max() < 3856


@pytest.mark.parametrize(
    "ways,shots,query_shots,message",
    [
        (31, 1, 1, "ways=31 is more than the 30 classes"),
        (5, 6, 3, r"shots \+ query_shots = 6 \+ 3 = 9 is more than the 8 examples per class"),
        (0, 1, 1, "need ways >= 1"),
    ],
)
def test_impossible_tasks_are_refused(ways, shots, query_shots, message):
    with pytest.raises(ValueError, match=message):
        few_shot_sampler(_identity_bank(), ways, shots, query_shots)


def test_bank_without_example_axis_is_refused():
    with pytest.raises(ValueError, match=r"images must have shape \[classes, examples_per_class"):
        few_shot_sampler(jnp.zeros((10, 4)), 2, 1, 1)
