"""The MMoE paper's synthetic tasks and census-income parsing."""

import gzip

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.data import DataError
from metajax.data.census_income import COLUMNS, census_dataset, load_census_income, parse_census_rows
from metajax.data.correlated_regression import (
    correlated_regression_dataset,
    correlated_task_examples,
    correlated_task_parameters,
)


@pytest.mark.parametrize("correlation", [1.0, 0.9, 0.5, 0.0, -0.3])
def test_linear_parts_have_the_requested_correlation(correlation):
    parameters = correlated_task_parameters(jax.random.key(0), correlation=correlation)
    w = np.asarray(parameters.weights)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 0.3, rtol=1e-5)  # c = 0.3, unit u1, u2
    rows = correlated_task_examples(jax.random.key(1), parameters, 200_000)
    linear = np.asarray(rows.x @ parameters.weights.T)
    # Sample correlation of 200k Gaussian pairs: standard error (1 - p^2) / sqrt(n) < 0.0023.
    assert abs(np.corrcoef(linear.T)[0, 1] - correlation) < 0.01


def test_labels_are_linear_part_plus_shared_sines_plus_small_noise():
    parameters = correlated_task_parameters(jax.random.key(2), correlation=0.5, num_sines=5)
    rows = correlated_task_examples(jax.random.key(3), parameters, 50_000, noise_std=0.1)
    linear = rows.x @ parameters.weights.T
    sines = sum(jnp.sin(parameters.alphas[i] * linear + parameters.betas[i]) for i in range(5))
    residual = np.asarray(rows.y - linear - sines)
    assert abs(residual.std() - 0.1) < 0.002 and abs(residual.mean()) < 0.002


def test_synthetic_dataset_splits_and_is_a_pure_function_of_the_key():
    dataset = correlated_regression_dataset(jax.random.key(4), correlation=0.9, split_sizes=(100, 20, 30))
    assert dataset.train.x.shape == (100, 100) and dataset.train.y.shape == (100, 2)
    assert dataset.validation.x.shape == (20, 100) and dataset.test.y.shape == (30, 2)
    again = correlated_regression_dataset(jax.random.key(4), correlation=0.9, split_sizes=(100, 20, 30))
    np.testing.assert_array_equal(dataset.test.y, again.test.y)
    # vmap over keys: one dataset per seed, as the benchmark trains seeds together.
    batched = jax.vmap(lambda k: correlated_regression_dataset(k, correlation=0.9, split_sizes=(10, 2, 2)).train.y)(
        jax.random.split(jax.random.key(5), 3)
    )
    assert batched.shape == (3, 10, 2) and not np.allclose(batched[0], batched[1])
    with pytest.raises(ValueError, match=r"correlation must be in \[-1, 1\], got 1.5"):
        correlated_task_parameters(jax.random.key(0), correlation=1.5)


def _row(**values):
    """A census row with plausible defaults, some fields overridden by column name."""
    defaults = {name: "Not in universe" for name in COLUMNS}
    defaults.update(
        age="40", wage_per_hour="0", capital_gains="0", capital_losses="0", dividends_from_stocks="0",
        instance_weight="1000.5", num_persons_worked_for_employer="1", weeks_worked_in_year="52", year="95",
        education="High school graduate", marital_status="Divorced", income="- 50000.", sex="Female",
    )  # fmt: skip
    defaults.update(values)
    return ", ".join(defaults[name] for name in COLUMNS)


ROWS = [
    _row(age="20", marital_status="Never married", sex="Male"),
    _row(age="40", income="50000+.", education="Bachelors degree(BA AB BS)"),
    _row(age="60", instance_weight="99999", education="Doctorate degree(PhD EdD)"),
    _row(age="30", sex="Male", marital_status="Never married", income="50000+."),
]


