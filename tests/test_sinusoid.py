import jax
import numpy as np

from metajax.data import sinusoid_sampler
from metajax.data.sinusoid import sample_sinusoid_parameters


def test_sinusoid_tasks_follow_the_family():
    tasks, amplitude, phase = sample_sinusoid_parameters(jax.random.key(0), 500, 10, 5)
    assert tasks.support_x.shape == (500, 10, 1) and tasks.query_y.shape == (500, 5, 1)
    amplitude, phase = np.asarray(amplitude), np.asarray(phase)
    assert amplitude.min() >= 0.1 and amplitude.max() <= 5.0
    assert phase.min() >= 0.0 and phase.max() <= np.pi
    x = np.concatenate([tasks.support_x, tasks.query_x], axis=1)
    y = np.concatenate([tasks.support_y, tasks.query_y], axis=1)
    assert x.min() >= -5.0 and x.max() <= 5.0
    np.testing.assert_allclose(y, amplitude[:, None, None] * np.sin(x - phase[:, None, None]), atol=1e-5)
    # Spread over the whole ranges, not stuck at one value.
    assert amplitude.std() > 1.0 and phase.std() > 0.5


def test_sampler_matches_parameterised_sampler():
    tasks = sinusoid_sampler(4, 3)(jax.random.key(1), 7)
    reference, _, _ = sample_sinusoid_parameters(jax.random.key(1), 7, 4, 3)
    for a, b in zip(tasks, reference, strict=True):
        np.testing.assert_array_equal(a, b)
