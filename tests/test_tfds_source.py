"""Reading through TensorFlow Datasets: prepared data first, and no minutes of retries without a network."""

import socket

import pytest
import tensorflow_datasets as tfds

from metajax.data import DataError
from metajax.data.tfds_source import tfds_records


class _FakeSource:
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return {"index": index}


def _data_source(calls, *, prepared):
    def data_source(name, *, split, data_dir, download):
        calls.append(download)
        if prepared or download:
            return _FakeSource()
        raise KeyError("Trying to access `splits['train']` but `splits` is empty.")  # What TFDS raises.

    return data_source


def test_prepared_data_is_read_without_looking_up_any_host(monkeypatch):
    calls = []
    monkeypatch.setattr(tfds, "data_source", _data_source(calls, prepared=True))

    def no_lookup(*args, **kwargs):
        raise AssertionError("looked up a host for data that is already prepared")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    assert tfds_records("mnist", "train", None, offline_hint="hint") == [{"index": i} for i in range(3)]
    assert calls == [False]


def test_data_not_prepared_is_downloaded_when_its_host_resolves(monkeypatch):
    calls, looked_up = [], []
    monkeypatch.setattr(tfds, "data_source", _data_source(calls, prepared=False))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port: looked_up.append(host) or [])
    assert len(tfds_records("omniglot", "train", None, offline_hint="hint")) == 3
    assert calls == [False, True]
    assert looked_up == ["github.com"]  # Omniglot's download URLs, from TFDS's checksums.


@pytest.mark.parametrize("name, host", [("omniglot", "github.com"), ("mnist", "storage.googleapis.com")])
def test_no_network_fails_at_once_naming_the_host_and_the_way_offline(monkeypatch, tmp_path, name, host):
    calls = []
    monkeypatch.setattr(tfds, "data_source", _data_source(calls, prepared=False))

    def unresolvable(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    message = rf"could not load {name} .* not in {tmp_path}, and its download host {host} does not resolve .*--data"
    with pytest.raises(DataError, match=message):
        tfds_records(name, "train", str(tmp_path), offline_hint="Pass --data-dir.")
    assert calls == [False]  # TFDS's download, which retries for minutes, never started.
