"""Checks local data files against a ``SHA256SUMS`` list kept beside them.

A data folder may come with a ``SHA256SUMS`` file in the format ``sha256sum``
writes (``<hex digest>  <path relative to the list's folder>`` per line), in
the folder itself or in its parent (as ``../shared/data`` has one for its
``omniglot/``, ``mnist/`` and ``census_income/`` folders). A file the list names
must match its digest; a file it does not name, or a folder without a list, is
only checked for its format by the loaders. ``sha256sum -c SHA256SUMS`` makes
such a list for one's own copies (``sha256sum */* > SHA256SUMS``).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from metajax.data.errors import DataError

SUMS_FILE = "SHA256SUMS"


def _sums_files(path: Path) -> list[Path]:
    return [folder / SUMS_FILE for folder in (path.parent, path.parent.parent) if (folder / SUMS_FILE).is_file()]


def expected_digest(path: Path) -> tuple[str, Path] | None:
    """The digest a nearby ``SHA256SUMS`` lists for ``path``, and that list; ``None`` if none does."""
    path = path.resolve()
    for sums in _sums_files(path):
        for number, line in enumerate(sums.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            digest, _, name = line.partition(" ")
            name = name.strip().lstrip("*")  # sha256sum marks binary mode with '*'.
            if not name or len(digest) != 64:
                raise DataError(f"{sums}, line {number}: expected '<sha256 hex>  <file>', got {line!r}")
            if (sums.parent / name).resolve() == path:
                return digest.lower(), sums
    return None


@functools.lru_cache(maxsize=32)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Keyed by size and modification time too, so a replaced file is hashed again.
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | Path) -> None:
    """Raises ``DataError`` naming ``path`` if a nearby ``SHA256SUMS`` lists another digest for it."""
    path = Path(path)
    expected = expected_digest(path)
    if expected is None or not path.is_file():  # Missing files are the loaders' to report.
        return
    digest, sums = expected
    stat = path.stat()
    actual = _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if actual != digest:
        raise DataError(
            f"{path} does not match its checksum in {sums}: sha256 {actual}, expected {digest}; the file is "
            "corrupt or a different version: replace it with an intact copy (or, if it is your own data, "
            f"update {sums.name})"
        )
