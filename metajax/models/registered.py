"""The models the command can build, in ``metajax.registry.MODELS``.

An entry's ``build(options, *, num_outputs, example_shape)`` returns a flax
module mapping ``[batch, *example_shape]`` to ``[batch, num_outputs]`` logits,
or, with ``num_outputs=None``, to ``[batch, features]`` embeddings (no head);
its trait ``example_rank`` (when set) is the rank of the examples it reads.
The modules declare their head (``metajax.models.interfaces``).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from metajax.models.conv4 import Conv4
from metajax.models.mlp import MLP
from metajax.models.resnet import ResNet18
from metajax.options import option
from metajax.registry import MODELS


def check_example_shape(model: str, example_shape: tuple[int, ...], rank: int | None, words: str) -> None:
    """A model that reads examples of one rank refuses others, in one line."""
    if rank is not None and len(example_shape) != rank:
        raise ValueError(f"model {model} reads {words}; this data's examples have shape {tuple(example_shape)}")


@dataclasses.dataclass(frozen=True)
class MLPOptions:
    hidden: tuple[int, ...] = option((400, 400), "widths of the MLP's hidden ReLU layers")


@MODELS.register(
    "mlp",
    hyperparams=MLPOptions,
    description="A multilayer perceptron on flattened examples (2 x 400 ReLU, as van de Ven & Tolias).",
)
def build_mlp(options: MLPOptions, *, num_outputs: int | None, example_shape: tuple[int, ...]) -> nn.Module:
    return MLP(tuple(options.hidden), num_outputs, flatten_input=len(example_shape) != 1)


@dataclasses.dataclass(frozen=True)
class Conv4Options:
    conv_features: int = option(64, "filters of each of Conv4's four convolutions", minimum=1)
    conv_impl: str = option(
        "slices", "how the convolutions are computed (benchmarks/reptile_throughput.py compares them)",
        choices=("slices", "patches", "lax"),
    )  # fmt: skip


@MODELS.register(
    "conv4",
    hyperparams=Conv4Options,
    description="Four 3x3 stride-2 convolutions with batch norm (Reptile's Omniglot network), then a linear head.",
    example_rank=3,
)
def build_conv4(options: Conv4Options, *, num_outputs: int | None, example_shape: tuple[int, ...]) -> nn.Module:
    check_example_shape("conv4", example_shape, 3, "images [height, width, channels]")
    return Conv4(num_classes=num_outputs, features=options.conv_features, conv_impl=options.conv_impl)  # type: ignore[arg-type]  # One of its choices.


_RESNET_CONVOLUTION_HELP = (
    "how ResNet's convolutions are computed: auto picks per backend (benchmarks/resnet_conv_cost.py)"
)


@dataclasses.dataclass(frozen=True)
class ResNet18Options:
    base_filters: int = option(
        64, "filters of ResNet-18's stem and first stage (doubled at each later stage)", minimum=1
    )
    convolution: str = option("auto", _RESNET_CONVOLUTION_HELP, choices=("auto", "slices", "lax"))


@dataclasses.dataclass(frozen=True)
class ReducedResNet18Options(ResNet18Options):
    base_filters: int = option(
        20, "filters of ResNet-18's stem and first stage (doubled at each later stage)", minimum=1
    )


def _build_resnet18(model: str, options: ResNet18Options, num_outputs: int | None, example_shape) -> nn.Module:
    check_example_shape(model, example_shape, 3, "images [height, width, channels]")
    return ResNet18(num_classes=num_outputs, base_filters=options.base_filters, conv_impl=options.convolution)  # type: ignore[arg-type]  # One of its choices.


@MODELS.register(
    "resnet18",
    hyperparams=ResNet18Options,
    description="ResNet-18 with batch norm for 32x32 images, as mammoth's (64 base filters, 11.2M parameters).",
    example_rank=3,
)
def build_resnet18(options: ResNet18Options, *, num_outputs: int | None, example_shape: tuple[int, ...]) -> nn.Module:
    return _build_resnet18("resnet18", options, num_outputs, example_shape)


@MODELS.register(
    "reduced-resnet18",
    hyperparams=ReducedResNet18Options,
    description="The reduced ResNet-18 of GEM, A-GEM and ER-ACE: ResNet-18 with 20 base filters, with batch norm.",
    example_rank=3,
)
def build_reduced_resnet18(
    options: ReducedResNet18Options, *, num_outputs: int | None, example_shape: tuple[int, ...]
) -> nn.Module:
    return _build_resnet18("reduced-resnet18", options, num_outputs, example_shape)
