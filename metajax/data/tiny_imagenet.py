"""TinyImageNet (Le & Yang 2015): 200 ImageNet classes at 64 x 64, from its own folder layout.

Le & Yang, "Tiny ImageNet Visual Recognition Challenge" (CS231N, 2015),
http://cs231n.stanford.edu/tiny-imagenet-200.zip. It is not in TensorFlow
Datasets, nor in the offline data beside the project: ``data_dir`` is the
extracted ``tiny-imagenet-200`` folder (or the folder holding it):

* ``wnids.txt``: the 200 WordNet ids, one per line;
* ``train/<wnid>/images/*.JPEG``: 500 training images per class;
* ``val/images/*.JPEG`` with ``val/val_annotations.txt`` (tab-separated: file
  name, wnid, then a bounding box): 50 images per class, the test split here
  (the ``test`` folder has no labels and is not read).

Labels are the wnids' places in sorted order (as torchvision's
``ImageFolder`` numbers the ``train`` subfolders). Gray JPEGs (a few
hundred) are repeated into three channels. Decoding the 110,000 files takes
about a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metajax.data.errors import DataError
from metajax.data.image_datasets import ImageSplits
from metajax.data.mnist import LabeledImages

TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64
# The training set's per-channel statistics of pixels in [0, 1], as mammoth uses them.
TINY_IMAGENET_MEAN = (0.4802, 0.4480, 0.3975)
TINY_IMAGENET_STD = (0.2770, 0.2691, 0.2821)
_HOW = (
    f"pass --data-dir with the extracted {TINY_IMAGENET_FOLDER} folder (or the folder holding it), from "
    f"http://cs231n.stanford.edu/{TINY_IMAGENET_FOLDER}.zip; TinyImageNet is neither in TensorFlow Datasets nor "
    "in the offline data beside the project"
)


def _decoded(files: list[Path]) -> np.ndarray:
    from PIL import Image  # Lazy: only image folders need Pillow.

    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for index, file in enumerate(files):
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as error:
            raise DataError(f"TinyImageNet image {file} is not a readable image ({error}); {_HOW}") from None
        if pixels.shape != images.shape[1:]:
            raise DataError(
                f"TinyImageNet image {file} is {pixels.shape[1]} x {pixels.shape[0]}, expected {IMAGE_SIZE} x "
                f"{IMAGE_SIZE}; {_HOW}"
            )
        images[index] = pixels
    return images


def _jpegs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg") and not p.name.startswith("."))


def load_tiny_imagenet(data_dir: str | os.PathLike | None) -> ImageSplits:
    """TinyImageNet's 100,000 training and 10,000 validation images, uint8 ``[n, 64, 64, 3]``, labels 0-199.

    Args:
      data_dir: the ``tiny-imagenet-200`` folder, or the folder holding it.

    Raises:
      DataError: no ``data_dir``, a missing file or folder, a class without training images, an unknown
        wnid in the annotations, or an image that is unreadable or not 64 x 64 (one line, naming the path).
    """
    if data_dir is None:
        raise DataError(f"TinyImageNet needs its files: {_HOW}.")
    folder = Path(data_dir).expanduser()
    if (folder / TINY_IMAGENET_FOLDER).is_dir():
        folder = folder / TINY_IMAGENET_FOLDER
    wnids_file, annotations = folder / "wnids.txt", folder / "val" / "val_annotations.txt"
    missing = [str(path) for path in (wnids_file, folder / "train", annotations) if not path.exists()]
    if missing:
        raise DataError(f"TinyImageNet not found: looked for {', '.join(missing)}; {_HOW}.")
    wnids = sorted({line.strip() for line in wnids_file.read_text().splitlines() if line.strip()})
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    train_files, train_labels = [], []
    for wnid in wnids:
        class_folder = folder / "train" / wnid / "images"
        files = _jpegs(class_folder) if class_folder.is_dir() else []
        if not files:
            raise DataError(f"TinyImageNet class {wnid} has no JPEG images in {class_folder}; {_HOW}.")
        train_files += files
        train_labels += [label_of[wnid]] * len(files)
    test_files, test_labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, _, rest = line.partition("\t")
        wnid = rest.partition("\t")[0].strip()
        if wnid not in label_of:
            raise DataError(f"{annotations}, line {number}: wnid {wnid!r} is not in {wnids_file} ({line!r})")
        test_files.append(folder / "val" / "images" / name.strip())
        test_labels.append(label_of[wnid])
    missing_images = [str(file) for file in test_files if not file.is_file()]
    if missing_images:
        raise DataError(
            f"TinyImageNet: {len(missing_images)} validation images named in {annotations} are missing, e.g. "
            f"{missing_images[0]}; {_HOW}."
        )
    train = LabeledImages(_decoded(train_files), np.asarray(train_labels, np.int32))
    test = LabeledImages(_decoded(test_files), np.asarray(test_labels, np.int32))
    return ImageSplits(train, test, tuple(wnids))
