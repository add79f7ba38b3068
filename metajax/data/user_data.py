"""Your own data: a folder of images in class subfolders, or an ``.npz`` of arrays.

Two layouts hold classified examples, for few-shot tasks and continual streams:

* a folder with one subfolder per class holding that class's images
  (``PATH/CLASS/IMAGE.png``, the layout of torchvision's ``ImageFolder``): the
  classes are the subfolders, sorted by name; files whose suffix is not an
  image's, hidden files and deeper folders are left out;
* an ``.npz`` with ``x`` (``[examples, height, width]`` or
  ``[examples, height, width, channels]`` images, or ``[examples, features]``
  vectors) and ``y`` (``[examples]`` integer or string labels): the classes
  are ``y``'s distinct values, sorted.

Images become float32 pixels in [0, 1]: 8-bit images (and integer ``x``)
are divided by 255, a float ``x`` is taken as it is. Channels are 1 when every
image is grayscale, else 3 (alpha is dropped), unless ``channels`` is given;
colour becomes gray by ITU-R 601 luma, as Pillow converts it. Every image is
resized to ``image_size`` x ``image_size`` when that is given (bilinear,
antialiased); without it all images must share one size.

One layout holds a multi-task table: an ``.npz`` with ``x``
``[examples, features]``, ``y`` ``[examples, tasks]`` (or ``[examples]`` for
one task), one target column per task, and optionally ``tasks`` (``[tasks]``
names) and ``features`` (``[features]`` names). A column of only 0 and 1 is a
binary task (scored by AUC), any other a regression (MSE); the tasks of one
table must be of one kind.

Every error is one line that names the file or folder at fault.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from metajax.data.continual_streams import Stream, class_split_stream
from metajax.data.errors import DataError
from metajax.data.mnist import LabeledImages, MnistSplits
from metajax.data.multitask import MultiTaskBatch, MultiTaskDataset
from metajax.options import option

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
# Pillow's "L" conversion (ITU-R 601-2 luma), so that folders and npz files turn colour to gray alike.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Few-shot classes drawn into meta-training and meta-test with this seed: the same split every run.
CLASS_SPLIT_SEED = 0
# A multi-task table's train / validation / test shares, as census-income's single-file split.
TABLE_SPLIT = (0.8, 0.1, 0.1)


@dataclasses.dataclass(frozen=True)
class UserClassesOptions:
    """Where a user's classified examples are, and the images' size and channels."""

    path: str | None = option(
        None, "the folder of class subfolders of images, or the .npz of x and y (--dataset KIND:PATH)"
    )
    image_size: int | None = option(
        None, "resize every image to N x N (needed when their sizes differ; default: their own size)", minimum=1
    )
    channels: int | None = option(
        None, "1 (gray) or 3 (RGB) (default: 1 if every image is gray, else 3)", choices=(1, 3)
    )


class UserClasses(NamedTuple):
    """Classified examples read from a user's folder or npz.

    Attributes:
      x: ``[examples, *example_shape]`` float32 (images ``[height, width, channels]`` in [0, 1]).
      y: ``[examples]`` int32, the index of each example's class in ``class_names``.
      class_names: the classes, sorted.
      source: the folder or file they came from, for errors.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    source: str


def read_classes(kind: str, options: UserClassesOptions) -> UserClasses:
    """The examples of ``options.path``, a ``"folder"`` of class subfolders or an ``"npz"`` of ``x`` and ``y``."""
    reader = {"folder": read_image_folder, "npz": read_npz_classes}[kind]
    return reader(given_path(kind, options.path), image_size=options.image_size, channels=options.channels)


def given_path(kind: str, path: str | None) -> str:
    """``path``, or the error of an entry built without one (resolving a config refuses it first)."""
    if not path:
        raise ValueError(f"{kind} needs its path: --dataset {kind}:PATH")
    return path


