"""MNIST loading (TFDS and npz) and the continual-learning streams built from it."""

import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from metajax.data import DataError
from metajax.data.continual_streams import gaussian_classes, permuted_stream, split_mnist
from metajax.data.mnist import LabeledImages, MnistSplits, load_mnist


def _tiny_mnist(seed=0, per_class_train=6, per_class_test=3) -> tuple[dict, MnistSplits]:
    rng = np.random.default_rng(seed)
    raw = {}
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        raw[f"x_{split}"] = rng.integers(0, 256, (len(y), 28, 28), dtype=np.uint8)
        raw[f"y_{split}"] = y
    flat = MnistSplits(
        *(
            LabeledImages(raw[f"x_{s}"].reshape(-1, 784).astype(np.float32) / 255, raw[f"y_{s}"].astype(np.int32))
            for s in ("train", "test")
        )
    )
    return raw, flat


def test_npz_and_tfds_give_the_same_arrays(tmp_path, monkeypatch):
    raw, expected = _tiny_mnist()
    np.savez(tmp_path / "mnist.npz", **raw)
    # The npz format of ../shared/data/README.md holds exactly these four arrays.
    from_file = load_mnist(tmp_path)
    requested = []

    def fake_getitem(self, record_key, generator, serialized=False):
        split = requested[-1]
        return {"image": raw[f"x_{split}"][record_key][..., None], "label": raw[f"y_{split}"][record_key]}

    original = tfds.data_source

    def tracking(name, *, split, **kwargs):
        requested.append(split)
        source = original(name, split=split, **kwargs)
        source.data_source.__len__.return_value = len(raw[f"y_{split}"])
        return source

    monkeypatch.setattr(mocking, "_getitem", fake_getitem)
    monkeypatch.setattr(tfds, "data_source", tracking)
    with tfds.testing.mock_data(num_examples=1):
        from_tfds = load_mnist(None)
    assert requested == ["train", "test"]
    for loaded in (from_file, from_tfds):
        np.testing.assert_array_equal(loaded.train.x, expected.train.x)  # The very values of x / 255.
        np.testing.assert_array_equal(loaded.test.y, expected.test.y)
        assert loaded.train.x.dtype == np.float32 and loaded.train.x.max() <= 1.0


def test_tfds_mock_records_load():
    with tfds.testing.mock_data(num_examples=7):
        data = load_mnist(None)
    assert data.train.x.shape == (7, 784) and set(data.train.y) <= set(range(10))


def test_missing_and_corrupt_mnist_say_where_and_how(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=rf"MNIST not found: looked for {tmp_path}/mnist.npz.*--data-dir"):
        load_mnist(tmp_path)
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="mnist.npz is unreadable"):
        load_mnist(tmp_path)

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "data_source", offline)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [])  # The host resolves; the download fails.
    with pytest.raises(DataError, match="could not load mnist with TensorFlow Datasets.*ConnectionError.*--data-dir"):
        load_mnist(None, tfds_data_dir=str(tmp_path))


def test_split_mnist_in_three_scenarios():
    _, data = _tiny_mnist(per_class_train=6, per_class_test=3)
    class_il = split_mnist(data, "class-il")
    assert class_il.train_x.shape == (5, 12, 784) and class_il.num_outputs == 10
    for e in range(5):
        assert set(class_il.train_y[e]) == {2 * e, 2 * e + 1}
        assert set(class_il.test_y[e][class_il.test_mask[e]]) == {2 * e, 2 * e + 1}
    assert class_il.logit_mask.all()
    task_il = split_mnist(data, "task-il")
    np.testing.assert_array_equal(task_il.logit_mask[2], np.isin(np.arange(10), [4, 5]))
    domain_il = split_mnist(data, "domain-il")
    assert domain_il.num_outputs == 2
    np.testing.assert_array_equal(domain_il.train_y, class_il.train_y % 2)  # even/odd digit
    np.testing.assert_array_equal(domain_il.train_x, class_il.train_x)
    with pytest.raises(ValueError, match="scenario must be one of task-il, domain-il, class-il"):
        split_mnist(data, "instance-il")


