"""CIFAR-10, CIFAR-100 and TinyImageNet: TFDS and local readers, and their class-incremental streams."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from metajax.cli import main
from metajax.data import DataError
from metajax.data.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar10, load_cifar100
from metajax.data.continual_streams import class_order, split_classes, split_mnist
from metajax.data.image_datasets import standardized
from metajax.data.mnist import LabeledImages, MnistSplits
from metajax.data.tiny_imagenet import load_tiny_imagenet
from metajax.registry import CONTINUAL_BENCHMARKS

CIFAR10_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


def _images(rng, n, size=32):
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _mock_tfds_records(monkeypatch, records: dict[str, dict[str, np.ndarray]]):
    """TFDS's mock data source serving ``records[split]`` (feature name -> array) in order."""
    requested = []

    def fake_getitem(self, record_key, generator, serialized=False):
        return {feature: values[record_key] for feature, values in records[requested[-1]].items()}

    original = tfds.data_source

    def tracking(name, *, split, **kwargs):
        requested.append(split)
        source = original(name, split=split, **kwargs)
        source.data_source.__len__.return_value = len(records[split]["image"])
        return source

    monkeypatch.setattr(mocking, "_getitem", fake_getitem)
    monkeypatch.setattr(tfds, "data_source", tracking)
    return requested


def _cifar10_arrays(seed=0, train=20, test=10):
    rng = np.random.default_rng(seed)
    return {
        "x_train": _images(rng, train),
        "y_train": (np.arange(train) % 10).astype(np.uint8),
        "x_test": _images(rng, test),
        "y_test": (np.arange(test) % 10).astype(np.uint8),
    }


def test_cifar10_from_tfds_and_from_npz_give_the_same_images(tmp_path, monkeypatch):
    arrays = _cifar10_arrays()
    np.savez(tmp_path / "cifar10.npz", **arrays, class_names=np.array(CIFAR10_CLASSES))
    records = {s: {"image": arrays[f"x_{s}"], "label": arrays[f"y_{s}"].astype(np.int64)} for s in ("train", "test")}
    requested = _mock_tfds_records(monkeypatch, records)
    with tfds.testing.mock_data(num_examples=1):
        from_tfds = load_cifar10(None)
    assert requested == ["train", "test"]
    for loaded in (load_cifar10(tmp_path), from_tfds):
        for split in ("train", "test"):
            images = getattr(loaded, split)
            np.testing.assert_array_equal(images.x, arrays[f"x_{split}"])
            np.testing.assert_array_equal(images.y, arrays[f"y_{split}"])
            assert images.x.dtype == np.uint8 and images.y.dtype == np.int32
        assert loaded.class_names == CIFAR10_CLASSES


@pytest.mark.parametrize("labels, feature, classes", [("fine", "label", 100), ("coarse", "coarse_label", 20)])
def test_cifar100_from_tfds_reads_fine_or_coarse_labels(monkeypatch, labels, feature, classes):
    rng = np.random.default_rng(1)
    records = {
        split: {"image": _images(rng, n), "label": rng.integers(0, 100, n), "coarse_label": rng.integers(0, 20, n)}
        for split, n in (("train", 6), ("test", 3))
    }
    _mock_tfds_records(monkeypatch, records)
    with tfds.testing.mock_data(num_examples=1):
        data = load_cifar100(None, labels=labels)
    np.testing.assert_array_equal(data.train.x, records["train"]["image"])
    np.testing.assert_array_equal(data.test.y, records["test"][feature])
    assert len(data.class_names) == classes


def test_tfds_mock_cifar_records_load():
    with tfds.testing.mock_data(num_examples=4):
        data = load_cifar10(None)
        coarse = load_cifar100(None, labels="coarse")
    assert data.train.x.shape == (4, 32, 32, 3) and data.train.x.dtype == np.uint8
    assert coarse.test.x.shape == (4, 32, 32, 3) and set(coarse.test.y) <= set(range(20))


