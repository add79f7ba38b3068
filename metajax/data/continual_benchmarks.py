"""The continual-learning benchmarks the command can build, in ``metajax.registry.CONTINUAL_BENCHMARKS``.

An entry's ``build(*, data_dir, scenario, experiences, seed) -> Stream``; its
trait ``scenarios`` lists the scenarios it supports, the first the default.
Examples keep their shape: MNIST and Omniglot as ``28 x 28 x 1`` images, so
convolutional models train on them (an MLP flattens them).
"""

from __future__ import annotations

from metajax.data.continual_streams import Stream, gaussian_classes, permuted_stream, split_mnist, split_omniglot
from metajax.data.mnist import LabeledImages, MnistSplits, load_mnist
from metajax.data.omniglot import load_omniglot
from metajax.registry import CONTINUAL_BENCHMARKS

ALL_SCENARIOS = ("class-il", "task-il", "domain-il")


def mnist_images(data_dir) -> MnistSplits:
    """MNIST as ``[n, 28, 28, 1]`` images (views of ``load_mnist``'s flat arrays)."""
    data = load_mnist(data_dir)
    return MnistSplits(*(LabeledImages(split.x.reshape(-1, 28, 28, 1), split.y) for split in data))


@CONTINUAL_BENCHMARKS.register(
    "split-gaussian",
    description="Ten Gaussian classes in 64 dimensions, split like Split MNIST: generated, needs no files.",
    scenarios=ALL_SCENARIOS,
)
def build_split_gaussian(*, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    return split_mnist(gaussian_classes(seed=seed), scenario, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "split-mnist", description="Split MNIST: five experiences of two digits each.", scenarios=ALL_SCENARIOS
)
def build_split_mnist(*, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    return split_mnist(mnist_images(data_dir), scenario, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "permuted-mnist",
    description="Permuted MNIST: every experience all ten digits under its own pixel permutation.",
    scenarios=("domain-il", "task-il"),
)
def build_permuted_mnist(*, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    return permuted_stream(mnist_images(data_dir), experiences, scenario, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "split-omniglot",
    description="Split Omniglot: experiences of ten characters of Omniglot's evaluation alphabets.",
    scenarios=ALL_SCENARIOS,
)
def build_split_omniglot(*, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    bank = load_omniglot(data_dir).test
    return split_omniglot(bank, scenario, num_experiences=experiences, seed=seed)
