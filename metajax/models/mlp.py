"""A plain multilayer perceptron (the sinusoid regressor of MAML and Reptile)."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from metajax.array_checks import check_array
from metajax.models.interfaces import DenseLayers, Features, HeadParameters


class MLP(HeadParameters, DenseLayers, Features, nn.Module):
    """``[batch, in] -> [batch, out]`` with ReLU between the hidden layers.

    With ``flatten_input`` it reads examples of any shape, ``[batch, *example_shape]``, flattened (an
    MLP on images, as the continual-learning benchmarks use it). With ``out_features=None`` there is no
    head: the output is the last hidden layer's (an embedding network). Given ``perturbations``
    (``{layer: [batch, width]}``), it adds them to the layers' outputs and returns ``(outputs,
    {layer: its input})`` (``DenseLayers``). With ``features_only`` it returns the last hidden layer's
    activations, what the head reads (``Features``).
    """

    hidden: Sequence[int]
    out_features: int | None
    flatten_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, perturbations: dict[str, jax.Array] | None = None, *, features_only: bool = False):
        if self.flatten_input:
            check_array("x", x, (None, None, ...), "[batch, *example_shape]", dtype="floating")
            x = x.reshape(x.shape[0], -1)
        check_array("x", x, (None, None), "[batch, in_features]", dtype="floating")
        inputs = {}

        def dense(x, width, name):
            inputs[name] = x
            out = nn.Dense(width, name=name)(x)
            return out if perturbations is None else out + perturbations[name]

        for index, width in enumerate(self.hidden):
            x = nn.relu(dense(x, width, f"Dense_{index}"))  # The names flax would give them.
        if self.out_features is not None and not features_only:
            x = dense(x, self.out_features, "head")  # Declared by HeadParameters.
        return x if perturbations is None else (x, inputs)