def _write_cifar100_python(folder: Path, per_class_train=2, per_class_test=1, seed=0) -> dict:
    """The ``cifar-100-python`` files, pickled as the original's dicts of bytes keys; returns their contents."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    contents = {}
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        content = {
            b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine % 20).tolist(),
            b"filenames": [f"image_{i}.png".encode() for i in range(len(fine))],
            b"batch_label": f"{split} batch".encode(),
        }
        (folder / split).write_bytes(pickle.dumps(content, protocol=2))
        contents[split] = content
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return contents


@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory) -> tuple[Path, dict]:
    parent = tmp_path_factory.mktemp("cifar100")
    return parent, _write_cifar100_python(parent / "cifar-100-python")


def test_cifar100_python_files_fine_and_coarse(cifar100_dir):
    parent, contents = cifar100_dir
    fine = load_cifar100(parent)  # The folder that holds cifar-100-python ...
    coarse = load_cifar100(parent / "cifar-100-python", labels="coarse")  # ... or that folder itself.
    assert fine.train.x.shape == (200, 32, 32, 3) and fine.test.x.shape == (100, 32, 32, 3)
    assert fine.train.x.dtype == np.uint8 and fine.class_names[:2] == ("fine0", "fine1")
    assert len(coarse.class_names) == 20 and coarse.class_names[-1] == "coarse19"
    rows = contents["train"][b"data"]
    n, i, j = 7, 3, 30  # The rows hold the red, then green, then blue 32 x 32 planes.
    assert fine.train.x[n, i, j].tolist() == [rows[n, c * 1024 + i * 32 + j] for c in range(3)]
    np.testing.assert_array_equal(fine.test.y, contents["test"][b"fine_labels"])
    np.testing.assert_array_equal(coarse.train.y, contents["train"][b"coarse_labels"])
    np.testing.assert_array_equal(coarse.train.x, fine.train.x)


def test_cifar100_refuses_a_pickle_that_names_other_code(tmp_path):
    import collections

    _write_cifar100_python(tmp_path / "cifar-100-python")
    (tmp_path / "cifar-100-python" / "meta").write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    with pytest.raises(DataError, match=r"meta is not a readable pickle .*refusing to load collections.OrderedDict"):
        load_cifar100(tmp_path)


def _jpeg(path: Path, colour) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(colour, int) else "RGB"
    Image.new(mode, (64, 64), colour).save(path, "JPEG", quality=95)


def _write_tiny_imagenet(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Three classes (wnids.txt not sorted), two training and one validation image each; one gray image."""
    colours = {"n02": (200, 30, 30), "n01": (30, 200, 30), "n03": (30, 30, 200)}
    (folder / "test" / "images").mkdir(parents=True)  # Unlabelled: not read.
    (folder / "wnids.txt").write_text("n02\nn01\nn03\n")
    annotations = []
    for wnid, colour in colours.items():
        for k in range(2):
            _jpeg(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", colour)
        _jpeg(folder / "val" / "images" / f"val_{wnid}.JPEG", colour)
        annotations.append(f"val_{wnid}.JPEG\t{wnid}\t0\t0\t63\t63")
    _jpeg(folder / "train" / "n03" / "images" / "n03_gray.JPEG", 128)
    (folder / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return colours


def test_tiny_imagenet_folder_layout(tmp_path):
    colours = _write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    data = load_tiny_imagenet(tmp_path)
    assert data.class_names == ("n01", "n02", "n03")  # Sorted wnids, as ImageFolder numbers them.
    assert data.train.x.shape == (7, 64, 64, 3) and data.train.x.dtype == np.uint8
    assert data.train.y.tolist() == [0, 0, 1, 1, 2, 2, 2] and data.test.y.tolist() == [1, 0, 2]
    for split in (data.train, data.test):
        for x, y in zip(split.x, split.y, strict=True):
            expected = colours[data.class_names[y]]
            if not np.all(x == x[..., :1]):  # The gray image holds one value in all three channels.
                # Flat colours survive JPEG at quality 95 within a few levels.
                np.testing.assert_allclose(x.mean(axis=(0, 1)), expected, atol=3)


def test_tiny_imagenet_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="TinyImageNet needs its files: pass --data-dir .*tiny-imagenet-200"):
        load_tiny_imagenet(None)
    with pytest.raises(DataError, match=rf"TinyImageNet not found: looked for {tmp_path}/wnids.txt, .*--data-dir"):
        load_tiny_imagenet(tmp_path)
    folder = tmp_path / "tiny-imagenet-200"
    _write_tiny_imagenet(folder)
    (folder / "train" / "n02" / "images" / "n02_0.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="n02_0.JPEG is not a readable image"):
        load_tiny_imagenet(folder)
    _jpeg(folder / "train" / "n02" / "images" / "n02_0.JPEG", (1, 2, 3))
    (folder / "val" / "val_annotations.txt").write_text("val_x.JPEG\tn09\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt, line 1: wnid 'n09' is not in .*wnids.txt"):
        load_tiny_imagenet(folder)


def test_missing_cifar_files_say_where_and_how(tmp_path):
    with pytest.raises(DataError, match=rf"CIFAR-10 not found: looked for {tmp_path}/cifar10.npz. Pass --data-dir"):
        load_cifar10(tmp_path)
    (tmp_path / "cifar10.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cifar10.npz is unreadable"):
        load_cifar10(tmp_path)
    message = rf"CIFAR-100 not found: looked for {tmp_path}/train, {tmp_path}/test, {tmp_path}/meta. .*class lists"
    with pytest.raises(DataError, match=message):
        load_cifar100(tmp_path)
    for load in (load_cifar10, load_cifar100):
        with pytest.raises(DataError, match="not found") as raised:
            load(tmp_path / "nowhere")
        assert "\n" not in str(raised.value)


def test_class_order_seed():
    np.testing.assert_array_equal(class_order(10, None), np.arange(10))
    np.testing.assert_array_equal(class_order(100, 3), class_order(100, 3))
    assert sorted(class_order(100, 3)) == list(range(100))
    assert not np.array_equal(class_order(100, 3), class_order(100, 4))
    assert not np.array_equal(class_order(100, 3), np.arange(100))


def _fake_images(num_classes, per_class, seed=0) -> MnistSplits:
    rng = np.random.default_rng(seed)
    splits = []
    for n in (per_class, 1):
        y = rng.permutation(np.repeat(np.arange(num_classes), n)).astype(np.int32)
        x = np.zeros((len(y), 4, 4, 3), np.uint8)
        x[:, 0, 0, 0] = y  # Each image says which class it is.
        splits.append(LabeledImages(x, y))
    return MnistSplits(*splits)


def test_split_classes_in_a_seeded_order_relabels_by_place_in_the_order():
    data = _fake_images(20, 3)
    order = class_order(20, 7)
    stream = split_classes(data, 20, 4, "class-il", class_order_seed=7)
    assert stream.train_x.shape == (4, 15, 4, 4, 3) and stream.train_x.dtype == np.uint8
    for e in range(4):
        assert set(stream.train_y[e].tolist()) == set(range(5 * e, 5 * e + 5))
        # The images of experience e are those of the classes order[5e:5e+5], label k showing class order[k].
        np.testing.assert_array_equal(stream.train_x[e][:, 0, 0, 0], order[stream.train_y[e]])
        assert set(stream.train_x[e][:, 0, 0, 0].tolist()) == set(order[5 * e : 5 * e + 5].tolist())
    task_il = split_classes(data, 20, 4, "task-il", class_order_seed=7)
    np.testing.assert_array_equal(task_il.logit_mask[1], np.isin(np.arange(20), range(5, 10)))
    same = split_classes(data, 20, 4, "class-il", class_order_seed=None)
    np.testing.assert_array_equal(same.train_x[1][:, 0, 0, 0], same.train_y[1])  # Label order: labels unchanged.
    with pytest.raises(ValueError, match="20 classes do not split into 3 experiences"):
        split_classes(data, 20, 3, "class-il")
    with pytest.raises(ValueError, match=r"data.train.y holds labels 0..19, expected labels in \[0, 10\)"):
        split_classes(data, 10, 5, "class-il")


def test_split_mnist_keeps_its_pairs_and_takes_a_class_order():
    data = _fake_images(10, 2)
    np.testing.assert_array_equal(split_mnist(data, "class-il").train_x[2][:, 0, 0, 0] // 2, [2] * 4)
    shuffled = split_mnist(data, "class-il", class_order_seed=1)
    assert set(shuffled.train_x[0][:, 0, 0, 0].tolist()) == set(class_order(10, 1)[:2].tolist())


def test_standardized_pixels():
    images = np.array([[[0, 128, 255]]], np.uint8)
    expected = (images / 255.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    result = standardized(images, CIFAR10_MEAN, CIFAR10_STD)
    # Float32 rounding of x * scale - shift against float64: a few ulps of values near 2.
    assert result.dtype == np.float32 and np.allclose(result, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="images must be uint8"):
        standardized(images.astype(np.float32), CIFAR10_MEAN, CIFAR10_STD)


def _build(name, options, data_dir, scenario="class-il", experiences=10, seed=0):
    entry, resolved = CONTINUAL_BENCHMARKS.resolve(name, options)
    return entry.build(
        entry.options(resolved), data_dir=data_dir, scenario=scenario, experiences=experiences, seed=seed
    )  # fmt: skip


@pytest.mark.parametrize(
    "options, experiences, shape, outputs",
    [({}, 10, (10, 20), 100), ({}, 20, (20, 10), 100), ({"cifar100_labels": "coarse"}, 5, (5, 40), 20)],
)
def test_split_cifar100_experiences(cifar100_dir, options, experiences, shape, outputs):
    stream = _build("split-cifar100", options, cifar100_dir[0], experiences=experiences)
    assert stream.train_x.shape == (*shape, 32, 32, 3) and stream.train_x.dtype == np.float32
    assert stream.num_outputs == outputs
    per_experience = outputs // experiences
    for e in range(experiences):
        assert set(stream.train_y[e].tolist()) == set(range(e * per_experience, (e + 1) * per_experience))


def test_split_cifar100_domain_il_and_bad_experiences(cifar100_dir):
    stream = _build("split-cifar100", {"class_order_seed": 2}, cifar100_dir[0], scenario="domain-il", experiences=20)
    assert stream.num_outputs == 5 and set(stream.train_y.ravel().tolist()) == set(range(5))
    with pytest.raises(ValueError, match="100 classes do not split into 7 experiences"):
        _build("split-cifar100", {}, cifar100_dir[0], experiences=7)


def test_split_tinyimagenet_from_its_folder(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    for c in range(200):  # One training and one validation image of each of 200 classes.
        for name in (f"train/n{c:03}/images/n{c:03}_0.JPEG", f"val/images/val_{c}.JPEG"):
            _jpeg(folder / name, (c, 0, 255 - c))
    (folder / "wnids.txt").write_text("".join(f"n{c:03}\n" for c in range(200)))
    (folder / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{c}.JPEG\tn{c:03}\t0\t0\t1\t1\n" for c in range(200))
    )
    assert CONTINUAL_BENCHMARKS.get("split-tinyimagenet").trait("scenarios")[0] == "class-il"
    stream = _build("split-tinyimagenet", {}, tmp_path)
    assert stream.train_x.shape == (10, 20, 64, 64, 3) and stream.test_x.shape == (10, 20, 64, 64, 3)
    assert stream.num_outputs == 200 and set(stream.test_y[9].tolist()) == set(range(180, 200))
    with pytest.raises(ValueError, match="200 classes do not split into 7 experiences"):
        _build("split-tinyimagenet", {}, tmp_path, experiences=7)


@pytest.fixture(scope="module")
def cifar10_dir() -> Path:
    if not (CIFAR10_DIR / "cifar10.npz").exists():
        pytest.skip(f"offline CIFAR-10 not found at {CIFAR10_DIR} (see ../shared/data/README.md)")
    return CIFAR10_DIR


def test_offline_cifar10_copy(cifar10_dir):
    data = load_cifar10(cifar10_dir)  # Decoded from a JPEG copy of CIFAR-10 (see ../shared/data/README.md).
    assert data.train.x.shape == (50000, 32, 32, 3) and data.test.x.shape == (10000, 32, 32, 3)
    assert np.bincount(data.train.y).tolist() == [5000] * 10 and data.class_names == CIFAR10_CLASSES


def test_split_cifar10_dry_run_and_a_tiny_run(tmp_path, capsys):
    arrays = _cifar10_arrays(train=100, test=20)
    np.savez(tmp_path / "cifar10.npz", **arrays)
    common = ["continual", "--benchmark", "split-cifar10", "--data-dir", str(tmp_path), "--no-progress"]
    common += ["--batch-size", "10"]
    assert main([*common, "--dry-run", "--class-order-seed", "3", "--workdir", str(tmp_path / "dry")]) == 0
    assert '"class_order_seed": 3' in capsys.readouterr().out
    run = [*common, "--hidden", "16", "--scenario", "task-il", "--workdir", str(tmp_path / "r")]
    assert main(run) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(summary["accuracy_matrix"]) == 5 and summary["config"]["benchmark_options"]["class_order_seed"] is None
    assert main([*common, "--cifar100-labels", "coarse", "--workdir", str(tmp_path / "x")]) == 2
    assert "--cifar100-labels does not apply to benchmark split-cifar10" in capsys.readouterr().err
