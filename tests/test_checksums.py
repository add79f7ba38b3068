"""Data files checked against a SHA256SUMS list beside them: a mismatch names the file."""

import hashlib
import shutil

import numpy as np
import pytest

from metajax.cli import main
from metajax.data import DataError
from metajax.data.checksums import expected_digest, verify_checksum
from metajax.data.mnist import load_mnist


def _tiny_mnist(folder):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(
        folder / "mnist.npz",
        x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        y_train=np.arange(20, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10, dtype=np.uint8),
    )
    return folder / "mnist.npz"


def _write_sums(folder, *paths):
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder)}" for p in paths]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("sums_in_parent", [True, False])
def test_a_listed_file_that_matches_loads(tmp_path, sums_in_parent):
    path = _tiny_mnist(tmp_path / "mnist")
    _write_sums(tmp_path if sums_in_parent else tmp_path / "mnist", path)
    assert load_mnist(tmp_path / "mnist").train.x.shape == (20, 784)


def test_a_changed_file_is_refused_naming_it_and_both_digests(tmp_path):
    path = _tiny_mnist(tmp_path / "mnist")
    _write_sums(tmp_path, path)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # One flipped byte inside x_test: still a readable npz.
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(DataError, match=rf"{path} does not match its checksum in .*SHA256SUMS: sha256 {actual}, "):
        load_mnist(tmp_path / "mnist")
    with pytest.raises(DataError, match=f"expected {expected}"):
        verify_checksum(path)


def test_files_the_list_does_not_name_and_folders_without_a_list_are_not_checked(tmp_path):
    path = _tiny_mnist(tmp_path / "mnist")
    verify_checksum(path)  # No list anywhere.
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other/file.npz\n")
    verify_checksum(path)


def test_a_malformed_list_names_its_line(tmp_path):
    path = _tiny_mnist(tmp_path / "mnist")
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other.npz\nnot a checksum line\n")
    with pytest.raises(DataError, match=r"SHA256SUMS, line 2: expected '<sha256 hex>  <file>'"):
        verify_checksum(path)


def test_the_command_reports_a_corrupt_copy_in_one_line(omniglot_dir, tmp_path, capsys):
    copy = tmp_path / "omniglot"
    shutil.copytree(omniglot_dir, copy)
    _write_sums(tmp_path, copy / "images_background.npz", copy / "images_evaluation.npz")
    (copy / "images_evaluation.npz").chmod(0o644)
    with (copy / "images_evaluation.npz").open("r+b") as file:
        file.seek(1000)
        file.write(b"\0" * 8)
    args = ["reptile", "--dataset", "omniglot", "--data-dir", str(copy), "--dry-run", "--workdir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{copy / 'images_evaluation.npz'} does not match its checksum" in err


def test_the_shared_offline_copy_matches_its_list(shared_data_dir):
    for line in (shared_data_dir / "SHA256SUMS").read_text().splitlines():
        path = shared_data_dir / line.split()[1]
        assert expected_digest(path) is not None, f"{path} is not found in its list"
        verify_checksum(path)
