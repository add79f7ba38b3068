"""MNIST (LeCun, Cortes & Burges) as flat float arrays, from TFDS or a local npz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from metajax.data.checksums import verify_checksum
from metajax.data.errors import DataError
from metajax.data.tfds_source import tfds_records

LOCAL_FILE = "mnist.npz"
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class LabeledImages(NamedTuple):
    """``x [n, 784]`` float32 in [0, 1], ``y [n]`` int32 labels 0-9, in the source's order."""

    x: np.ndarray
    y: np.ndarray


class MnistSplits(NamedTuple):
    train: LabeledImages
    test: LabeledImages


def _flat(images: np.ndarray, labels: np.ndarray) -> LabeledImages:
    # One pass into one new float32 array: the same values as ``astype(float32) / 255``, which
    # wrote a second 188 MB array for the training set (0.32 s instead of 0.85 here).
    pixels = np.divide(images.reshape(len(images), -1), np.float32(255.0), dtype=np.float32)
    return LabeledImages(pixels, labels.astype(np.int32))


def _load_local(folder: Path) -> MnistSplits:
    path = folder / LOCAL_FILE
    if not path.is_file():
        raise DataError(
            f"MNIST not found: looked for {path}. Pass --data-dir with a folder holding {LOCAL_FILE} "
            "(x_train uint8 [60000, 28, 28], y_train, x_test, y_test), or leave --data-dir out on a machine "
            "with a network to download MNIST with TensorFlow Datasets."
        )
    verify_checksum(path)
    try:
        with np.load(path) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
    except (KeyError, ValueError, OSError, EOFError) as error:
        raise DataError(
            f"MNIST file {path} is unreadable or lacks x_train, y_train, x_test, y_test ({error}); "
            "replace it with an intact copy (see the SHA256SUMS beside the shared data)."
        ) from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != x.shape[:1]:
            raise DataError(
                f"MNIST file {path}: x_{split} has shape {x.shape} and y_{split} {y.shape}, expected "
                f"[n, 28, 28] and [n] (60000 train, 10000 test rows in MNIST)"
            )
    return MnistSplits(_flat(arrays["x_train"], arrays["y_train"]), _flat(arrays["x_test"], arrays["y_test"]))


def _load_tfds(tfds_data_dir: str | None) -> MnistSplits:
    splits = []
    for split in ("train", "test"):
        records = tfds_records(
            "mnist",
            split,
            tfds_data_dir,
            offline_hint=f"Without a network, pass --data-dir with a folder holding {LOCAL_FILE}.",
        )
        images = np.stack([record["image"][..., 0] for record in records])
        labels = np.array([record["label"] for record in records])
        splits.append(_flat(images, labels))
    return MnistSplits(*splits)


def load_mnist(data_dir: str | os.PathLike | None = None, *, tfds_data_dir: str | None = None) -> MnistSplits:
    """MNIST train (60,000) and test (10,000) images, flattened to 784 floats in [0, 1].

    Args:
      data_dir: folder with ``mnist.npz``; ``None`` uses TensorFlow Datasets.
      tfds_data_dir: where TFDS keeps its files (TFDS's default when ``None``).

    Raises:
      DataError: naming the folder or file and how to fix it.
    """
    if data_dir is None:
        return _load_tfds(tfds_data_dir)
    return _load_local(Path(data_dir).expanduser())
