"""Conv4's three formulations compute the same function."""

import jax
import numpy as np
import pytest

from metajax.models import Conv4


@pytest.mark.parametrize("impl", ["patches", "lax"])
def test_formulations_compute_the_same_function_and_gradient(impl):
    x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    params = Conv4(5).init(jax.random.key(1), x)  # One parameter layout for all three.

    def loss(params, impl):
        return Conv4(5, conv_impl=impl).apply(params, x).sum()

    np.testing.assert_allclose(Conv4(5, conv_impl=impl).apply(params, x), Conv4(5).apply(params, x), atol=1e-5)
    grad, reference = jax.grad(loss)(params, impl), jax.grad(loss)(params, "slices")
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_output_shape_and_bad_rank():
    model = Conv4(7)
    x = np.zeros((3, 28, 28, 1), np.float32)
    assert model.apply(model.init(jax.random.key(0), x), x).shape == (3, 7)
    with pytest.raises(ValueError, match=r"Conv4 input x must have shape \[batch, height, width, channels\]"):
        model.init(jax.random.key(0), x[..., 0])
