"""Seeds and sweeps: many runs of one config trained as one vmapped program.

A run's config may ask for ``seeds`` independent runs and a ``sweep`` over
real-valued hyperparameters (``{"ewc_lambda": (1, 10, 100)}``; several names
make a grid). Every (sweep point, seed) pair is one run; runs lie along a
leading axis of the training state, and the step is ``vmap``ped over it with
each run's hyperparameter values as traced arrays: an algorithm is built inside
the vmapped function from options holding tracers (factories close over
their hyperparameters, so a value they only compute with traces). Runs are
ordered point-major: run ``r`` is point ``r // seeds``, seed ``r % seeds``.

What can be swept: a float field of the config or of the chosen entry's own
hyperparameter dataclass. Integers and names change shapes or programs and
cannot be traced; a factory that branches in Python on a swept value fails
in one line naming it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.options import check_value, flag


def parse_sweep(text: str) -> tuple[str, tuple[float, ...]]:
    """``"ewc-lambda=1,10,100"`` -> ``("ewc_lambda", (1.0, 10.0, 100.0))``: argparse's ``type`` for ``--sweep``."""
    import argparse

    name, equals, values = text.partition("=")
    try:
        parsed = tuple(float(value) for value in values.split(","))
    except ValueError:
        parsed = ()
    if not equals or not name.strip() or not parsed:
        raise argparse.ArgumentTypeError(f"must be NAME=V1,V2,... with numbers, got {text!r}")
    return name.strip().replace("-", "_"), parsed


def sweepable_fields(*owners: Any) -> dict[str, Any]:
    """``{field name: the dataclass instance that holds it}`` of the float fields a sweep may set.

    ``owners``: resolved configs or options (``None``: a method without options); the first owner of a
    name wins.
    """
    found: dict[str, Any] = {}
    for owner in owners:
        if owner is None:
            continue
        for field in dataclasses.fields(owner):
            if "help" in field.metadata and isinstance(getattr(owner, field.name), float):
                found.setdefault(field.name, owner)
    return found


def check_sweep(sweep: Mapping[str, Sequence[float]], sweepable: Mapping[str, Any]) -> dict:
    """The sweep with each value checked against its field's range (one-line ``ValueError``s)."""
    checked = {}
    for name, values in sweep.items():
        if name not in sweepable:
            choices = ", ".join(flag(n) for n in sweepable) or "none"
            raise ValueError(
                f"--sweep {flag(name)}: not a real-valued hyperparameter of this run (sweepable here: {choices})"
            )
        owner = sweepable[name]
        field = next(f for f in dataclasses.fields(owner) if f.name == name)
        values = tuple(check_value(type(owner), field, value) for value in values)
        if len(set(values)) != len(values):
            raise ValueError(f"--sweep {flag(name)} repeats a value: {list(values)}")
        checked[name] = values
    return checked


class RunGrid(NamedTuple):
    """The runs of one config.

    Attributes:
      points: one ``{name: value}`` per sweep point (``[{}]`` without a sweep).
      seeds: runs per point.
    """

    points: tuple[dict[str, float], ...]
    seeds: int

    @property
    def size(self) -> int:
        return len(self.points) * self.seeds

    def values(self, *, squeeze_lone: bool = False) -> dict[str, jax.Array]:
        """``{name: [runs]}`` float32 arrays: each run's value of each swept hyperparameter (with
        ``squeeze_lone``, scalars when there is one run, whose state has no run axis)."""
        names = list(self.points[0])
        values = {name: jnp.asarray([p[name] for p in self.points for _ in range(self.seeds)]) for name in names}
        return {name: v[0] for name, v in values.items()} if squeeze_lone and self.size == 1 else values

    def seed_indices(self) -> np.ndarray:
        """Each run's seed index, 0 to ``seeds - 1`` (the same seeds at every point)."""
        return np.tile(np.arange(self.seeds), len(self.points))

    def describe(self, run: int) -> dict[str, Any]:
        return {"seed_index": int(run % self.seeds), "values": dict(self.points[run // self.seeds])}


def run_grid(sweep: Mapping[str, Sequence[float]], seeds: int) -> RunGrid:
    """Every combination of the swept values (in the order given), each with ``seeds`` runs."""
    names = list(sweep)
    points = tuple(dict(zip(names, combo, strict=True)) for combo in itertools.product(*(sweep[n] for n in names)))
    return RunGrid(points or ({},), seeds)


def with_values(options: Any, values: Mapping[str, jax.Array]) -> Any:
    """``options`` (a dataclass) with those of ``values`` it has set, possibly to tracers (no checks run:
    the concrete values were checked when the config was resolved)."""
    if options is None:
        return None
    own = {f.name for f in dataclasses.fields(options)}
    given = {name: value for name, value in values.items() if name in own}
    if not given:
        return options
    copy = object.__new__(type(options))  # Not through __init__: __post_init__ checks cannot read tracers.
    for field in dataclasses.fields(options):
        object.__setattr__(copy, field.name, given.get(field.name, getattr(options, field.name)))
    return copy


def traced_build(build: Callable[[], Any], swept: Sequence[str]) -> Any:
    """``build()``, turning an error from a factory that branches in Python on a swept value into one line."""
    try:
        return build()
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError) as error:
        names = ", ".join(flag(name) for name in swept)
        raise ValueError(
            f"--sweep {names}: the method branches on this value in Python, so it cannot be traced; "
            "run one value at a time"
        ) from error


def mean_std(values) -> dict[str, float]:
    """``{"mean", "std"}`` of a sequence of numbers (``std`` over the runs, 0 for one)."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def by_point(grid: RunGrid, per_run: Mapping[str, Sequence[float]]) -> list[dict[str, Any]]:
    """For each sweep point: its values and the mean and std over its seeds of each per-run figure."""
    rows = []
    for index, point in enumerate(grid.points):
        runs = slice(index * grid.seeds, (index + 1) * grid.seeds)
        rows.append({"values": dict(point), **{name: mean_std(np.asarray(v)[runs]) for name, v in per_run.items()}})
    return rows
