"""The four-layer convolutional network of Reptile's Omniglot experiments.

Reptile (Nichol et al. 2018, arXiv 1803.02999, and its code) uses 4 x [3x3
conv with 64 filters and stride 2, batch norm, ReLU], then a linear layer on the
flattened 2x2x64 features; the keras.io Reptile example is the same network.
We build that strided variant (not MAML's max-pool one).
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from metajax.models.interfaces import HeadParameters

ConvImpl = Literal["slices", "patches", "lax"]


class BatchStatNorm(nn.Module):
    """Batch norm that always normalizes with the statistics of the batch at hand.

    Reptile keeps its batch norm in training mode at meta-test time too, so
    there are no running averages and the layer is a pure function of its
    input: which examples share a batch is what the ``transductive`` switch of
    evaluation decides.
    """

    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        reduce_axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=reduce_axes, keepdims=True)
        variance = jnp.mean(jnp.square(x - mean), axis=reduce_axes, keepdims=True)
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        return (x - mean) * lax.rsqrt(variance + self.epsilon) * jnp.expand_dims(scale, reduce_axes) + jnp.expand_dims(
            bias, reduce_axes
        )


class StridedConv(nn.Module):
    """A 3x3 'SAME' convolution without bias (the batch norm after it adds one).

    Three formulations of the same function, chosen by ``impl``:

    * ``"slices"``: im2col from strided slices of the padded input, then a
      matmul. Under ``vmap`` over tasks the matmul becomes one batched
      matmul, and the backward pass of slicing is padding: cheap everywhere.
    * ``"patches"``: im2col with ``lax.conv_general_dilated_patches``.
    * ``"lax"``: ``lax.conv_general_dilated``; under ``vmap`` it becomes a
      grouped convolution, which XLA's CPU backend runs several times slower.

    ``benchmarks/reptile_throughput.py`` measures all three.
    """

    features: int
    stride: int = 2
    kernel_size: int = 3
    impl: ConvImpl = "slices"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        k, s = self.kernel_size, self.stride
        # Stored as [out, (kh, kw, in)], the layout of PyTorch's weights: the
        # backward matmul for the input gradient then reads it without a
        # transpose (XLA:CPU copied a transposed kernel for it with [in, out]).
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(in_axis=1, out_axis=0), (self.features, k * k * in_features)
        )
        if self.impl == "slices":
            return _contract_last(_patches_by_slicing(x, k, s), kernel)
        if self.impl == "patches":
            patches = lax.conv_general_dilated_patches(
                x, (k, k), (s, s), "SAME", dimension_numbers=("NHWC", "OIHW", "NHWC")
            )  # features ordered (in, kh, kw)
            return _contract_last(
                patches, kernel.reshape(-1, k, k, in_features).transpose(0, 3, 1, 2).reshape(kernel.shape)
            )
        if self.impl == "lax":
            hwio = kernel.T.reshape(k, k, in_features, self.features)
            return lax.conv_general_dilated(x, hwio, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        raise ValueError(f"impl must be 'slices', 'patches' or 'lax', got {self.impl!r}")


def _contract_last(patches: jax.Array, kernel: jax.Array) -> jax.Array:
    """``[..., features_in] x [out, features_in] -> [..., out]``."""
    return lax.dot_general(patches, kernel, (((patches.ndim - 1,), (1,)), ((), ())))


def _patches_by_slicing(x: jax.Array, kernel_size: int, stride: int) -> jax.Array:
    """``[n, h, w, c] -> [n, h', w', kh * kw * c]`` patches with 'SAME' padding."""
    _, height, width, _ = x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + kernel_size - height, 0)
    pad_w = max((out_w - 1) * stride + kernel_size - width, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    rows = (out_h - 1) * stride + 1
    cols = (out_w - 1) * stride + 1
    slices = [
        x[:, i : i + rows : stride, j : j + cols : stride, :] for i in range(kernel_size) for j in range(kernel_size)
    ]
    return jnp.concatenate(slices, axis=-1)


class Conv4(HeadParameters, nn.Module):
    """Reptile's Omniglot classifier: ``[batch, 28, 28, 1] -> [batch, num_classes]`` logits.

    With ``num_classes=None`` there is no linear head and the output is the
    ``[batch, 256]`` flattened features (for 28x28 inputs).
    """

    num_classes: int | None
    features: int = 64
    depth: int = 4
    conv_impl: ConvImpl = "slices"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"Conv4 input x must have shape [batch, height, width, channels], got shape {x.shape}")
        for _ in range(self.depth):
            x = StridedConv(self.features, impl=self.conv_impl)(x)
            x = nn.relu(BatchStatNorm()(x))
        features = x.reshape(x.shape[0], -1)
        if self.num_classes is None:  # An embedding network (Prototypical Networks).
            return features
        # Declared by HeadParameters, for learners that adapt only the head (ANIL).
        return nn.Dense(self.num_classes, name="head")(features)