def read_image_folder(path: str | Path, *, image_size: int | None = None, channels: int | None = None) -> UserClasses:
    """A folder with one subfolder of images per class, as float32 images ``[examples, H, W, C]``.

    Raises:
      DataError: no such folder, no class subfolders, a class without images, a file that is not a
        readable image, or images of several sizes without ``image_size`` (one line, naming the path).
    """
    folder = Path(path).expanduser()
    layout = "one subfolder of images per class (PATH/CLASS/IMAGE.png)"
    if not folder.exists():
        raise DataError(f"{folder}: no such folder; --dataset folder:PATH wants a folder with {layout}")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder; --dataset folder:PATH wants a folder with {layout}")
    class_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_folders:
        raise DataError(f"{folder}: no class subfolders; it must hold {layout}")
    files, labels = [], []
    for label, class_folder in enumerate(class_folders):
        images = sorted(
            p
            for p in class_folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not images:
            raise DataError(f"{class_folder}: no images in this class folder (suffixes {', '.join(IMAGE_SUFFIXES)})")
        files += images
        labels += [label] * len(images)
    headers = [_image_header(file) for file in files]
    if image_size is None:
        sizes: dict[tuple[int, int], Path] = {}
        for file, (size, _) in zip(files, headers, strict=True):
            sizes.setdefault(size, file)
        if len(sizes) > 1:
            (first, first_file), (second, second_file) = list(sizes.items())[:2]
            raise DataError(
                f"{folder}: images of different sizes ({_words(first)} {first_file.relative_to(folder)}, "
                f"{_words(second)} {second_file.relative_to(folder)}); give --image-size N to resize them all to N x N"
            )
    if channels is None:
        channels = 1 if all(mode in GRAY_MODES for _, mode in headers) else 3
    x = np.stack([_resized(_with_channels(_decoded(file), channels), image_size) for file in files])
    return UserClasses(x, np.asarray(labels, np.int32), tuple(p.name for p in class_folders), str(folder))


def read_npz_classes(path: str | Path, *, image_size: int | None = None, channels: int | None = None) -> UserClasses:
    """An npz of ``x`` (images or feature vectors) and ``y`` (``[examples]`` labels).

    Raises:
      DataError: no such file, not an npz, ``x`` or ``y`` missing or of the wrong shape (one line, naming
        the file); ``image_size`` or ``channels`` given for feature vectors.
    """
    file = Path(path).expanduser()
    layout = "x [examples, height, width(, channels)] or [examples, features], and y [examples] labels"
    arrays = _npz_arrays(file, ("x", "y"), layout)
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{file}: y has shape {y.shape}, expected [examples] = ({len(x)},) labels to go with x")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "USb"):
        raise DataError(f"{file}: y holds {y.dtype} values; class labels must be integers or strings")
    if x.dtype.kind not in "biuf" or len(x) == 0:
        raise DataError(f"{file}: x holds {len(x)} examples of {x.dtype}; it must hold numbers (pixels or features)")
    if x.ndim == 2:
        if image_size is not None or channels is not None:
            raise DataError(
                f"{file}: x holds feature vectors {x.shape}, not images; --image-size and --channels apply to images"
            )
        examples = x.astype(np.float32)
    elif x.ndim in (3, 4):
        images = x[..., None] if x.ndim == 3 else x
        if images.shape[-1] not in (1, 3, 4):
            raise DataError(f"{file}: x has shape {x.shape}: images must have 1, 3 or 4 (RGBA) channels")
        pixels = images.astype(np.float32) / (255.0 if np.issubdtype(images.dtype, np.integer) else 1.0)
        if channels is None:
            channels = 1 if images.shape[-1] == 1 else 3
        examples = np.stack([_resized(_with_channels(image, channels), image_size) for image in pixels])
    else:
        raise DataError(f"{file}: x has shape {x.shape}, expected {layout}")
    class_values, y_index = np.unique(y, return_inverse=True)
    return UserClasses(examples, y_index.astype(np.int32), tuple(str(v) for v in class_values), str(file))


def class_bank(data: UserClasses, classes: np.ndarray | None = None) -> np.ndarray:
    """``[classes, examples_per_class, *example_shape]``: the chosen classes (default all), each keeping its
    first ``m`` examples, ``m`` the smallest chosen class's count (a bank is one array)."""
    classes = np.arange(len(data.class_names)) if classes is None else classes
    rows = [np.flatnonzero(data.y == c) for c in classes]
    keep = min(len(r) for r in rows)
    return np.stack([data.x[r[:keep]] for r in rows])


class FewShotBanks(NamedTuple):
    """A user's classes split into meta-training and meta-test class banks."""

    train: np.ndarray
    test: np.ndarray
    train_classes: tuple[str, ...]
    test_classes: tuple[str, ...]


def few_shot_banks(data: UserClasses, *, test_classes: float) -> FewShotBanks:
    """Class banks of a seeded draw of the classes: ``test_classes`` of them (at least one) for meta-test.

    Raises:
      DataError: fewer than two classes.
    """
    count = len(data.class_names)
    if count < 2:
        raise DataError(f"{data.source}: one class ({data.class_names[0]}); few-shot tasks need at least 2")
    order = np.random.default_rng(CLASS_SPLIT_SEED).permutation(count)
    test_count = min(max(1, round(test_classes * count)), count - 1)
    test, train = np.sort(order[:test_count]), np.sort(order[test_count:])

    def names(classes):
        return tuple(data.class_names[c] for c in classes)

    return FewShotBanks(class_bank(data, train), class_bank(data, test), names(train), names(test))


def check_few_shot_sizes(
    data: UserClasses, banks: FewShotBanks, bank_shape: tuple[int, ...], *, ways: int, shots: int, query_shots: int
) -> None:
    """Refuses, naming the data's path, tasks a bank of ``bank_shape`` cannot supply.

    Raises:
      ValueError: more ways than the bank's classes, or more examples per class than it holds.
    """
    classes, per_class = bank_shape[:2]
    if ways > classes:
        raise ValueError(
            f"{data.source}: {ways}-way tasks need {ways} classes, but its {len(data.class_names)} classes split "
            f"into {len(banks.train_classes)} for meta-training and {len(banks.test_classes)} for meta-test "
            "(--test-classes sets the share held out); ask fewer --ways or add classes"
        )
    needed = shots + query_shots
    if needed > per_class:
        counts = np.bincount(data.y, minlength=len(data.class_names))
        smallest = int(np.argmin(counts))
        raise ValueError(
            f"{data.source}: tasks need shots + query-shots = {shots} + {query_shots} = {needed} examples per "
            f"class, but class {data.class_names[smallest]} has {counts[smallest]} (every class of a split keeps "
            "as many as its smallest); ask fewer --shots or --query-shots, or add examples"
        )


def user_stream(
    data: UserClasses, scenario: str, *, classes_per_experience: int, test_fraction: float, seed: int
) -> Stream:
    """A class-incremental stream of the user's classes: experiences of ``classes_per_experience`` classes
    in sorted order (the last takes what is left), each class's examples shuffled (``seed``) and
    ``test_fraction`` of them (at least one) held out for testing.

    Raises:
      DataError: a class with a single example, fewer classes than one experience takes, or experiences
        of unequal sizes in domain-IL (one line, naming the path).
    """
    count = len(data.class_names)
    if classes_per_experience > count:
        raise DataError(f"{data.source}: {count} classes, fewer than --classes-per-experience {classes_per_experience}")
    groups = [list(range(start, min(start + classes_per_experience, count)))
              for start in range(0, count, classes_per_experience)]  # fmt: skip
    if scenario == "domain-il" and len(groups[-1]) != classes_per_experience:
        raise DataError(
            f"{data.source}: {count} classes do not split into experiences of {classes_per_experience}, which "
            "domain-il needs (each experience's classes share one head); choose a --classes-per-experience "
            f"that divides {count}"
        )
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for c, name in enumerate(data.class_names):
        rows = rng.permutation(np.flatnonzero(data.y == c))
        if len(rows) < 2:
            raise DataError(
                f"{data.source}: class {name} has {len(rows)} example; each class needs at least 2 (one to "
                "train on, one held out for testing)"
            )
        held_out = min(max(1, round(test_fraction * len(rows))), len(rows) - 1)
        test_rows.append(rows[:held_out])
        train_rows.append(rows[held_out:])

    def split(parts):
        rows = np.sort(np.concatenate(parts))
        return LabeledImages(data.x[rows], data.y[rows])

    return class_split_stream(MnistSplits(split(train_rows), split(test_rows)), groups, scenario, seed=seed)


def read_multitask_npz(path: str | Path, *, seed: int) -> MultiTaskDataset:
    """A multi-task table from an npz, split at random (``seed``) into train, validation and test rows.

    Raises:
      DataError: no such file, not an npz, arrays of the wrong shapes, values that are not finite, tasks
        both binary and real-valued, or too few rows for three splits (one line, naming the file).
    """
    file = Path(path).expanduser()
    layout = "x [examples, features] and y [examples, tasks], optionally tasks [tasks] and features [features] names"
    arrays = _npz_arrays(file, ("x", "y"), layout, optional=("tasks", "features"))
    x, y, task_names, feature_names = arrays["x"], arrays["y"], arrays.get("tasks"), arrays.get("features")
    if x.ndim != 2:
        raise DataError(f"{file}: x has shape {x.shape}, expected [examples, features]")
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or len(y) != len(x):
        raise DataError(f"{file}: y has shape {y.shape}, expected [examples, tasks] with {len(x)} examples")
    for name, array in (("x", x), ("y", y)):
        if array.dtype.kind not in "biuf":
            raise DataError(f"{file}: {name} holds {array.dtype} values; it must hold numbers")
        if not np.all(np.isfinite(array)):
            raise DataError(f"{file}: {name} holds values that are not finite (NaN or infinite)")
    num_tasks = y.shape[1]
    names = [f"task{t}" for t in range(num_tasks)] if task_names is None else [str(n) for n in task_names]
    if len(names) != num_tasks or len(set(names)) != num_tasks:
        raise DataError(f"{file}: tasks must be {num_tasks} distinct names, one per column of y, got {names}")
    if feature_names is not None and len(feature_names) != x.shape[1]:
        raise DataError(f"{file}: features has {len(feature_names)} names for the {x.shape[1]} columns of x")
    binary = [bool(np.all((y[:, t] == 0) | (y[:, t] == 1))) for t in range(num_tasks)]
    if len(set(binary)) > 1:
        kinds = [[n for n, is_binary in zip(names, binary, strict=True) if is_binary == b] for b in (True, False)]
        raise DataError(
            f"{file}: tasks {', '.join(kinds[0])} are 0/1 (binary) and {', '.join(kinds[1])} real-valued; "
            "the tasks of one run must be all binary or all regression"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    train_end = int(round(TABLE_SPLIT[0] * len(x)))
    validation_end = train_end + int(round(TABLE_SPLIT[1] * len(x)))
    bounds = ((0, train_end), (train_end, validation_end), (validation_end, len(x)))
    if any(end <= start for start, end in bounds):
        raise DataError(f"{file}: {len(x)} rows are too few to split 80/10/10 into train, validation and test")
    train, validation, test = (
        MultiTaskBatch(x[order[start:end]].astype(np.float32), y[order[start:end]].astype(np.float32))
        for start, end in bounds
    )
    kind = "binary" if binary[0] else "regression"
    features = () if feature_names is None else tuple(str(n) for n in feature_names)
    return MultiTaskDataset(train, validation, test, tuple(names), (kind,) * num_tasks, features)


def _npz_arrays(
    file: Path, required: tuple[str, ...], layout: str, *, optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """The ``required`` arrays of an npz, and those of ``optional`` that it holds."""
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "no such file"
        raise DataError(f"{file}: {what}; --dataset npz:PATH wants an .npz with {layout}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            present = set(npz.files)
            missing = [n for n in required if n not in present]
            if missing:
                raise DataError(
                    f"{file} has no array {', '.join(map(repr, missing))} (it holds {', '.join(sorted(present))}); "
                    f"expected {layout}"
                )
            return {n: npz[n] for n in (*required, *optional) if n in present}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        message = " ".join(str(error).split())
        raise DataError(f"{file} cannot be read as an .npz of arrays ({message}); expected {layout}") from None


def _image_header(file: Path) -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` of an image file, read without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return image.size, image.mode
    except UnidentifiedImageError:
        raise DataError(f"{file}: cannot be read as an image (not a format Pillow reads); remove it") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise DataError(f"{file}: cannot be read as an image ({error}); remove it or replace it") from None


def _decoded(file: Path) -> np.ndarray:
    """An image file's pixels, ``[height, width, 1 or 3]`` float32 in [0, 1] (alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            gray = image.mode in GRAY_MODES
            pixels = np.asarray(image.convert("L" if gray else "RGB"), np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # E.g. a truncated file.
        raise DataError(f"{file}: cannot be read as an image ({error}); remove it or replace it") from None
    return pixels[..., None] if gray else pixels


def _with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``image [H, W, C]`` with ``channels`` channels: gray repeated, colour as luma, alpha dropped."""
    image = image[..., :3] if image.shape[-1] == 4 else image
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return (image @ LUMA)[..., None]


def _resized(image: np.ndarray, size: int | None) -> np.ndarray:
    """``image [H, W, C]`` resized to ``[size, size, C]`` (bilinear, antialiased), or as it is."""
    if size is None or image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(image[..., c])).resize((size, size), Image.Resampling.BILINEAR)
            )
            for c in range(image.shape[-1])
        ],
        axis=-1,
    )


def _words(size: tuple[int, int]) -> str:
    """Pillow's ``(width, height)`` as ``H x W``, the order of the arrays' axes."""
    return f"{size[1]} x {size[0]}"
