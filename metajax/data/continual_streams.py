"""Continual-learning streams: experiences as arrays with a leading experience axis.

A ``Stream`` holds every experience's training and test examples stacked, so a
whole stream lives on the device and a compiled train step serves every
experience. Experiences of a split benchmark hold unequal numbers of examples;
training sets are cut (at random, seeded) to the smallest one's size, test sets
are padded and carry a validity mask so every test example counts.

Scenarios (van de Ven & Tolias 2019, arXiv 1904.07734):
  * ``task-il``: the task id is given; each experience has its own head (here:
    the logits of the experience's own classes, the rest masked out);
  * ``domain-il``: no task id; labels are the class's position within its
    experience (e.g. even/odd digit for Split MNIST), one shared head;
  * ``class-il``: no task id; one head over all classes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from metajax.array_checks import check_array
from metajax.data.mnist import LabeledImages, MnistSplits

SCENARIOS = ("task-il", "domain-il", "class-il")


class Stream(NamedTuple):
    """A sequence of experiences, every array with a leading experience axis.

    Attributes:
      train_x: ``[experiences, n, *example_shape]`` training inputs (feature vectors or images).
      train_y: ``[experiences, n]`` int labels, in the scenario's label space.
      test_x: ``[experiences, m, *example_shape]`` test inputs (padded).
      test_y: ``[experiences, m]`` test labels.
      test_mask: ``[experiences, m]`` bool, False on padding rows.
      logit_mask: ``[experiences, outputs]`` bool, the outputs an experience may
        use (its own head in task-IL; all True otherwise).
      num_outputs: size of the model's output layer.
      scenario: one of ``SCENARIOS``.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_mask: np.ndarray
    logit_mask: np.ndarray
    num_outputs: int
    scenario: str

    @property
    def num_experiences(self) -> int:
        return self.train_x.shape[0]

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[2:])


def _stack_padded(parts: list[np.ndarray], length: int, fill=0) -> np.ndarray:
    out = np.full((len(parts), length, *parts[0].shape[1:]), fill, dtype=parts[0].dtype)
    for i, part in enumerate(parts):
        out[i, : len(part)] = part
    return out


def _check_splits(data: MnistSplits) -> None:
    """Examples of one shape, ``x [examples, *example_shape]``, and integer ``y [examples]`` in each split."""
    example_shape: tuple[Any, ...] = (...,)  # The test split must have the training split's.
    for split in ("train", "test"):
        images = getattr(data, split)
        n, *shape = check_array(f"data.{split}.x", images.x, (None, *example_shape), "[examples, *example_shape]")
        if not shape:
            raise ValueError(f"data.{split}.x must have shape [examples, *example_shape], got shape {images.x.shape}")
        example_shape = tuple(shape)
        check_array(f"data.{split}.y", images.y, (n,), "[examples]", dtype="integer")


def class_split_stream(data: MnistSplits, class_groups: list[list[int]], scenario: str, *, seed: int = 0) -> Stream:
    """Experiences of the given class groups (Split MNIST: ``[[0, 1], [2, 3], ...]``)."""
    _check_splits(data)
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    sizes = {len(group) for group in class_groups}
    if scenario == "domain-il" and len(sizes) != 1:
        raise ValueError("domain-il needs experiences with the same number of classes")
    num_classes = max(max(group) for group in class_groups) + 1
    rng = np.random.default_rng(seed)

    def relabel(y, group):
        if scenario == "domain-il":
            return np.searchsorted(np.array(sorted(group)), y).astype(np.int32)
        return y

    train_parts: list[LabeledImages] = []
    test_parts: list[LabeledImages] = []
    for group in class_groups:
        for split, parts in ((data.train, train_parts), (data.test, test_parts)):
            rows = np.flatnonzero(np.isin(split.y, group))
            parts.append(LabeledImages(split.x[rows], relabel(split.y[rows], group)))
    train_size = min(len(part.x) for part in train_parts)
    train_parts = [
        LabeledImages(part.x[keep], part.y[keep])
        for part in train_parts
        for keep in [np.sort(rng.permutation(len(part.x))[:train_size])]
    ]
    test_size = max(len(part.x) for part in test_parts)
    num_outputs = next(iter(sizes)) if scenario == "domain-il" else num_classes
    logit_mask = np.ones((len(class_groups), num_outputs), bool)
    if scenario == "task-il":
        logit_mask[:] = False
        for i, group in enumerate(class_groups):
            logit_mask[i, group] = True
    return Stream(
        train_x=np.stack([part.x for part in train_parts]),
        train_y=np.stack([part.y for part in train_parts]),
        test_x=_stack_padded([part.x for part in test_parts], test_size),
        test_y=_stack_padded([part.y for part in test_parts], test_size),
        test_mask=_stack_padded([np.ones(len(part.x), bool) for part in test_parts], test_size, False),
        logit_mask=logit_mask,
        num_outputs=num_outputs,
        scenario=scenario,
    )


