"""A plain multilayer perceptron (the sinusoid regressor of MAML and Reptile)."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from metajax.array_checks import check_array
from metajax.models.interfaces import HeadParameters


class MLP(HeadParameters, nn.Module):
    """``[batch, in] -> [batch, out]`` with ReLU between the hidden layers.

    With ``flatten_input`` it reads examples of any shape, ``[batch, *example_shape]``, flattened (an
    MLP on images, as the continual-learning benchmarks use it). With ``out_features=None`` there is no
    head: the output is the last hidden layer's (an embedding network).
    """

    hidden: Sequence[int]
    out_features: int | None
    flatten_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.flatten_input:
            check_array("x", x, (None, None, ...), "[batch, *example_shape]", dtype="floating")
            x = x.reshape(x.shape[0], -1)
        check_array("x", x, (None, None), "[batch, in_features]", dtype="floating")
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        if self.out_features is None:
            return x
        return nn.Dense(self.out_features, name="head")(x)  # Declared by HeadParameters.
