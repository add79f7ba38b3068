"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) as uint8 images, from TFDS or from local files.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009),
https://www.cs.toronto.edu/~kriz/learning-features-2009-TR.pdf.

Without ``data_dir`` both come from TensorFlow Datasets (``cifar10``,
``cifar100``; downloaded the first time). With it:

* CIFAR-10 is read from ``DATA_DIR/cifar10.npz``: ``x_train`` uint8
  ``[50000, 32, 32, 3]``, ``y_train``, ``x_test``, ``y_test`` and optionally
  ``class_names``, the layout of the offline copy beside the project
  (``../shared/data/cifar10``, decoded from a JPEG copy of CIFAR-10: its
  pixels differ from the original by JPEG error, so say so beside any
  accuracy measured on it);
* CIFAR-100 is read from the ``cifar-100-python`` folder of the original
  archive (``cifar-100-python.tar.gz``, extracted): its pickled ``train``,
  ``test`` and ``meta`` files. ``DATA_DIR`` may be that folder or the one
  that holds it. The offline data beside the project has no CIFAR-100 images,
  only class-name lists.

Labels of CIFAR-100 are its 100 fine classes or its 20 coarse superclasses.
Pixels stay uint8 here; ``metajax.data.image_datasets.standardized`` turns
them into the model's inputs with the ``*_MEAN`` and ``*_STD`` below.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from metajax.data.checksums import verify_checksum
from metajax.data.errors import DataError
from metajax.data.image_datasets import ImageSplits
from metajax.data.mnist import LabeledImages
from metajax.data.tfds_source import tfds_records

