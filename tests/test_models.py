"""Conv4's three formulations agree, and every matmul asks for full float32."""

import jax
import numpy as np
import pytest
from jax import lax

from metajax.models import MLP, Conv4


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


def _matmul_precisions(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args)
    return [
        eqn.params["precision"]
        for eqn in jaxpr.jaxpr.eqns
        if eqn.primitive.name in ("dot_general", "conv_general_dilated")
    ]


@pytest.mark.parametrize(
    "model,x",
    [(Conv4(5), np.zeros((2, 28, 28, 1), np.float32)), (Conv4(5, conv_impl="lax"), np.zeros((2, 28, 28, 1), np.float32)),
     (MLP((8,), 1), np.zeros((2, 1), np.float32))],
)  # fmt: skip
def test_matmuls_request_highest_precision(model, x):
    """TF32 inputs on GPUs wrecked Reptile's inner Adam loop (see conv4._contract_last)."""
    params = model.init(jax.random.key(0), x)
    precisions = _matmul_precisions(model.apply, params, x)
    assert precisions and all(p == (lax.Precision.HIGHEST, lax.Precision.HIGHEST) for p in precisions), precisions
