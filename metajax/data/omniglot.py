"""Omniglot (Lake et al. 2015) as class banks for few-shot tasks.

Two sources give the same arrays:
  * TensorFlow Datasets, ``tfds.data_source("omniglot")`` (random access, no
    TensorFlow needed at run time; downloads once, so it needs a network);
  * a local folder with ``images_background.npz`` and ``images_evaluation.npz``
    (``images`` bool [characters, 20, 105, 105] with True for paper, ``labels``
    int [characters, 20]), for machines without a network.

Following Reptile (Nichol et al. 2018) and MAML, images are resized to 28x28
with ink = 1.0 and paper = 0.0, and the meta-training classes are augmented
with rotations by 90, 180 and 270 degrees (each rotation a new class). Two
class splits: ``"background"`` (Lake et al.'s: the 30 background alphabets'
964 characters meta-train, the 20 evaluation alphabets' 659 meta-test, so test
alphabets are unseen) and ``"random"`` (the Reptile and MAML papers': the 1623
characters pooled and split at random into 1200 and 423, so most test
characters share an alphabet with training characters, an easier test).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.data.checksums import verify_checksum
from metajax.data.errors import DataError
from metajax.data.tfds_source import tfds_records

IMAGE_SIZE = 28
EXAMPLES_PER_CLASS = 20
RAW_SIZE = 105
LOCAL_FILES = {"train": "images_background.npz", "test": "images_evaluation.npz"}
TFDS_SPLITS = {"train": "train", "test": "test"}  # TFDS "train" is the background set.
CLASS_SPLITS = ("background", "random")
RANDOM_SPLIT_TRAIN_CLASSES = 1200  # The Reptile paper's 1200 / 423.


class OmniglotBanks(NamedTuple):
    """Class banks ``[classes, 20, 28, 28, 1]`` float32, ink = 1."""

    train: np.ndarray
    test: np.ndarray


def to_class_bank(ink: np.ndarray, labels: np.ndarray, source: str) -> np.ndarray:
    """Groups raw ``[n, 105, 105]`` bool ink images by label into a 28x28 class bank.

    Both sources go through this one function, which is what makes them agree.
    """
    if np.ndim(ink) != 3 or np.shape(ink)[1:] != (RAW_SIZE, RAW_SIZE) or np.shape(labels) != np.shape(ink)[:1]:
        raise DataError(
            f"{source}: expected images [n, {RAW_SIZE}, {RAW_SIZE}] and labels [n], got shapes "
            f"{np.shape(ink)} and {np.shape(labels)}; the data is not Omniglot as metajax reads it"
        )
    order = np.argsort(labels, kind="stable")
    classes, counts = np.unique(labels, return_counts=True)
    if not np.all(counts == EXAMPLES_PER_CLASS):
        bad = classes[counts != EXAMPLES_PER_CLASS][0]
        raise DataError(
            f"{source}: class {bad} has {counts[classes == bad][0]} examples, Omniglot has "
            f"{EXAMPLES_PER_CLASS} per class; the data is incomplete or not Omniglot"
        )
    grouped = ink[order].reshape(len(classes), EXAMPLES_PER_CLASS, RAW_SIZE, RAW_SIZE)
    # Sources list a class's drawings in different orders; sorting them by content
    # makes the bank a function of the images alone, whichever source read them.
    packed = np.packbits(grouped.reshape(len(classes), EXAMPLES_PER_CLASS, -1), axis=-1)
    canonical = np.array([sorted(range(EXAMPLES_PER_CLASS), key=[e.tobytes() for e in drawings].__getitem__)
                          for drawings in packed])  # fmt: skip
    grouped = grouped[np.arange(len(classes))[:, None], canonical]  # Whole images moved: 20x take_along_axis's speed.
    # The bool images go in as they are and become float32 inside the program: converted
    # before, they were a 1.4 GB array to write and copy. Loading both sets took 4.1 s
    # instead of 6.0 on the build machine's CPU, and the banks are the same to the bit.
    resized = jax.jit(
        lambda x: jax.image.resize(
            x.astype(jnp.float32), (*x.shape[:2], IMAGE_SIZE, IMAGE_SIZE), method="linear", antialias=True
        )
    )(jnp.asarray(grouped))
    # The antialiasing filter overshoots by rounding (1.0000002): keep pixels in [0, 1].
    return np.clip(np.asarray(resized), 0.0, 1.0)[..., None]


def with_rotations(bank: np.ndarray) -> np.ndarray:
    """Appends the 90/180/270 degree rotations of every class as new classes."""
    shape = np.shape(bank)
    if len(shape) != 5 or shape[2] != shape[3]:
        raise ValueError(f"bank must have shape [classes, examples, size, size, channels], got shape {shape}")
    return np.concatenate([np.rot90(bank, k, axes=(2, 3)) for k in range(4)], axis=0)


def _load_local_split(data_dir: Path, split: str) -> np.ndarray:
    path = data_dir / LOCAL_FILES[split]
    verify_checksum(path)
    try:
        with np.load(path) as npz:
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError:
        raise DataError(
            f"Omniglot file not found: {path}. The folder given as data dir must hold "
            f"{' and '.join(LOCAL_FILES.values())} (images bool [characters, 20, 105, 105], "
            "labels int [characters, 20]); point --data-dir at such a folder, or leave it out "
            "to download Omniglot with TensorFlow Datasets."
        ) from None
    except (KeyError, ValueError, OSError) as error:
        raise DataError(
            f"Omniglot file {path} is unreadable or lacks the arrays 'images' and 'labels' ({error}); "
            "replace it with an intact copy (see the SHA256SUMS beside the shared data)."
        ) from None
    if images.ndim != 4 or images.shape[1:] != (EXAMPLES_PER_CLASS, RAW_SIZE, RAW_SIZE):
        raise DataError(
            f"Omniglot file {path}: 'images' has shape {images.shape}, expected "
            f"[characters, {EXAMPLES_PER_CLASS}, {RAW_SIZE}, {RAW_SIZE}]"
        )
    if labels.shape != images.shape[:2]:
        raise DataError(f"Omniglot file {path}: 'labels' has shape {labels.shape}, expected {images.shape[:2]}")
    ink = ~images.astype(bool)  # True is paper in the files.
    return to_class_bank(ink.reshape(-1, RAW_SIZE, RAW_SIZE), labels.reshape(-1), str(path))


def _load_tfds_split(split: str, tfds_data_dir: str | None) -> np.ndarray:
    records = tfds_records(
        "omniglot",
        TFDS_SPLITS[split],
        tfds_data_dir,
        offline_hint=f"Without a network, pass --data-dir with a folder holding {' and '.join(LOCAL_FILES.values())}.",
    )
    # TFDS stores the PNGs as RGB with white (255) paper.
    ink = np.stack([record["image"][..., 0] < 128 for record in records])
    labels = np.array([record["label"] for record in records])
    return to_class_bank(ink, labels, f"TFDS omniglot/{TFDS_SPLITS[split]}")


def load_omniglot(
    data_dir: str | os.PathLike | None = None,
    *,
    tfds_data_dir: str | None = None,
    split: str = "background",
    split_seed: int = 0,
    random_split_train_classes: int = RANDOM_SPLIT_TRAIN_CLASSES,
) -> OmniglotBanks:
    """Loads Omniglot class banks: rotated meta-training classes and meta-test classes.

    Args:
      data_dir: folder with the two npz files; ``None`` uses TensorFlow Datasets.
      tfds_data_dir: where TFDS keeps its files (TFDS's default when ``None``).
      split: ``"background"`` (background / evaluation alphabets) or ``"random"``
        (1200 / 423 characters drawn at random from all 1623).
      split_seed: the seed of the ``"random"`` split's draw.
      random_split_train_classes: characters the ``"random"`` split meta-trains on.

    Returns:
      ``OmniglotBanks(train=[964 * 4, 20, 28, 28, 1], test=[659, 20, 28, 28, 1])``
      for the background split, ``train=[1200 * 4, ...], test=[423, ...]`` for the random one.

    Raises:
      DataError: naming the folder or file and how to fix it.
      ValueError: for an unknown split.
    """
    if split not in CLASS_SPLITS:
        raise ValueError(f"split must be one of {', '.join(CLASS_SPLITS)}, got {split!r}")
    if data_dir is None:
        train, test = (_load_tfds_split(part, tfds_data_dir) for part in ("train", "test"))
    else:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"Omniglot data folder {folder.resolve()} does not exist. Pass --data-dir with a folder "
                f"holding {' and '.join(LOCAL_FILES.values())}, or leave it out to use TensorFlow Datasets."
            )
        train, test = (_load_local_split(folder, part) for part in ("train", "test"))
    if split == "random":
        pooled = np.concatenate([train, test])
        if not 0 < random_split_train_classes < len(pooled):
            raise DataError(
                f"the random split needs more than {random_split_train_classes} characters, the data has {len(pooled)}"
            )
        order = np.random.default_rng(split_seed).permutation(len(pooled))
        train, test = pooled[order[:random_split_train_classes]], pooled[order[random_split_train_classes:]]
    return OmniglotBanks(train=with_rotations(train), test=test)
