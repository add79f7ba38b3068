"""Reading a TensorFlow Datasets split record by record, with an error that says how to work offline."""

from __future__ import annotations

import os

from metajax.data.errors import DataError


def tfds_records(name: str, split: str, tfds_data_dir: str | None, *, offline_hint: str) -> list[dict]:
    """Every record of ``name``/``split`` through ``tfds.data_source`` (no TensorFlow needed at run time).

    Records are read one by one: TFDS's batched ``__getitems__`` is not
    supported by its own test mocks.

    Raises:
      DataError: TFDS could neither find nor download the data; the message
        names where it looked and ends with ``offline_hint``.
    """
    import tensorflow_datasets as tfds  # Lazy: accelerator images often lack it.

    try:
        source = tfds.data_source(name, split=split, data_dir=tfds_data_dir, download=True)
    except Exception as error:  # TFDS raises many kinds (network, missing builder, permissions).
        where = tfds_data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise DataError(
            f"could not load {name} with TensorFlow Datasets (looked in {where}, then tried to download): "
            f"{type(error).__name__}: {error}. {offline_hint}"
        ) from None
    return [source[index] for index in range(len(source))]
