"""Omniglot from local files and from TFDS (mocked): the same arrays, clear errors."""

import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from metajax.data import DataError, load_omniglot
from metajax.data.omniglot import RAW_SIZE, with_rotations

CHARACTERS = {"train": 3, "test": 2}


def _raw_split(seed, characters):
    """Paper-white (True) images with a random ink blob, the layout of the npz files."""
    rng = np.random.default_rng(seed)
    images = np.ones((characters, 20, RAW_SIZE, RAW_SIZE), bool)
    for c in range(characters):
        for e in range(20):
            top, left = rng.integers(10, 60, size=2)
            images[c, e, top : top + 30, left : left + 20] = False
    labels = np.arange(characters)[:, None].repeat(20, 1) + seed * 100
    return images, labels


@pytest.fixture
def raw_splits():
    return {split: _raw_split(seed, CHARACTERS[split]) for seed, split in enumerate(("train", "test"))}


@pytest.fixture
def local_dir(tmp_path, raw_splits):
    for split, name in (("train", "images_background.npz"), ("test", "images_evaluation.npz")):
        images, labels = raw_splits[split]
        np.savez_compressed(tmp_path / name, images=images, labels=labels)
    return tmp_path


def test_local_files_give_28x28_ink_banks_with_rotated_training_classes(local_dir, raw_splits):
    banks = load_omniglot(local_dir)
    assert banks.train.shape == (4 * 3, 20, 28, 28, 1) and banks.test.shape == (2, 20, 28, 28, 1)
    assert banks.train.dtype == np.float32
    assert 0.0 <= banks.train.min() and banks.train.max() <= 1.0
    # Ink fraction survives resizing (30x20 ink pixels of 105x105).
    np.testing.assert_allclose(banks.test.mean(), 600 / RAW_SIZE**2, rtol=0.05)
    for k in range(4):  # Class c rotated by k * 90 degrees is class k * 3 + c.
        np.testing.assert_array_equal(banks.train[3 * k : 3 * (k + 1)], np.rot90(banks.train[:3], k, axes=(2, 3)))


def test_random_split_pools_the_characters_and_draws_them_by_seed(local_dir):
    background = load_omniglot(local_dir)
    pooled = np.concatenate([background.train[:3], background.test])  # Unrotated characters.
    banks = load_omniglot(local_dir, split="random", random_split_train_classes=3)
    assert banks.train.shape == (4 * 3, 20, 28, 28, 1) and banks.test.shape == (2, 20, 28, 28, 1)
    drawn = np.concatenate([banks.train[:3], banks.test])
    # Every character exactly once, training ones rotated, test ones not.
    assert sorted(c.tobytes() for c in drawn) == sorted(c.tobytes() for c in pooled)
    np.testing.assert_array_equal(banks.train[3:6], np.rot90(banks.train[:3], 1, axes=(2, 3)))
    again = load_omniglot(local_dir, split="random", random_split_train_classes=3)
    np.testing.assert_array_equal(again.test, banks.test)
    orders = {
        load_omniglot(local_dir, split="random", split_seed=seed, random_split_train_classes=3).test.tobytes()
        for seed in range(6)
    }
    assert len(orders) > 1, "the split seed does not change the draw"


def test_unknown_split_and_too_few_characters_are_refused(local_dir):
    with pytest.raises(ValueError, match="split must be one of background, random, got 'alphabet'"):
        load_omniglot(local_dir, split="alphabet")
    with pytest.raises(DataError, match="needs more than 1200 characters, the data has 5"):
        load_omniglot(local_dir, split="random")