def test_census_rows_become_one_hot_and_standardized_features_and_labels():
    rows = parse_census_rows(ROWS)
    assert rows[0][COLUMNS.index("sex")] == "Male"  # Stripped of the leading space.
    # Train on the first three rows; the fourth is "test" with an unseen age value only.
    dataset = census_dataset(rows[:3], rows[3:], rows[3:], tasks=("income", "never_married", "college"))
    x, y = dataset.train.x, dataset.train.y
    np.testing.assert_array_equal(y, [[0, 1, 0], [1, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(dataset.test.y, [[1, 1, 0]])
    ages = np.array([20.0, 40.0, 60.0])
    # Numeric columns standardized with the training rows' statistics only.
    age = dataset.feature_names.index("age")
    np.testing.assert_allclose(x[:, age], (ages - ages.mean()) / ages.std(), rtol=1e-6)
    np.testing.assert_allclose(dataset.test.x[0, age], (30 - ages.mean()) / ages.std(), rtol=1e-6)
    # Labels and the instance weight are not features; education is a task here, so not a feature either.
    assert dataset.train.x.shape[1] == len(COLUMNS) - 4 + 1  # 2 sex values, one column each for the rest
    # One-hot: every row has exactly one 1 among each categorical column's values.
    one_hot = np.array(["=" in name for name in dataset.feature_names])
    assert one_hot.sum() == x.shape[1] - 7  # All but the 7 numeric columns.
    assert set(np.unique(x[:, one_hot])) <= {0.0, 1.0}
    np.testing.assert_array_equal(x[:, one_hot].sum(axis=1), len(COLUMNS) - 4 - 7)
    assert "sex=Male" in dataset.feature_names and "education=Doctorate degree(PhD EdD)" not in dataset.feature_names
    # Two tasks (the paper's): education stays a feature.
    two_tasks = census_dataset(rows[:3], rows[3:], rows[3:])
    assert two_tasks.train.y.shape == (3, 2) and two_tasks.train.x.shape[1] == x.shape[1] + 3
    with pytest.raises(ValueError, match="census tasks must be a non-empty subset of income, never_married, college"):
        census_dataset(rows, rows, rows, tasks=("salary",))


def test_load_census_splits_the_test_file_reproducibly(tmp_path):
    rows = [_row(age=str(20 + i), income="50000+." if i % 3 == 0 else "- 50000.") for i in range(40)]
    with gzip.open(tmp_path / "census-income.test.gz", "wt") as file:
        file.write("\n".join(rows) + "\n")
    first = load_census_income(tmp_path, seed=1)
    assert (first.train.x.shape[0], first.validation.x.shape[0], first.test.x.shape[0]) == (32, 4, 4)
    np.testing.assert_array_equal(first.test.x, load_census_income(tmp_path, seed=1).test.x)
    assert not np.array_equal(first.test.x, load_census_income(tmp_path, seed=2).test.x)
    assert first.task_kinds == ("binary", "binary")


def test_census_errors_say_where_and_what(tmp_path):
    with pytest.raises(DataError, match=f"looked for {tmp_path}/census-income.test.gz.*--data-dir"):
        load_census_income(tmp_path)
    with gzip.open(tmp_path / "census-income.test.gz", "wt") as file:
        file.write(ROWS[0] + "\n" + "1, 2, 3\n")
    with pytest.raises(DataError, match="census-income.test.gz, line 2: expected 42 comma-separated columns, got 3"):
        load_census_income(tmp_path)
    (tmp_path / "census-income.test.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="could not read .*census-income.test.gz"):
        load_census_income(tmp_path)


def test_offline_census_copy_has_the_documented_rows(census_dir):
    dataset = load_census_income(census_dir)
    sizes = [split.x.shape[0] for split in (dataset.train, dataset.validation, dataset.test)]
    assert sum(sizes) == 99_762
    # 6.2% of the rows earn more than 50K; 43% were never married (counts of the file).
    np.testing.assert_allclose(
        np.concatenate([dataset.train.y, dataset.test.y]).mean(axis=0), [0.062, 0.432], atol=0.005
    )
