"""Your own data (``metajax.data.user_data``): folders of class subfolders of images and npz files, read,
resized, split for the three families, refused in one line naming the path, and run from the command."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metajax.cli import main
from metajax.data.errors import DataError
from metajax.data.user_data import (
    class_bank,
    few_shot_banks,
    read_image_folder,
    read_multitask_npz,
    read_npz_classes,
    user_stream,
)
from metajax.registry import CONTINUAL_BENCHMARKS, FEW_SHOT_DATASETS, MULTITASK_DATASETS, Registry, UnknownName
from metajax.train.config import MetaLearningConfig
from metajax.train.continual_config import ContinualConfig
from metajax.train.multitask_config import MultiTaskConfig


def class_images(classes: int, per_class: int, *, size=(8, 8), seed=0) -> dict[str, list[np.ndarray]]:
    """``{class name: [uint8 images]}``, each class a brightness of its own plus noise (so it can be learned)."""
    rng = np.random.default_rng(seed)
    return {
        f"class{c}": [
            np.clip(rng.normal(40 + 180 * c / max(classes - 1, 1), 10, size), 0, 255).astype(np.uint8)
            for _ in range(per_class)
        ]
        for c in range(classes)
    }


def write_folder(root: Path, images: dict[str, list[np.ndarray]], suffix=".png") -> Path:
    for name, arrays in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, array in enumerate(arrays):
            Image.fromarray(array).save(root / name / f"{i:03d}{suffix}")
    return root


def one_line_naming(error: Exception, path: Path) -> str:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    return message


# Reading.


def test_a_folder_becomes_float_pixels_of_sorted_classes(tmp_path):
    images = class_images(3, 4)
    folder = write_folder(tmp_path / "data", {"zebra": images["class0"], "ant": images["class1"][:3]})
    (folder / "zebra" / "notes.txt").write_text("not an image")  # Left out: not an image's suffix.
    (folder / ".cache").mkdir()  # Left out: hidden.
    data = read_image_folder(folder)
    assert data.class_names == ("ant", "zebra") and data.source == str(folder)
    assert data.x.shape == (7, 8, 8, 1) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.y, [0, 0, 0, 1, 1, 1, 1])
    # PNG is lossless: the pixels are the bytes written, over 255.
    np.testing.assert_array_equal(data.x[0, ..., 0], images["class1"][0] / np.float32(255))
    np.testing.assert_array_equal(data.x[3, ..., 0], images["class0"][0] / np.float32(255))


def test_channels_are_inferred_or_converted(tmp_path):
    rng = np.random.default_rng(1)
    color = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (2, 6, 6), dtype=np.uint8)
    folder = write_folder(tmp_path / "mixed", {"color": list(color), "gray": list(gray)})
    data = read_image_folder(folder)
    assert data.x.shape == (4, 6, 6, 3)  # One colour image: every image has three channels.
    np.testing.assert_array_equal(data.x[2], np.repeat(gray[0][..., None], 3, -1) / np.float32(255))
    as_gray = read_image_folder(folder, channels=1)
    # Pillow's own "L" conversion rounds the same luma to a byte: equal within half a level.
    pillow_gray = np.asarray(Image.fromarray(color[0]).convert("L")) / 255.0
    np.testing.assert_allclose(as_gray.x[0, ..., 0], pillow_gray, atol=0.5 / 255 + 1e-6)
    assert read_image_folder(write_folder(tmp_path / "gray", {"g": list(gray)})).x.shape[-1] == 1


def test_image_size_resizes_every_image(tmp_path):
    images = {"a": [np.full((12, 12), 200, np.uint8)], "b": [np.full((8, 10), 100, np.uint8)]}
    folder = write_folder(tmp_path / "sizes", images)
    data = read_image_folder(folder, image_size=4)
    assert data.x.shape == (2, 4, 4, 1)
    # A plain image stays plain through an antialiased bilinear resize.
    np.testing.assert_allclose(data.x[:, ..., 0], np.broadcast_to([[[200.0]], [[100.0]]], (2, 4, 4)) / 255, rtol=1e-6)


def test_an_npz_reads_as_its_folder_does(tmp_path):
    images = class_images(2, 3, size=(10, 10))
    folder = write_folder(tmp_path / "folder", images)
    x = np.stack([image for arrays in images.values() for image in arrays])
    labels = np.repeat(["class0", "class1"], 3)
    np.savez(tmp_path / "data.npz", x=x, y=labels)
    for options in ({}, {"image_size": 4}, {"image_size": 4, "channels": 3}):
        from_folder = read_image_folder(folder, **options)
        from_npz = read_npz_classes(tmp_path / "data.npz", **options)
        np.testing.assert_array_equal(from_npz.x, from_folder.x)
        np.testing.assert_array_equal(from_npz.y, from_folder.y)
        assert from_npz.class_names == from_folder.class_names
    # Float images are taken as they are, vectors too; integer labels name their classes.
    np.savez(tmp_path / "floats.npz", x=np.full((4, 3, 3, 1), 0.5, np.float32), y=np.array([7, 3, 7, 3]))
    floats = read_npz_classes(tmp_path / "floats.npz")
    assert floats.class_names == ("3", "7") and np.all(floats.x == 0.5) and list(floats.y) == [1, 0, 1, 0]
    np.savez(tmp_path / "vectors.npz", x=np.ones((4, 5)), y=np.array([0, 1, 0, 1]))
    assert read_npz_classes(tmp_path / "vectors.npz").x.shape == (4, 5)


# Splitting for the families.


def test_class_banks_keep_the_smallest_class_count_and_split_classes_once(tmp_path):
    images = class_images(8, 6)
    images["class3"] = images["class3"][:4]
    data = read_image_folder(write_folder(tmp_path / "data", images))
    assert class_bank(data).shape == (8, 4, 8, 8, 1)
    banks = few_shot_banks(data, test_classes=0.25)
    assert len(banks.test_classes) == 2 and len(banks.train_classes) == 6
    assert not set(banks.test_classes) & set(banks.train_classes)
    assert banks.train.shape[0] == 6 and banks.test.shape[0] == 2
    assert few_shot_banks(data, test_classes=0.25).test_classes == banks.test_classes  # The same every run.
    first = data.class_names.index(banks.test_classes[0])
    np.testing.assert_array_equal(banks.test[0], data.x[data.y == first][: banks.test.shape[1]])


def test_a_stream_splits_classes_into_experiences_and_holds_out_tests(tmp_path):
    data = read_image_folder(write_folder(tmp_path / "data", class_images(5, 10)))
    stream = user_stream(data, "class-il", classes_per_experience=2, test_fraction=0.2, seed=0)
    assert stream.num_experiences == 3 and stream.num_outputs == 5 and stream.example_shape == (8, 8, 1)
    assert [sorted(set(stream.train_y[e])) for e in range(3)] == [[0, 1], [2, 3], [4]]
    # Two of ten per class held out; the last experience's one class pads its test set.
    assert stream.test_mask.sum(axis=1).tolist() == [4, 4, 2]
    train_rows = {row.tobytes() for e in range(3) for row in stream.train_x[e]}
    test_rows = {stream.test_x[e, i].tobytes() for e in range(3) for i in np.flatnonzero(stream.test_mask[e])}
    assert not train_rows & test_rows


def test_a_table_is_split_into_binary_or_regression_tasks(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    np.savez(tmp_path / "binary.npz", x=x, y=(x[:, :2] > 0).astype(np.int64), tasks=np.array(["left", "right"]))
    data = read_multitask_npz(tmp_path / "binary.npz", seed=0)
    assert data.task_names == ("left", "right") and data.task_kinds == ("binary", "binary")
    assert [len(split.x) for split in (data.train, data.validation, data.test)] == [40, 5, 5]
    assert data.train.x.dtype == np.float32 and data.train.y.shape == (40, 2)
    rows = np.concatenate([data.train.x, data.validation.x, data.test.x])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(x[:, 0].astype(np.float32)))
    np.savez(tmp_path / "one.npz", x=x, y=x[:, 0] * 2.5)
    regression = read_multitask_npz(tmp_path / "one.npz", seed=0)
    assert regression.task_names == ("task0",) and regression.task_kinds == ("regression",)


# Bad data: one line, naming the path.


def bad_folders(root: Path) -> list[tuple[Path, dict, str]]:
    """``(path, options, words)``: folders that cannot be read, each with what its error says."""
    write_folder(root / "file_parent", {"c": class_images(1, 1)["class0"]})
    cases = [
        (root / "missing", {}, "no such folder"),
        (root / "file_parent" / "c" / "000.png", {}, "is a file, not a folder"),
        (root / "file_parent" / "c", {}, "no class subfolders"),
    ]
    (root / "no_images" / "c").mkdir(parents=True)
    cases.append((root / "no_images", {}, "no images in this class folder"))
    unreadable = write_folder(root / "unreadable", class_images(2, 2))
    (unreadable / "class1" / "broken.png").write_bytes(b"not a png")
    cases.append((unreadable, {}, "cannot be read as an image"))
    truncated = write_folder(root / "truncated", class_images(2, 2, size=(32, 32)))
    whole = (truncated / "class0" / "000.png").read_bytes()
    (truncated / "class0" / "000.png").write_bytes(whole[: len(whole) // 2])
    cases.append((truncated, {}, "cannot be read as an image"))
    mixed = write_folder(root / "mixed", {"a": [np.zeros((4, 4), np.uint8)], "b": [np.zeros((5, 4), np.uint8)]})
    cases.append((mixed, {}, "images of different sizes (4 x 4 a/000.png, 5 x 4 b/000.png); give --image-size"))
    return cases


def test_bad_folders_are_refused_in_one_line_naming_the_path(tmp_path):
    for path, options, words in bad_folders(tmp_path):
        with pytest.raises(DataError) as caught:
            read_image_folder(path, **options)
        assert words in one_line_naming(caught.value, path)
    # The mixed folder reads once given a size.
    assert read_image_folder(tmp_path / "mixed", image_size=3).x.shape == (2, 3, 3, 1)


@pytest.mark.parametrize(
    "arrays, words",
    [
        (None, "no such file"),
        (b"not an npz", "cannot be read as an .npz"),
        ({"x": np.zeros((3, 4, 4))}, "has no array 'y'"),
        ({"x": np.zeros((3, 4, 4)), "y": np.zeros((2,), int)}, "y has shape (2,), expected [examples] = (3,)"),
        ({"x": np.zeros((3, 4, 4)), "y": np.zeros(3)}, "class labels must be integers or strings"),
        ({"x": np.zeros((3, 4, 4, 2)), "y": np.zeros(3, int)}, "images must have 1, 3 or 4 (RGBA) channels"),
        ({"x": np.zeros((3,)), "y": np.zeros(3, int)}, "x has shape (3,)"),
        ({"x": np.array(["a", "b"]), "y": np.zeros(2, int)}, "x holds 2 examples of <U1; it must hold numbers"),
        ({"x": np.array([{}, {}], dtype=object), "y": np.zeros(2, int)}, "cannot be read as an .npz"),
    ],
)
def test_bad_npz_files_are_refused_in_one_line_naming_the_file(tmp_path, arrays, words):
    path = tmp_path / "data.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    elif arrays is not None:
        np.savez(path, **arrays)
    with pytest.raises(DataError) as caught:
        read_npz_classes(path)
    assert words in one_line_naming(caught.value, path)


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x": np.zeros((10, 2)), "y": np.stack([np.arange(10) % 2, np.arange(10) / 3], 1)},
         "tasks task0 are 0/1 (binary) and task1 real-valued"),
        ({"x": np.full((10, 2), np.nan), "y": np.zeros(10)}, "x holds values that are not finite"),
        ({"x": np.zeros((10, 2, 2)), "y": np.zeros(10)}, "x has shape (10, 2, 2), expected [examples, features]"),
        ({"x": np.zeros((10, 2)), "y": np.zeros((10, 2)), "tasks": np.array(["a"])}, "tasks must be 2 distinct"),
        ({"x": np.zeros((2, 2)), "y": np.zeros(2)}, "2 rows are too few to split 80/10/10"),
    ],
)  # fmt: skip
def test_bad_tables_are_refused_in_one_line_naming_the_file(tmp_path, arrays, words):
    path = tmp_path / "table.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as caught:
        read_multitask_npz(path, seed=0)
    assert words in one_line_naming(caught.value, path)


def test_streams_refuse_classes_too_small_or_too_few(tmp_path):
    images = class_images(3, 3)
    images["class2"] = images["class2"][:1]
    data = read_image_folder(write_folder(tmp_path / "data", images))
    for options, words in (
        ({"scenario": "class-il", "classes_per_experience": 1}, "class class2 has 1 example"),
        ({"scenario": "class-il", "classes_per_experience": 4}, "3 classes, fewer than --classes-per-experience 4"),
        ({"scenario": "domain-il", "classes_per_experience": 2}, "choose a --classes-per-experience that divides 3"),
    ):
        with pytest.raises(DataError) as caught:
            user_stream(data, **options, test_fraction=0.2, seed=0)
        assert words in one_line_naming(caught.value, tmp_path / "data")


# Naming your data: NAME:PATH, in each family's config.


def test_name_colon_path_sets_the_entrys_path_in_every_family(tmp_path):
    for registry, name in ((FEW_SHOT_DATASETS, "folder"), (CONTINUAL_BENCHMARKS, "npz"), (MULTITASK_DATASETS, "npz")):
        entry, options = registry.resolve(f"{name}:{tmp_path}/a:b", {})
        assert entry.name == name and options["path"] == f"{tmp_path}/a:b"  # Only the first colon splits.
        assert registry.get(f"{name}:elsewhere") is entry
        with pytest.raises(ValueError, match=f"needs its path: --{registry.option} {name}:PATH"):
            registry.resolve(name, {})
        with pytest.raises(ValueError, match="disagree; give the path once"):
            registry.resolve(f"{name}:one", {"path": "two"})
    assert FEW_SHOT_DATASETS.resolve("folder:same", {"path": "same"})[1]["path"] == "same"
    with pytest.raises(UnknownName, match="dataset omniglot takes no argument after ':'"):
        FEW_SHOT_DATASETS.get("omniglot:/data")
    with pytest.raises(ValueError, match="names cannot hold ':'"):
        Registry("thing", family="shared", builtins="metajax", option="thing").register("a:b", description="x")(len)


def test_configs_resolve_to_the_entry_and_its_path(tmp_path):
    meta = MetaLearningConfig(dataset=f"folder:{tmp_path}", dataset_options={"image_size": 16}).resolved()
    assert meta.dataset == "folder" and meta.model == "conv4"
    assert meta.dataset_options == {"path": str(tmp_path), "image_size": 16, "channels": None, "test_classes": 0.25}
    assert meta.resolved() == meta  # A resolved config resolves to itself (resuming compares them).
    continual = ContinualConfig(benchmark=f"npz:{tmp_path}/x.npz").resolved()
    assert continual.benchmark == "npz" and continual.benchmark_options["path"] == f"{tmp_path}/x.npz"
    multitask = MultiTaskConfig(dataset=f"npz:{tmp_path}/t.npz").resolved()
    assert multitask.dataset == "npz" and multitask.dataset_options == {"path": f"{tmp_path}/t.npz"}
    with pytest.raises(ValueError, match="--test-classes does not apply to dataset omniglot"):
        MetaLearningConfig(dataset="omniglot", dataset_options={"test_classes": 0.5}).resolved()


# From the command.

# An MLP rather than the folder's default conv4 (which the config test checks): half the compiling.
TINY_REPTILE = ["--ways", "2", "--shots", "1", "--query-shots", "2", "--meta-batch", "2", "--meta-iters", "2",
                "--log-every", "2", "--eval-tasks", "2", "--eval-chunk", "2", "--inner-steps", "1",
                "--eval-inner-steps", "1", "--model", "mlp", "--hidden", "8", "--no-progress"]  # fmt: skip


def test_meta_learning_on_a_folder_from_the_command(tmp_path, capsys):
    folder = write_folder(tmp_path / "my images", class_images(6, 4, size=(10, 10)))
    workdir = tmp_path / "run"
    args = ["reptile", "--dataset", f"folder:{folder}", "--image-size", "8", "--test-classes", "0.34", *TINY_REPTILE]
    assert main([*args, "--workdir", str(workdir)]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["config"]["dataset"] == "folder" and summary["config"]["dataset_options"]["path"] == str(folder)
    assert 0 <= summary["test_accuracy"] <= 1 and summary["meta_iters_done"] == 2
    assert "dataset                                           folder" in capsys.readouterr().out
    # Too few images per class for the shots asked: one line naming the folder, before any training.
    assert main([*args, "--shots", "3", "--dry-run", "--workdir", str(tmp_path / "dry")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith(f"metajax reptile: error: {folder}: tasks need shots + query-shots")


@pytest.mark.parametrize("flag", ["--dataset", "--benchmark"])
def test_continual_learning_on_a_folder_from_the_command(tmp_path, flag):
    folder = write_folder(tmp_path / "data", class_images(4, 6))
    args = ["continual", flag, f"folder:{folder}", "--classes-per-experience", "2", "--batch-size", "4",
            "--hidden", "8", "--no-progress", "--workdir", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["benchmark"] == "folder" and summary["config"]["scenario"] == "class-il"
    assert summary["config"]["benchmark_options"]["classes_per_experience"] == 2
    assert np.shape(summary["accuracy_matrix"]) == (2, 2)


def test_multitask_learning_on_a_table_from_the_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    np.savez(tmp_path / "table.npz", x=x, y=(x[:, :2] > 0).astype(np.float32), tasks=np.array(["first", "second"]))
    args = ["multitask", "--dataset", f"npz:{tmp_path / 'table.npz'}", "--epochs", "1", "--batch-size", "16",
            "--experts", "2", "--expert-units", "2", "--no-progress", "--workdir", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["dataset"] == "npz" and set(summary["tasks"]) == {"first", "second"}
    assert all("auc" in scores for scores in summary["tasks"].values())  # 0/1 columns: binary tasks.
    assert "test auc, first" in capsys.readouterr().out
