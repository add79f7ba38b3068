"""Colour image datasets (CIFAR-10, CIFAR-100, TinyImageNet): their splits and their pixels as model inputs.

The readers (``metajax.data.cifar``, ``metajax.data.tiny_imagenet``) return
``uint8`` images ``[examples, height, width, 3]``, a quarter of the memory of
float32 (CIFAR-10's training set: 154 MB against 614 MB; TinyImageNet's:
1.2 GB against 4.9 GB). A stream is split from those and only its
experiences are turned into float32, by ``standardized``: pixels in [0, 1]
(``x / 255``), then each channel shifted and scaled by the training set's
published mean and standard deviation, as mammoth and Avalanche prepare these
datasets, so the same values reach the model in training, in the replay
buffer and at test time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from metajax.data.continual_streams import Stream
from metajax.data.mnist import LabeledImages, MnistSplits


class ImageSplits(NamedTuple):
    """A colour image dataset's training and test splits.

    Attributes:
      train: ``x [n, height, width, 3]`` uint8 pixels, ``y [n]`` int32 labels, in the source's order.
      test: the same for the test split.
      class_names: the name of each label, ``class_names[y]``.
    """

    train: LabeledImages
    test: LabeledImages
    class_names: tuple[str, ...]

    @property
    def splits(self) -> MnistSplits:
        """The training and test splits alone, as ``metajax.data.continual_streams``' builders take them."""
        return MnistSplits(self.train, self.test)


def standardized(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(images / 255 - mean) / std`` per channel, as float32, from uint8 ``[..., channels]`` images.

    Written as one multiply into a new float32 array and one subtraction in
    place: no float64 or second float32 copy of the images.
    """
    if images.dtype != np.uint8 or images.ndim < 1 or images.shape[-1] != len(mean):
        raise ValueError(
            f"images must be uint8 [..., channels] with {len(mean)} channels, got {images.dtype} {images.shape}"
        )
    scale = 1.0 / (255.0 * np.asarray(std, np.float64))
    out = np.multiply(images, scale.astype(np.float32), dtype=np.float32)
    out -= (np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    return out


def standardized_stream(stream: Stream, mean: Sequence[float], std: Sequence[float]) -> Stream:
    """``stream`` with its uint8 ``train_x`` and ``test_x`` ``standardized`` (test padding rows included)."""
    return stream._replace(
        train_x=standardized(stream.train_x, mean, std), test_x=standardized(stream.test_x, mean, std)
    )