CIFAR10_FILE = "cifar10.npz"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The training sets' per-channel statistics of pixels in [0, 1], as published (and used by mammoth).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR100_LABELS = ("fine", "coarse")
# TFDS's feature of each kind of CIFAR-100 label.
_TFDS_LABEL = {"fine": "label", "coarse": "coarse_label"}
# Only what the original pickles (numpy arrays, lists, bytes) need: a pickle can run any code it names.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def _checked_images(x: np.ndarray, y: np.ndarray, where: str, expected: str) -> LabeledImages:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or y.shape != x.shape[:1]:
        raise DataError(
            f"{where}: images {x.dtype} {x.shape} and labels {y.shape}, expected uint8 [n, 32, 32, 3] and [n] "
            f"({expected})"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels hold {y.dtype} values, expected integers")
    return LabeledImages(x, y.astype(np.int32))


def _tfds_split(name: str, split: str, label: str, tfds_data_dir: str | None, offline_hint: str) -> LabeledImages:
    records = tfds_records(name, split, tfds_data_dir, offline_hint=offline_hint)
    images = np.stack([record["image"] for record in records])
    labels = np.array([record[label] for record in records])
    return _checked_images(images, labels, f"TFDS {name} {split}", "TFDS's features")


def load_cifar10(data_dir: str | os.PathLike | None = None, *, tfds_data_dir: str | None = None) -> ImageSplits:
    """CIFAR-10's 50,000 training and 10,000 test images, uint8 ``[n, 32, 32, 3]``, labels 0-9.

    Args:
      data_dir: folder with ``cifar10.npz``; ``None`` uses TensorFlow Datasets.
      tfds_data_dir: where TFDS keeps its files (TFDS's default when ``None``).

    Raises:
      DataError: naming the folder or file and how to fix it.
    """
    if data_dir is None:
        hint = f"Without a network, pass --data-dir with a folder holding {CIFAR10_FILE}."
        train, test = (_tfds_split("cifar10", split, "label", tfds_data_dir, hint) for split in ("train", "test"))
        return ImageSplits(train, test, CIFAR10_CLASSES)
    path = Path(data_dir).expanduser() / CIFAR10_FILE
    layout = "x_train uint8 [50000, 32, 32, 3], y_train, x_test, y_test"
    if not path.is_file():
        raise DataError(
            f"CIFAR-10 not found: looked for {path}. Pass --data-dir with a folder holding {CIFAR10_FILE} ({layout}), "
            "or leave --data-dir out on a machine with a network to download CIFAR-10 with TensorFlow Datasets."
        )
    verify_checksum(path)
    try:
        with np.load(path) as npz:
            arrays = {name: npz[name] for name in ("x_train", "y_train", "x_test", "y_test")}
            names = tuple(str(name) for name in npz["class_names"]) if "class_names" in npz else CIFAR10_CLASSES
    except (KeyError, ValueError, OSError, EOFError) as error:
        raise DataError(
            f"CIFAR-10 file {path} is unreadable or lacks {layout} ({error}); replace it with an intact copy "
            "(see the SHA256SUMS beside the shared data)."
        ) from None
    train, test = (
        _checked_images(arrays[f"x_{split}"], arrays[f"y_{split}"], f"CIFAR-10 file {path}, {split}", layout)
        for split in ("train", "test")
    )
    return ImageSplits(train, test, names)


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR-100 file")
        if module == "numpy.core.multiarray":  # Python 2's name of it, deprecated in numpy 2.
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickled(path: Path) -> dict[str, Any]:
    """A CIFAR-100 python file's dict, with str keys (Python 2 wrote them as bytes)."""
    try:
        with path.open("rb") as file:
            # latin1: Python 2's str holding numpy's raw bytes loads byte for byte (numpy's advice).
            content = _ArraysOnly(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise DataError(
            f"CIFAR-100 file {path} is not a readable pickle of the cifar-100-python archive ({error}); replace "
            "it with the file of a freshly extracted cifar-100-python.tar.gz."
        ) from None
    if not isinstance(content, dict):
        raise DataError(f"CIFAR-100 file {path} holds a {type(content).__name__}, expected a dict")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


def _names(values) -> tuple[str, ...]:
    return tuple(value.decode() if isinstance(value, bytes) else str(value) for value in values)


def read_cifar100_python(folder: str | os.PathLike, *, labels: str = "fine") -> ImageSplits:
    """CIFAR-100 from the ``cifar-100-python`` folder of the original archive (or the folder holding it).

    Its ``train`` and ``test`` files hold ``data`` ``[n, 3072]`` uint8 rows
    (the red, green and blue 32 x 32 planes in turn), ``fine_labels`` and
    ``coarse_labels``; ``meta`` holds ``fine_label_names`` and
    ``coarse_label_names``. Only numpy arrays, lists and strings are
    unpickled: a file naming anything else is refused.

    Args:
      folder: the ``cifar-100-python`` folder, or a folder holding it.
      labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Raises:
      DataError: a missing or unreadable file, or arrays of the wrong shape (one line, naming the file).
    """
    if labels not in CIFAR100_LABELS:
        raise ValueError(f"labels must be one of {', '.join(CIFAR100_LABELS)}, got {labels!r}")
    folder = Path(folder).expanduser()
    if (folder / CIFAR100_FOLDER).is_dir():
        folder = folder / CIFAR100_FOLDER
    missing = [name for name in ("train", "test", "meta") if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-100 not found: looked for {', '.join(str(folder / name) for name in missing)}. Pass --data-dir "
            f"with the {CIFAR100_FOLDER} folder of the extracted cifar-100-python.tar.gz (or the folder holding it), "
            "or leave --data-dir out on a machine with a network to download CIFAR-100 with TensorFlow Datasets "
            "(the offline data beside the project holds CIFAR-100's class lists, not its images)."
        )
    meta = _unpickled(folder / "meta")
    if f"{labels}_label_names" not in meta:
        raise DataError(f"CIFAR-100 file {folder / 'meta'} has no {labels}_label_names (keys: {', '.join(meta)})")
    splits: dict[str, LabeledImages] = {}
    for split in ("train", "test"):
        path = folder / split
        content = _unpickled(path)
        if "data" not in content or f"{labels}_labels" not in content:
            raise DataError(f"CIFAR-100 file {path} lacks data or {labels}_labels (keys: {', '.join(content)})")
        rows = np.asarray(content["data"])
        if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
            raise DataError(f"CIFAR-100 file {path}: data is {rows.dtype} {rows.shape}, expected uint8 [n, 3072]")
        images = np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        where = f"CIFAR-100 file {path}"
        splits[split] = _checked_images(images, np.asarray(content[f"{labels}_labels"]), where, "data and labels")
    return ImageSplits(splits["train"], splits["test"], _names(meta[f"{labels}_label_names"]))


def load_cifar100(
    data_dir: str | os.PathLike | None = None, *, labels: str = "fine", tfds_data_dir: str | None = None
) -> ImageSplits:
    """CIFAR-100's 50,000 training and 10,000 test images, uint8 ``[n, 32, 32, 3]``.

    Args:
      data_dir: the ``cifar-100-python`` folder (or the folder holding it); ``None`` uses TensorFlow Datasets.
      labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
      tfds_data_dir: where TFDS keeps its files (TFDS's default when ``None``).

    Raises:
      DataError: naming the folder or file and how to fix it.
    """
    if data_dir is not None:
        return read_cifar100_python(data_dir, labels=labels)
    if labels not in CIFAR100_LABELS:
        raise ValueError(f"labels must be one of {', '.join(CIFAR100_LABELS)}, got {labels!r}")
    hint = (
        f"Without a network, pass --data-dir with the {CIFAR100_FOLDER} folder of the extracted "
        "cifar-100-python.tar.gz (the offline data beside the project has no CIFAR-100 images)."
    )
    feature = _TFDS_LABEL[labels]
    train, test = (_tfds_split("cifar100", split, feature, tfds_data_dir, hint) for split in ("train", "test"))
    import tensorflow_datasets as tfds  # Lazy, as in tfds_records; prepared data holds the names.

    names = tfds.builder("cifar100", data_dir=tfds_data_dir).info.features[feature].names
    return ImageSplits(train, test, tuple(names))
