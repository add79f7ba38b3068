"""metajax: meta-learning, multi-task and continual learning in pure JAX."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metajax")
except PackageNotFoundError:  # Running from a source tree that was not installed.
    __version__ = "0.2.0.dev0"

__all__ = ["load_run"]


def __getattr__(name: str):
    # ``metajax.load_run`` imports the training stack (JAX, flax, orbax) on first use, not on ``import metajax``.
    if name == "load_run":
        from metajax.train.loading import load_run

        return load_run
    raise AttributeError(f"module 'metajax' has no attribute {name!r}")
