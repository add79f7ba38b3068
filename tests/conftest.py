"""Strict test settings: silent rank promotion is a bug, warnings are errors."""

import os

# Several CPU devices for tests that shard; must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One compilation cache for the whole test session: in-process, in xdist's workers and in the
# subprocesses the tests start (they inherit the environment): many tests
# compile the same programs (a run, its killed twin, its resume), and on two
# CPU cores compiling is most of their time. Measured on tests/test_runs.py -k
# killed: 91 s without, 54 s with. A fresh folder per session, so no run is
# served from another version's programs; a folder the caller set is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _compilation_cache = tempfile.mkdtemp(prefix="metajax-tests-jax-cache-")
    atexit.register(shutil.rmtree, _compilation_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _compilation_cache
    # Cache every program, not only those over JAX's 1 s / size thresholds.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # Turn warnings into errors, except known third-party noise named here.
    config.addinivalue_line("filterwarnings", "error")
    for known in (
        # TFDS and its absl/etils stack on import.
        "ignore::DeprecationWarning:tensorflow_datasets.*",
        "ignore::DeprecationWarning:etils.*",
        "ignore::DeprecationWarning:absl.*",
        "ignore::DeprecationWarning:google.protobuf.*",
        "ignore::FutureWarning:tensorflow_datasets.*",
        # pytest-benchmark, where installed, says it is off under xdist's workers (-n 2).
        "ignore:Benchmarks are automatically disabled",
    ):
        config.addinivalue_line("filterwarnings", known)


def _offline_copy(folder_name: str, marker_file: str, dataset: str) -> Path:
    """A dataset folder of the offline copy beside the repository; skips the test when it is absent."""
    folder = SHARED_DATA / folder_name
    if not (folder / marker_file).exists():
        pytest.skip(f"offline {dataset} not found at {folder} (see ../shared/data/README.md)")
    return folder


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The offline copy's folder, with its SHA256SUMS list."""
    return _offline_copy(".", "SHA256SUMS", "data list")


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    return _offline_copy("omniglot", "images_background.npz", "Omniglot")


@pytest.fixture(scope="session")
def census_dir() -> Path:
    return _offline_copy("census_income", "census-income.test.gz", "census-income")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _offline_copy("mnist", "mnist.npz", "MNIST")
