"""The MMoE paper's synthetic pair of regression tasks with a controlled correlation.

Ma et al. (KDD 2018), section 3.2: orthonormal u1, u2 in R^d;
w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2); x ~ N(0, I);
y_k = w_k.x + sum_{i=1..m} sin(alpha_i w_k.x + beta_i) + noise with
alpha_i, beta_i ~ N(0, 1) shared by both tasks and noise ~ N(0, 0.01). The
Pearson correlation of the linear parts w1.x and w2.x is p; the sines make the
tasks' correlation smaller and nonlinear.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, check_key
from metajax.data.multitask import MultiTaskBatch, MultiTaskDataset


class CorrelatedTaskParameters(NamedTuple):
    """``weights`` ``[2, features]`` (rows w1, w2); ``alphas``, ``betas`` ``[sines]``."""

    weights: jax.Array
    alphas: jax.Array
    betas: jax.Array


def correlated_task_parameters(
    key: jax.Array, *, correlation: float, num_features: int = 100, num_sines: int = 5, scale: float = 0.3
) -> CorrelatedTaskParameters:
    """Draws w1, w2 with cosine similarity ``correlation`` and the shared sine parameters."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [-1, 1], got {correlation}")
    if num_features < 2:
        raise ValueError(f"num_features must be at least 2 for two orthonormal vectors, got {num_features}")
    directions_key, alphas_key, betas_key = jax.random.split(key, 3)
    # QR of a Gaussian matrix: two orthonormal directions, uniformly oriented.
    orthonormal, _ = jnp.linalg.qr(jax.random.normal(directions_key, (num_features, 2)))
    u1, u2 = orthonormal.T
    weights = scale * jnp.stack([u1, correlation * u1 + jnp.sqrt(1.0 - correlation**2) * u2])
    return CorrelatedTaskParameters(
        weights=weights,
        alphas=jax.random.normal(alphas_key, (num_sines,)),
        betas=jax.random.normal(betas_key, (num_sines,)),
    )


def correlated_task_examples(
    key: jax.Array, parameters: CorrelatedTaskParameters, num_examples: int, *, noise_std: float = 0.1
) -> MultiTaskBatch:
    """``num_examples`` rows ``x [n, features]``, ``y [n, 2]`` of the two tasks."""
    check_key("key", key)
    check_array("parameters.weights", parameters.weights, (2, None), "[2, features]", dtype="floating")
    num_sines = check_array("parameters.alphas", parameters.alphas, (None,), "[sines]", dtype="floating")[0]
    check_array("parameters.betas", parameters.betas, (num_sines,), "[sines] like alphas", dtype="floating")
    if num_examples < 1:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    x_key, noise_key = jax.random.split(key)
    x = jax.random.normal(x_key, (num_examples, parameters.weights.shape[1]))
    linear = x @ parameters.weights.T  # [n, 2]
    alphas, betas = (jnp.reshape(a, (1, 1, -1)) for a in (parameters.alphas, parameters.betas))
    sines = jnp.sum(jnp.sin(alphas * linear[..., None] + betas), axis=-1)
    noise = noise_std * jax.random.normal(noise_key, linear.shape)
    return MultiTaskBatch(x=x, y=linear + sines + noise)


def correlated_regression_dataset(
    key: jax.Array,
    *,
    correlation: float,
    split_sizes: tuple[int, int, int] = (10_000, 1_000, 1_000),
    num_features: int = 100,
    num_sines: int = 5,
    scale: float = 0.3,
    noise_std: float = 0.1,
) -> MultiTaskDataset:
    """Train / validation / test rows of one draw of the task pair (keras-mmoe's 10k/1k/1k by default).

    Pure in ``key``, so ``jax.vmap`` over keys gives independent datasets (one per seed).
    """
    parameters_key, examples_key = jax.random.split(key)
    parameters = correlated_task_parameters(
        parameters_key, correlation=correlation, num_features=num_features, num_sines=num_sines, scale=scale
    )
    rows = correlated_task_examples(examples_key, parameters, sum(split_sizes), noise_std=noise_std)
    first, second = split_sizes[0], split_sizes[0] + split_sizes[1]
    return MultiTaskDataset(
        train=MultiTaskBatch(rows.x[:first], rows.y[:first]),
        validation=MultiTaskBatch(rows.x[first:second], rows.y[first:second]),
        test=MultiTaskBatch(rows.x[second:], rows.y[second:]),
        task_names=("task_1", "task_2"),
        task_kinds=("regression", "regression"),
    )
