"""A plain multilayer perceptron (the sinusoid regressor of MAML and Reptile)."""

from collections.abc import Sequence

import flax.linen as nn
import jax
from jax import lax


class MLP(nn.Module):
    """``[batch, in] -> [batch, out]`` with ReLU between the hidden layers."""

    hidden: Sequence[int]
    out_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # Full float32 on GPUs too, as Conv4 (see metajax/models/conv4.py).
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, precision=lax.Precision.HIGHEST)(x))
        return nn.Dense(self.out_features, precision=lax.Precision.HIGHEST)(x)
