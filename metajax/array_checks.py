"""Trace-time checks of array arguments, with errors that name the argument.

Shapes are static under ``jit``, so these run once per compilation and cost
nothing per step. Errors are ``ValueError`` (shapes) and ``TypeError``
(dtypes, keys) with the argument's name, the expected and the actual value,
rather than chex's ``AssertionError``: callers and the command line catch
them as the bad input they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import EllipsisType

import jax
import jax.numpy as jnp

DTYPE_KINDS = {"floating": jnp.floating, "integer": jnp.integer, "bool": jnp.bool_}
DTYPE_WORDS = {"floating": "a floating-point", "integer": "an integer", "bool": "a boolean"}


def check_array(
    name: str,
    value,
    expected: Sequence[int | None | EllipsisType] | None = None,
    description: str | None = None,
    *,
    dtype: str | None = None,
) -> tuple[int, ...]:
    """Checks ``value``'s shape against ``expected`` and its dtype's kind; returns the shape.

    Args:
      name: the argument's name, as the caller's signature spells it.
      value: an array (or anything ``jnp.shape`` takes).
      expected: one entry per axis, an int or ``None`` for any size; a last
        entry ``...`` allows any number of further axes.
      description: the expected shape in words, e.g. ``"[batch, classes]"``.
      dtype: ``"floating"``, ``"integer"`` or ``"bool"``, the kind the dtype must be.

    Raises:
      ValueError: the shape does not match, naming ``name``, the expected and the actual shape.
      TypeError: the dtype is not of the kind asked for.
    """
    actual = tuple(jnp.shape(value))
    if expected is not None:
        expected = tuple(expected)
        open_ended = bool(expected) and expected[-1] is Ellipsis
        fixed = expected[:-1] if open_ended else expected
        rank_ok = len(actual) >= len(fixed) if open_ended else len(actual) == len(fixed)
        if not rank_ok or any(e is not None and e != a for e, a in zip(fixed, actual, strict=False)):
            wanted = ", ".join("..." if e is Ellipsis else "any" if e is None else str(e) for e in expected)
            wanted += "," if len(expected) == 1 else ""
            words = f"{description} = " if description else ""
            raise ValueError(f"{name} must have shape {words}({wanted}), got shape {actual}")
    if dtype is not None:
        actual_dtype = jnp.result_type(value)
        if not jnp.issubdtype(actual_dtype, DTYPE_KINDS[dtype]):
            raise TypeError(f"{name} must be {DTYPE_WORDS[dtype]} array, got dtype {actual_dtype}")
    return actual


def check_same_shape(names: tuple[str, str], first, second) -> tuple[int, ...]:
    """Checks that two arrays have one shape (no silent broadcasting of ``[n, 1]`` against ``[n]``)."""
    first_shape, second_shape = tuple(jnp.shape(first)), tuple(jnp.shape(second))
    if first_shape != second_shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {first_shape} and {second_shape}")
    return first_shape


def check_key(name: str, key) -> None:
    """Checks that ``key`` is a ``jax.random`` key: a typed key, or a raw ``uint32[2]`` one."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{name} must be a single random key, got a key array of shape {key.shape}")
        return
    if hasattr(key, "shape") and hasattr(key, "dtype"):
        if key.dtype == jnp.uint32 and tuple(key.shape) == (2,):  # A raw jax.random.PRNGKey.
            return
        got = f"an array of dtype {key.dtype} and shape {tuple(key.shape)}"
    else:
        got = type(key).__name__
    raise TypeError(f"{name} must be a random key (jax.random.key(seed)), got {got}")


def is_traced(value) -> bool:
    """Whether a hyperparameter is a tracer (a swept value, ``metajax.train.sweeps``): its range was
    checked on the concrete values before tracing, and Python cannot compare it."""
    return isinstance(value, jax.core.Tracer)
