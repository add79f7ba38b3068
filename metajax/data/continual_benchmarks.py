"""The continual-learning benchmarks the command can build, in ``metajax.registry.CONTINUAL_BENCHMARKS``.

An entry's ``build(options, *, data_dir, scenario, experiences, seed) -> Stream``
(``options``: its hyperparameter dataclass filled in, ``None`` if it has none);
its trait ``scenarios`` lists the scenarios it supports, the first the default,
and ``argument`` the option that ``--benchmark NAME:VALUE`` sets. Examples keep
their shape: MNIST and Omniglot as ``28 x 28 x 1`` images, so convolutional
models train on them (an MLP flattens them).
"""

from __future__ import annotations

import dataclasses

from metajax.data.continual_streams import Stream, gaussian_classes, permuted_stream, split_mnist, split_omniglot
from metajax.data.mnist import LabeledImages, MnistSplits, load_mnist
from metajax.data.omniglot import load_omniglot
from metajax.data.user_data import UserClassesOptions, read_classes, user_stream
from metajax.options import option
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
def build_split_gaussian(options: None, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-gaussian`` stream: ``gaussian_classes`` split in pairs of classes (``data_dir`` unused)."""
    return split_mnist(gaussian_classes(seed=seed), scenario, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "split-mnist", description="Split MNIST: five experiences of two digits each.", scenarios=ALL_SCENARIOS
)
def build_split_mnist(options: None, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-mnist`` stream: MNIST from ``data_dir`` (or TFDS) in five pairs of digits."""
    return split_mnist(mnist_images(data_dir), scenario, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "permuted-mnist",
    description="Permuted MNIST: every experience all ten digits under its own pixel permutation.",
    scenarios=("domain-il", "task-il"),
)
def build_permuted_mnist(options: None, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``permuted-mnist`` stream: ``experiences`` pixel permutations of MNIST from ``data_dir`` (or TFDS)."""
    return permuted_stream(mnist_images(data_dir), experiences, scenario, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "split-omniglot",
    description="Split Omniglot: experiences of ten characters of Omniglot's evaluation alphabets.",
    scenarios=ALL_SCENARIOS,
)
def build_split_omniglot(options: None, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-omniglot`` stream: ``experiences`` groups of characters of Omniglot's evaluation set."""
    bank = load_omniglot(data_dir).test
    return split_omniglot(bank, scenario, num_experiences=experiences, seed=seed)


@dataclasses.dataclass(frozen=True)
class ContinualUserOptions(UserClassesOptions):
    classes_per_experience: int = option(
        2, "classes per experience of your data, in their sorted order (the last experience takes what is left)",
        minimum=1,
    )  # fmt: skip
    test_fraction: float = option(0.2, "share of each of your classes' examples held out for testing", above=0)

    def __post_init__(self):
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test-fraction must be between 0 and 1, got {self.test_fraction}")


def build_user_stream(kind: str, options: ContinualUserOptions, scenario: str, seed: int) -> Stream:
    """A class-incremental split of a user's classes (``metajax.data.user_data``)."""
    data = read_classes(kind, options)
    return user_stream(
        data, scenario, classes_per_experience=options.classes_per_experience, test_fraction=options.test_fraction,
        seed=seed,
    )  # fmt: skip


@CONTINUAL_BENCHMARKS.register(
    "folder",
    hyperparams=ContinualUserOptions,
    description="Your own images: a folder of class subfolders, split into experiences of its classes.",
    scenarios=ALL_SCENARIOS,
    argument="path",
)
def build_folder(options: ContinualUserOptions, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``folder`` stream: a folder of class subfolders at ``options.path``, split into experiences."""
    return build_user_stream("folder", options, scenario, seed)


@CONTINUAL_BENCHMARKS.register(
    "npz",
    hyperparams=ContinualUserOptions,
    description="Your own examples: an .npz of x and y (class labels), split into experiences of its classes.",
    scenarios=ALL_SCENARIOS,
    argument="path",
)
def build_npz(options: ContinualUserOptions, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``npz`` stream: the ``x`` and ``y`` of the ``.npz`` at ``options.path``, split into experiences."""
    return build_user_stream("npz", options, scenario, seed)
