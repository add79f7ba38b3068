"""metajax: meta-learning, multi-task and continual learning in pure JAX."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metajax")
except PackageNotFoundError:  # Running from a source tree that was not installed.
    __version__ = "0.1.0.dev0"
