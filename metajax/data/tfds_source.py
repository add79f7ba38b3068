"""Reading a TensorFlow Datasets split record by record, with an error that says how to work offline."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from metajax.data.errors import DataError


def _unresolvable_download_hosts(tfds, name: str) -> list[str]:
    """The hosts of ``name``'s download URLs (from TFDS's checksums) that DNS cannot resolve.

    Without a network TFDS retries each download for minutes (urllib3's ten
    retries with backoff, per file) before it fails; a host that does not
    resolve says the same in milliseconds. Empty when the URLs are unknown.
    """
    try:
        urls = tfds.builder_cls(name).url_infos or {}
    except Exception:  # A builder without a checksums file: let TFDS itself try.
        return []
    unresolvable = []
    for host in sorted({urlparse(url).hostname for url in urls} - {None}):
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            unresolvable.append(host)
    return unresolvable


def tfds_records(name: str, split: str, tfds_data_dir: str | None, *, offline_hint: str) -> list[dict]:
    """Every record of ``name``/``split`` through ``tfds.data_source`` (no TensorFlow needed at run time).

    Records are read one by one: TFDS's batched ``__getitems__`` is not
    supported by its own test mocks.

    Raises:
      DataError: TFDS could neither find nor download the data (at once when
        the download hosts do not resolve); the message names where it looked
        and ends with ``offline_hint``.
    """
    import tensorflow_datasets as tfds  # Lazy: accelerator images often lack it.

    where = tfds_data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    try:
        source = tfds.data_source(name, split=split, data_dir=tfds_data_dir, download=False)
    except Exception:  # Not prepared there yet (TFDS raises a KeyError for that): download it.
        unresolvable = _unresolvable_download_hosts(tfds, name)
        if unresolvable:
            hosts = f"host {unresolvable[0]} does" if len(unresolvable) == 1 else f"hosts {', '.join(unresolvable)} do"
            raise DataError(
                f"could not load {name} with TensorFlow Datasets: it is not in {where}, and its download "
                f"{hosts} not resolve (no network?). {offline_hint}"
            ) from None
        try:
            source = tfds.data_source(name, split=split, data_dir=tfds_data_dir, download=True)
        except Exception as error:  # TFDS raises many kinds (network, missing builder, permissions).
            raise DataError(
                f"could not load {name} with TensorFlow Datasets (looked in {where}, then tried to download): "
                f"{type(error).__name__}: {error}. {offline_hint}"
            ) from None
    return [source[index] for index in range(len(source))]