def class_order(num_classes: int, seed: int | None) -> np.ndarray:
    """The order in which a split benchmark's classes enter the stream: ``[num_classes]`` class labels.

    ``None`` keeps the label order (as mammoth's sequential benchmarks do); an
    int draws a permutation from ``np.random.default_rng(seed)``, the same one
    for the same seed on every machine.
    """
    if seed is None:
        return np.arange(num_classes)
    return np.random.default_rng(seed).permutation(num_classes)


def split_classes(
    data: MnistSplits,
    num_classes: int,
    num_experiences: int,
    scenario: str,
    *,
    class_order_seed: int | None = None,
    seed: int = 0,
) -> Stream:
    """``num_experiences`` experiences of ``num_classes / num_experiences`` classes each, in ``class_order``.

    The classes are renamed by their place in the order: experience ``e``
    holds labels ``e * k ... e * k + k - 1`` (``k`` classes per experience)
    whatever the order, as mammoth relabels a permuted class order; with
    ``class_order_seed=None`` that is the data's own labels. ``x`` is not
    copied before the split, so uint8 images stay uint8 in the stream.

    Raises:
      ValueError: ``num_experiences`` does not divide ``num_classes``, or a label lies outside
        ``[0, num_classes)``.
    """
    if num_experiences < 1 or num_classes % num_experiences:
        raise ValueError(
            f"{num_classes} classes do not split into {num_experiences} experiences of equally many classes; "
            f"the number of experiences must divide {num_classes}"
        )
    rank = np.empty(num_classes, np.int32)
    rank[class_order(num_classes, class_order_seed)] = np.arange(num_classes, dtype=np.int32)
    relabeled = []
    for name, split in zip(("train", "test"), data, strict=True):
        check_array(f"data.{name}.y", split.y, (None,), "[examples]", dtype="integer")
        if len(split.y) and not 0 <= split.y.min() <= split.y.max() < num_classes:
            raise ValueError(
                f"data.{name}.y holds labels {split.y.min()}..{split.y.max()}, expected labels in [0, {num_classes})"
            )
        relabeled.append(LabeledImages(split.x, rank[split.y]))
    per_experience = num_classes // num_experiences
    groups = [list(range(e * per_experience, (e + 1) * per_experience)) for e in range(num_experiences)]
    return class_split_stream(MnistSplits(*relabeled), groups, scenario, seed=seed)


def split_mnist(data: MnistSplits, scenario: str, *, class_order_seed: int | None = None, seed: int = 0) -> Stream:
    """Split MNIST: 5 experiences of 2 digits, {0, 1}, {2, 3}, ..., {8, 9} (or pairs of a seeded class order)."""
    return split_classes(data, 10, 5, scenario, class_order_seed=class_order_seed, seed=seed)


def split_omniglot(
    class_bank: np.ndarray,
    scenario: str,
    *,
    num_experiences: int = 10,
    classes_per_experience: int = 10,
    train_per_class: int = 15,
    seed: int = 0,
) -> Stream:
    """Split Omniglot: experiences of ``classes_per_experience`` characters, drawn at random (seeded).

    ``class_bank`` is ``[classes, examples, *image_shape]`` (e.g. the evaluation
    set of ``load_omniglot``, 28 x 28 x 1); the first ``train_per_class``
    drawings of each character train, the rest test, as images. A second
    benchmark beside MNIST, with few examples per class and many classes.
    """
    check_array("class_bank", class_bank, (None, None, ...), "[classes, examples_per_class, *image_shape]")
    needed = num_experiences * classes_per_experience
    if needed > class_bank.shape[0]:
        raise ValueError(
            f"split-omniglot needs {num_experiences} x {classes_per_experience} = {needed} classes, "
            f"class_bank has {class_bank.shape[0]} (shape {class_bank.shape})"
        )
    if not 0 < train_per_class < class_bank.shape[1]:
        raise ValueError(f"train_per_class must be in [1, {class_bank.shape[1] - 1}], got {train_per_class}")
    chosen = np.random.default_rng(seed).permutation(class_bank.shape[0])[:needed]
    images = class_bank[chosen].astype(np.float32)

    def split(rows):
        x = images[:, rows].reshape(-1, *images.shape[2:])
        y = np.repeat(np.arange(needed, dtype=np.int32), len(range(*rows.indices(class_bank.shape[1]))))
        return LabeledImages(x, y)

    data = MnistSplits(split(slice(0, train_per_class)), split(slice(train_per_class, None)))
    groups = [list(range(e * classes_per_experience, (e + 1) * classes_per_experience)) for e in range(num_experiences)]
    return class_split_stream(data, groups, scenario, seed=seed)


