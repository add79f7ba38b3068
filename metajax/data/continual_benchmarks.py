"""The continual-learning benchmarks the command can build, in ``metajax.registry.CONTINUAL_BENCHMARKS``.

An entry's ``build(options, *, data_dir, scenario, experiences, seed) -> Stream``
(``options``: its hyperparameter dataclass filled in, ``None`` if it has none);
its trait ``scenarios`` lists the scenarios it supports, the first the default,
and ``argument`` the option that ``--benchmark NAME:VALUE`` sets. Examples keep
their shape: MNIST and Omniglot as ``28 x 28 x 1`` images, CIFAR as
``32 x 32 x 3`` and TinyImageNet as ``64 x 64 x 3``, so convolutional models
train on them (an MLP flattens them). The split benchmarks take
``--class-order-seed``: classes enter in label order by default, in a seeded
permutation of them with it.
"""

from __future__ import annotations

import dataclasses

from metajax.data.cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_LABELS,
    CIFAR100_MEAN,
    CIFAR100_STD,
    load_cifar10,
    load_cifar100,
)
from metajax.data.continual_streams import (
    Stream,
    gaussian_classes,
    permuted_stream,
    split_classes,
    split_mnist,
    split_omniglot,
)
from metajax.data.image_datasets import standardized_stream
from metajax.data.mnist import LabeledImages, MnistSplits, load_mnist
from metajax.data.omniglot import load_omniglot
from metajax.data.tiny_imagenet import TINY_IMAGENET_MEAN, TINY_IMAGENET_STD, load_tiny_imagenet
from metajax.data.user_data import UserClassesOptions, read_classes, user_stream
from metajax.options import option
from metajax.registry import CONTINUAL_BENCHMARKS

ALL_SCENARIOS = ("class-il", "task-il", "domain-il")


def mnist_images(data_dir) -> MnistSplits:
    """MNIST as ``[n, 28, 28, 1]`` images (views of ``load_mnist``'s flat arrays)."""
    data = load_mnist(data_dir)
    return MnistSplits(*(LabeledImages(split.x.reshape(-1, 28, 28, 1), split.y) for split in data))


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """The options of every class-incremental split benchmark."""

    class_order_seed: int | None = option(
        None, "enter the classes in a permutation drawn with this seed (default: in label order)", minimum=0
    )


@CONTINUAL_BENCHMARKS.register(
    "split-gaussian",
    hyperparams=SplitOptions,
    description="Ten Gaussian classes in 64 dimensions, split like Split MNIST: generated, needs no files.",
    scenarios=ALL_SCENARIOS,
)
def build_split_gaussian(options: SplitOptions, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-gaussian`` stream: ``gaussian_classes`` split in pairs of classes (``data_dir`` unused)."""
    return split_mnist(gaussian_classes(seed=seed), scenario, class_order_seed=options.class_order_seed, seed=seed)


@CONTINUAL_BENCHMARKS.register(
    "split-mnist",
    hyperparams=SplitOptions,
    description="Split MNIST: five experiences of two digits each.",
    scenarios=ALL_SCENARIOS,
)
def build_split_mnist(options: SplitOptions, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-mnist`` stream: MNIST from ``data_dir`` (or TFDS) in five pairs of digits."""
    return split_mnist(mnist_images(data_dir), scenario, class_order_seed=options.class_order_seed, seed=seed)


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


@CONTINUAL_BENCHMARKS.register(
    "split-cifar10",
    hyperparams=SplitOptions,
    description="Split CIFAR-10: five experiences of two classes each.",
    scenarios=ALL_SCENARIOS,
)
def build_split_cifar10(options: SplitOptions, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-cifar10`` stream: CIFAR-10 from ``data_dir/cifar10.npz`` (or TFDS) in five pairs of classes."""
    stream = split_classes(
        load_cifar10(data_dir).splits, 10, 5, scenario, class_order_seed=options.class_order_seed, seed=seed
    )
    return standardized_stream(stream, CIFAR10_MEAN, CIFAR10_STD)


@dataclasses.dataclass(frozen=True)
class Cifar100Options(SplitOptions):
    """``SplitOptions`` and which of CIFAR-100's labels are the classes."""

    cifar100_labels: str = option(
        "fine", "CIFAR-100's 100 fine classes or its 20 coarse superclasses", choices=CIFAR100_LABELS
    )


@CONTINUAL_BENCHMARKS.register(
    "split-cifar100",
    hyperparams=Cifar100Options,
    description="Split CIFAR-100: --experiences experiences (default 10) of equally many of its 100 classes.",
    scenarios=ALL_SCENARIOS,
)
def build_split_cifar100(options: Cifar100Options, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-cifar100`` stream: CIFAR-100 from ``data_dir/cifar-100-python`` (or TFDS) in ``experiences``."""
    num_classes = 100 if options.cifar100_labels == "fine" else 20
    # The uint8 images are let go before the stream's float32 copy is made (no local name holds them).
    stream = split_classes(
        load_cifar100(data_dir, labels=options.cifar100_labels).splits, num_classes, experiences, scenario,
        class_order_seed=options.class_order_seed, seed=seed,
    )  # fmt: skip
    return standardized_stream(stream, CIFAR100_MEAN, CIFAR100_STD)


@CONTINUAL_BENCHMARKS.register(
    "split-tinyimagenet",
    hyperparams=SplitOptions,
    description="Split TinyImageNet: --experiences experiences (default 10) of its 200 classes, 64 x 64 images.",
    scenarios=ALL_SCENARIOS,
)
def build_split_tinyimagenet(options: SplitOptions, *, data_dir, scenario: str, experiences: int, seed: int) -> Stream:
    """The ``split-tinyimagenet`` stream: the ``tiny-imagenet-200`` folder ``data_dir`` in ``experiences``."""
    stream = split_classes(
        load_tiny_imagenet(data_dir).splits, 200, experiences, scenario, class_order_seed=options.class_order_seed,
        seed=seed,
    )  # fmt: skip
    return standardized_stream(stream, TINY_IMAGENET_MEAN, TINY_IMAGENET_STD)


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
