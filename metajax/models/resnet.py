"""ResNet-18 for 32 x 32 images, as the continual-learning literature trains it, with batch norm.

The network of mammoth (Buzzega et al. 2020, arXiv 2004.07211, and its
code): a 3x3 stride-1 stem convolution with ``base_filters`` filters (no max
pool, for 32 x 32 inputs), four stages of two ``BasicBlock`` s with 1, 2, 4 and
8 times ``base_filters`` filters (stride 2 at the start of the last three
stages; a 1x1 convolution with batch norm on the shortcut where the shape
changes), global average pooling and a linear head. Convolutions have no bias
and pad by ``kernel_size // 2`` on every side, as PyTorch's ``padding=1``.
``base_filters=64`` is mammoth's ResNet-18 (11.17M parameters with 10
outputs); ``base_filters=20`` is the reduced ResNet-18 of GEM (Lopez-Paz &
Ranzato 2017, arXiv 1706.08840), A-GEM and ER-ACE (Caccia et al. 2022, arXiv
2104.05025).

Batch norm keeps running statistics in the flax collection ``batch_stats``,
beside ``params`` in the model's variables: the continual learner holds both
in its one ``params`` pytree (so checkpoints, the seed axis and every strategy
see one pytree). ``model.apply(variables, x)`` is inference mode (running
statistics); ``train_apply`` (``metajax.models.interfaces.RunningStatistics``)
is the training forward pass, which normalizes with the batch's statistics and
returns the updated running ones. The running statistics are constants to
every gradient (``stop_gradient`` in inference mode; unread in training mode).

Convolution formulation (``conv_impl``): ``"lax"`` is ``lax.conv_general_dilated``;
``"slices"`` is im2col from strided slices of the padded input, then one
matmul (as Conv4's ``StridedConv``). ``"auto"`` picks per backend by
``benchmarks/resnet_conv_cost.py`` (results in
``benchmarks/results/resnet_conv_cost/``). On the CPU ``"slices"``: a training
step of XLA:CPU's ``lax`` convolutions ran 3-50x slower than the matmuls of
``"slices"`` (both widths, batch 10 and 32, one run and three vmapped, where
``lax`` becomes a grouped convolution). On GPU ``"lax"`` (cuDNN's
convolutions), a choice not measured yet.
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from metajax.array_checks import check_array
from metajax.models.interfaces import Features, HeadParameters, RunningStatistics

ConvImpl = Literal["auto", "slices", "lax"]

# The measured choice per backend (benchmarks/resnet_conv_cost.py); a backend not named here gets "lax".
AUTO_CONV_IMPL = {"cpu": "slices"}

# PyTorch's default initialization of a convolution's and a linear layer's weights: U(-1/sqrt(fan_in), +).
_TORCH_KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def resolved_conv_impl(impl: ConvImpl) -> Literal["slices", "lax"]:
    """``impl``, or for ``"auto"`` the measured choice for the default backend."""
    if impl == "auto":
        return AUTO_CONV_IMPL.get(jax.default_backend(), "lax")  # type: ignore[return-value]  # Its values.
    if impl not in ("slices", "lax"):
        raise ValueError(f"conv_impl must be 'auto', 'slices' or 'lax', got {impl!r}")
    return impl


class RunningBatchNorm(nn.Module):
    """Batch norm over all axes but the last, with running statistics in the collection ``batch_stats``.

    With ``train`` it normalizes with the batch's mean and (biased) variance
    and, outside initialization, moves the running ones towards the batch's
    by ``momentum``: ``running = (1 - momentum) * running + momentum * batch``,
    with the batch's unbiased variance in the running variance (PyTorch's
    ``BatchNorm2d``, whose defaults ``momentum=0.1``, ``eps=1e-5`` these are).
    Without ``train`` it normalizes with the running statistics, read through
    ``stop_gradient``: no loss moves them.
    """

    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        features = x.shape[-1]
        reduce_axes = tuple(range(x.ndim - 1))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        if train:
            mean = jnp.mean(x, axis=reduce_axes)
            var = jnp.mean(jnp.square(x - jnp.expand_dims(mean, reduce_axes)), axis=reduce_axes)
            if not self.is_initializing():
                count = x.size // features
                unbiased = lax.stop_gradient(var) * (count / max(count - 1, 1))
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * lax.stop_gradient(mean)
                running_var.value = (1 - m) * running_var.value + m * unbiased
        else:
            mean, var = lax.stop_gradient(running_mean.value), lax.stop_gradient(running_var.value)
        multiplier = scale * lax.rsqrt(var + self.epsilon)
        return x * jnp.expand_dims(multiplier, reduce_axes) + jnp.expand_dims(bias - mean * multiplier, reduce_axes)


class PaddedConv(nn.Module):
    """A square convolution without bias, padded by ``kernel_size // 2`` on each side (PyTorch's
    ``padding=1`` for 3x3), its kernel ``[kh, kw, in, out]``; ``impl`` ``"lax"`` or ``"slices"``."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    impl: Literal["slices", "lax"] = "lax"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, pad = self.kernel_size, self.stride, self.kernel_size // 2
        kernel = self.param("kernel", _TORCH_KERNEL_INIT, (k, k, x.shape[-1], self.features))
        if self.impl == "lax":
            return lax.conv_general_dilated(
                x, kernel, (s, s), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        patches = _patches(x, k, s, pad)  # [n, h', w', (kh, kw, in)], the order of the kernel's reshape
        return lax.dot_general(patches, kernel.reshape(-1, self.features), (((3,), (0,)), ((), ())))


def _patches(x: jax.Array, kernel_size: int, stride: int, pad: int) -> jax.Array:
    """``[n, h, w, c] -> [n, h', w', kh * kw * c]``: im2col from strided slices of the padded input."""
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    _, height, width, _ = x.shape
    out_h, out_w = (height - kernel_size) // stride + 1, (width - kernel_size) // stride + 1
    rows, cols = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    slices = [
        x[:, i : i + rows : stride, j : j + cols : stride, :] for i in range(kernel_size) for j in range(kernel_size)
    ]
    return slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (He et al. 2016, arXiv 1512.03385)."""

    features: int
    stride: int = 1
    impl: Literal["slices", "lax"] = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        out = PaddedConv(self.features, 3, self.stride, self.impl, name="conv1")(x)
        out = nn.relu(RunningBatchNorm(name="norm1")(out, train=train))
        out = PaddedConv(self.features, 3, 1, self.impl, name="conv2")(out)
        out = RunningBatchNorm(name="norm2")(out, train=train)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = PaddedConv(self.features, 1, self.stride, self.impl, name="shortcut_conv")(x)
            shortcut = RunningBatchNorm(name="shortcut_norm")(shortcut, train=train)
        return nn.relu(out + shortcut)


class ResNet18(HeadParameters, RunningStatistics, Features, nn.Module):
    """``[batch, height, width, channels] -> [batch, num_classes]`` logits (see the module docstring).

    ``__call__(x, train=False)``: ``train`` normalizes with the batch's
    statistics and updates the running ones (``mutable=["batch_stats"]``);
    ``features_only=True`` returns the ``[batch, 8 * base_filters]`` pooled
    features the head reads (``Features``: ``features(variables, x)``, in
    inference mode).
    With ``num_classes=None`` there is no head and the output is the pooled
    features.
    """

    num_classes: int | None
    base_filters: int = 64
    blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2)
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, features_only: bool = False) -> jax.Array:
        check_array("x", x, (None, None, None, None), "[batch, height, width, channels]", dtype="floating")
        impl = resolved_conv_impl(self.conv_impl)
        x = PaddedConv(self.base_filters, 3, 1, impl, name="stem_conv")(x)
        x = nn.relu(RunningBatchNorm(name="stem_norm")(x, train=train))
        for stage, blocks in enumerate(self.blocks_per_stage):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(self.base_filters * 2**stage, stride, impl, name=f"stage{stage + 1}_block{block + 1}")(
                    x, train=train
                )
        pooled = jnp.mean(x, axis=(1, 2))
        if features_only or self.num_classes is None:
            return pooled
        # Declared by HeadParameters.
        return nn.Dense(self.num_classes, kernel_init=_TORCH_KERNEL_INIT, name="head")(pooled)