def test_tfds_source_gives_the_same_arrays_as_local_files(local_dir, raw_splits, monkeypatch):
    """TFDS's Omniglot records are RGB PNGs with white paper; feed the same images through mocked TFDS."""

    def records_for(split):
        images, labels = raw_splits["train" if split == "train" else "test"]
        rgb = np.where(images[..., None], 255, 0).astype(np.uint8).repeat(3, -1).reshape(-1, RAW_SIZE, RAW_SIZE, 3)
        order = np.random.default_rng(0).permutation(len(rgb))  # TFDS does not group by class.
        return [{"image": rgb[i], "label": labels.reshape(-1)[i], "alphabet": 0, "alphabet_char_id": 0} for i in order]

    requested = []

    def fake_getitem(self, record_key, generator, serialized=False):
        return records_for(requested[-1])[record_key]

    original_data_source = tfds.data_source

    def tracking_data_source(name, *, split, **kwargs):
        requested.append(split)
        source = original_data_source(name, split=split, **kwargs)
        source.data_source.__len__.return_value = CHARACTERS[split] * 20
        return source

    monkeypatch.setattr(mocking, "_getitem", fake_getitem)
    monkeypatch.setattr(tfds, "data_source", tracking_data_source)
    with tfds.testing.mock_data(num_examples=1):
        from_tfds = load_omniglot(None)
    from_files = load_omniglot(local_dir)
    assert requested == ["train", "test"]
    np.testing.assert_allclose(from_tfds.train, from_files.train, atol=1e-6)
    np.testing.assert_allclose(from_tfds.test, from_files.test, atol=1e-6)


def test_tfds_records_that_are_not_omniglot_are_refused():
    # The automatic mock draws random labels: classes without 20 drawings each.
    with tfds.testing.mock_data(num_examples=40), pytest.raises(DataError, match="TFDS omniglot/train: class"):
        load_omniglot(None)


@pytest.mark.parametrize("dataset", ["omniglot", "mnist"])
def test_tfds_can_prepare_a_download(dataset):
    """A TFDS builder finds its own code before it downloads: on Python >= 3.9 that needs
    ``importlib_resources``, which TFDS does not declare (tensorflow/datasets#11212), so
    metajax does; without it ``--dataset omniglot`` with a network fails before downloading."""
    assert tfds.builder_cls(dataset).code_path.name == f"{dataset}.py"


def test_tfds_failure_says_how_to_work_offline(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "data_source", offline)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [])  # The host resolves; the download fails.
    with pytest.raises(DataError, match=rf"looked in {tmp_path}.*ConnectionError: no network.*--data-dir"):
        load_omniglot(None, tfds_data_dir=str(tmp_path))


def test_missing_folder_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"Omniglot data folder {missing} does not exist.*--data-dir"):
        load_omniglot(missing)


def test_missing_file_names_it(local_dir):
    (local_dir / "images_evaluation.npz").unlink()
    with pytest.raises(DataError, match=r"Omniglot file not found: .*images_evaluation\.npz"):
        load_omniglot(local_dir)


def test_corrupt_file_names_it(local_dir):
    (local_dir / "images_background.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"images_background\.npz is unreadable"):
        load_omniglot(local_dir)


def test_wrong_image_shape_names_file_and_shape(local_dir):
    np.savez(local_dir / "images_background.npz", images=np.ones((3, 20, 28, 28), bool), labels=np.zeros((3, 20)))
    with pytest.raises(DataError, match=r"images_background\.npz: 'images' has shape \(3, 20, 28, 28\), expected"):
        load_omniglot(local_dir)


def test_rotations_are_new_classes():
    bank = np.arange(2 * 20 * 4 * 4, dtype=np.float32).reshape(2, 20, 4, 4, 1)
    rotated = with_rotations(bank)
    assert rotated.shape == (8, 20, 4, 4, 1)
    np.testing.assert_array_equal(rotated[2], np.rot90(bank[0], 1, axes=(1, 2)))


def test_shared_offline_copy(omniglot_dir):
    banks = load_omniglot(omniglot_dir)
    assert banks.train.shape == (964 * 4, 20, 28, 28, 1)
    assert banks.test.shape == (659, 20, 28, 28, 1)
    paper_split = load_omniglot(omniglot_dir, split="random")
    assert paper_split.train.shape == (1200 * 4, 20, 28, 28, 1) and paper_split.test.shape == (423, 20, 28, 28, 1)
    # The same 1623 characters, drawn apart.
    np.testing.assert_allclose(
        paper_split.train[:1200].sum() + paper_split.test.sum(), banks.train[:964].sum() + banks.test.sum(), rtol=1e-5
    )
    # Ink is the minority of pixels in every drawing.
    ink = banks.test.mean(axis=(2, 3, 4))
    assert 0.02 < ink.mean() < 0.3 and ink.min() > 0