def permuted_stream(
    data: MnistSplits, num_experiences: int = 10, scenario: str = "domain-il", *, seed: int = 0
) -> Stream:
    """Permuted MNIST: every experience all ten digits under its own fixed pixel permutation.

    The first experience is the identity permutation; the others are drawn from
    ``seed``. Only ``domain-il`` (one shared 10-way head, no task id) and
    ``task-il`` (a 10-way head per experience) make sense: every experience
    holds all ten classes, so class-IL is refused. Examples keep their shape
    (the permutation moves the pixels of each image).
    """
    if scenario not in ("domain-il", "task-il"):
        raise ValueError(
            f"permuted-mnist supports the scenarios domain-il and task-il (every experience has all ten "
            f"classes), got {scenario!r}"
        )
    if num_experiences < 1:
        raise ValueError(f"num_experiences must be positive, got {num_experiences}")
    _check_splits(data)
    rng = np.random.default_rng(seed)
    features = int(np.prod(data.train.x.shape[1:]))
    permutations = [np.arange(features)] + [rng.permutation(features) for _ in range(num_experiences - 1)]
    heads = num_experiences if scenario == "task-il" else 1
    offsets = [10 * e if scenario == "task-il" else 0 for e in range(num_experiences)]
    logit_mask = np.zeros((num_experiences, 10 * heads), bool)
    for e, offset in enumerate(offsets):
        logit_mask[e, offset : offset + 10] = True
    return Stream(
        train_x=_permuted_copies(data.train.x, permutations),
        train_y=np.stack([data.train.y + o for o in offsets]).astype(np.int32),
        test_x=_permuted_copies(data.test.x, permutations),
        test_y=np.stack([data.test.y + o for o in offsets]).astype(np.int32),
        test_mask=np.ones((num_experiences, len(data.test.y)), bool),
        logit_mask=logit_mask,
        num_outputs=10 * heads,
        scenario=scenario,
    )


def _permuted_copies(x: np.ndarray, permutations: list[np.ndarray]) -> np.ndarray:
    """``np.stack([x[:, p] for p in permutations])``, written in place.

    Stacking a list of copies touches twice the memory (1.9 GB for ten
    Permuted MNIST experiences), and fresh pages are slow to fault in on some
    machines: on the 2-core VM we develop on, 7.7 s to stack in a fresh
    process against 0.6 s in place.
    """
    flat = x.reshape(len(x), -1)
    out = np.empty((len(permutations), *flat.shape), x.dtype)
    for copy, permutation in zip(out, permutations, strict=True):
        np.take(flat, permutation, axis=1, out=copy)
    return out.reshape(len(permutations), *x.shape)


def gaussian_classes(
    *, num_classes: int = 10, features: int = 64, train_per_class: int = 500, test_per_class: int = 100, seed: int = 0
) -> MnistSplits:
    """A generated stand-in for MNIST that needs no files: Gaussian clusters around random class means.

    The means are far enough apart to be learnable and close enough that a
    model trained on some classes confuses the others (so forgetting shows).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, features)) * 0.6

    def draw(per_class):
        y = np.repeat(np.arange(num_classes), per_class)
        x = means[y] + rng.normal(size=(len(y), features))
        order = rng.permutation(len(y))
        return LabeledImages(x[order].astype(np.float32), y[order].astype(np.int32))

    return MnistSplits(draw(train_per_class), draw(test_per_class))