def test_split_cuts_training_sets_to_the_smallest_and_masks_test_padding():
    _, data = _tiny_mnist()
    nines = np.flatnonzero(data.test.y == 9)
    keep = np.setdiff1d(np.arange(len(data.test.y)), nines[1:])  # experience {8, 9} keeps one 9 in test
    data = data._replace(test=LabeledImages(data.test.x[keep], data.test.y[keep]))
    stream = split_mnist(data, "class-il")
    assert stream.test_mask.sum(axis=1).tolist() == [6, 6, 6, 6, 4]
    assert not stream.test_mask[4, 4:].any() and (stream.test_y[4, 4:] == 0).all()


def test_permuted_mnist_first_experience_is_the_identity():
    _, data = _tiny_mnist()
    distinct = data.train.x.copy()
    distinct[0] = np.arange(784) / 784  # Every pixel its own value, to follow where each one goes.
    data = data._replace(train=LabeledImages(distinct, data.train.y))
    stream = permuted_stream(data, 3, seed=5)
    np.testing.assert_array_equal(stream.train_x[0], data.train.x)
    for e in (1, 2):  # A permutation of the pixels, the same one for train and test.
        np.testing.assert_array_equal(np.sort(stream.train_x[e][0]), np.sort(data.train.x[0]))
        assert not np.array_equal(stream.train_x[e], data.train.x)
        source = np.round(stream.train_x[e][0] * 784).astype(int)  # output pixel i shows input pixel source[i]
        np.testing.assert_array_equal(stream.test_x[e], data.test.x[:, source])
    np.testing.assert_array_equal(stream.train_y[1], data.train.y)
    task_il = permuted_stream(data, 3, "task-il")
    assert task_il.num_outputs == 30 and task_il.train_y[2].min() == 20
    with pytest.raises(ValueError, match="permuted-mnist supports the scenarios domain-il and task-il"):
        permuted_stream(data, 3, "class-il")


def test_gaussian_classes_need_no_files_and_are_balanced():
    data = gaussian_classes(train_per_class=20, test_per_class=5)
    assert data.train.x.shape == (200, 64) and np.bincount(data.test.y).tolist() == [5] * 10


def test_offline_mnist_copy(mnist_dir):
    data = load_mnist(mnist_dir)
    assert data.train.x.shape == (60000, 784) and data.test.x.shape == (10000, 784)
    assert np.bincount(data.test.y).sum() == 10000


def test_split_omniglot_groups_characters_into_experiences():
    from metajax.data.continual_streams import split_omniglot

    bank = np.random.default_rng(0).random((30, 20, 28, 28, 1)).astype(np.float32)
    stream = split_omniglot(bank, "task-il", num_experiences=3, classes_per_experience=4, seed=1)
    assert stream.train_x.shape == (3, 4 * 15, 28, 28, 1) and stream.test_x.shape == (3, 4 * 5, 28, 28, 1)
    assert stream.num_outputs == 12 and stream.logit_mask.sum(axis=1).tolist() == [4, 4, 4]
    assert set(stream.train_y[1]) == {4, 5, 6, 7}
    # Every training row is one of the first 15 drawings of its character, every test row one of the last 5,
    # and one label is one character throughout.
    where = {bank[c, d].tobytes(): (c, d) for c in range(30) for d in range(20)}
    characters = {}
    for x_split, y_split, drawings in (
        (stream.train_x, stream.train_y, range(15)),
        (stream.test_x, stream.test_y, range(15, 20)),
    ):
        for x, label in zip(x_split.reshape(-1, 784), y_split.reshape(-1), strict=True):
            character, drawing = where[x.reshape(28, 28, 1).tobytes()]
            assert drawing in drawings
            assert characters.setdefault(int(label), character) == character
    assert len(set(characters.values())) == 12
    with pytest.raises(ValueError, match="split-omniglot needs 10 x 10 = 100 classes, class_bank has 30 "):
        split_omniglot(bank, "class-il")
