"""Spreading a run's independent axis (tasks, runs, examples) over the local devices.

A one-axis ``jax.sharding.Mesh`` of the devices, and a constraint that splits
an array's leading axis over it. Under ``jit`` XLA's partitioner then runs
each device's slice of a ``vmap`` over that axis locally, replicating the
weights and reducing what the step averages over the axis (the meta-gradient)
across devices. On one device both are no-ops.

Several hosts (``metajax --coordinator``, docs/guides/many_devices.md):
``jax.devices()`` then lists every host's devices and the same mesh spans
them. Every process runs the same program on the same data and keys, so all
compute the same results; arrays split over other hosts' devices are gathered
with ``to_host``, and only the primary process writes the run's files.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def device_mesh(num_devices: int | None = None, axis_name: str = "batch") -> Mesh:
    """A one-axis mesh of the first ``num_devices`` devices.

    The default is every accelerator, or ONE device on a CPU: several CPU
    devices (``--xla_force_host_platform_device_count``) share the same cores,
    so there is little to gain (MAML's meta-batch over 4 of them: 1.10x, in
    benchmarks/device_scaling.py). Ask for them explicitly to test sharding.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = 1 if devices[0].platform == "cpu" else len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"devices must be between 1 and the {len(devices)} available, got {num_devices}")
    return Mesh(np.asarray(devices[:num_devices]), (axis_name,))


def shard_leading_axis(tree, mesh: Mesh):
    """Constrains every array of ``tree`` to be split along its leading axis over ``mesh``.

    An array whose leading axis does not divide evenly stays replicated (it
    would otherwise be padded), so any meta-batch size works on any mesh.
    Use inside ``jit``.
    """
    if mesh.size == 1:
        return tree
    (axis_name,) = mesh.axis_names

    def constrain(array):
        if not _leading_axis_divides(array, mesh):
            return array
        return jax.lax.with_sharding_constraint(array, NamedSharding(mesh, PartitionSpec(axis_name)))

    return jax.tree.map(constrain, tree)


def place_replicated(tree, mesh: Mesh):
    """``tree`` with a copy of every array on each device of ``mesh``: where a step's weights live.

    Use on a run's initial or restored state before its first jitted call. A
    jitted step returns its weights replicated over the mesh; were the first
    call's state on one device, the second call would meet a new input sharding
    and compile the whole step again.
    """
    if mesh.size == 1:
        return tree
    return jax.tree.map(lambda array: _place(array, NamedSharding(mesh, PartitionSpec())), tree)


def place_leading_axis(tree, mesh: Mesh):
    """``tree`` split along its leading axis over ``mesh``, as ``shard_leading_axis`` lays it out, outside ``jit``.

    For the initial state of a run axis (continual seeds), for the reason
    ``place_replicated`` gives; arrays whose leading axis does not divide evenly
    are replicated.
    """
    if mesh.size == 1:
        return tree
    (axis_name,) = mesh.axis_names

    def place(array):
        # PartitionSpec(), not PartitionSpec(None): equal layouts, but jit tells them apart and would compile again.
        spec = PartitionSpec(axis_name) if _leading_axis_divides(array, mesh) else PartitionSpec()
        return _place(array, NamedSharding(mesh, spec))

    return jax.tree.map(place, tree)


def _leading_axis_divides(array, mesh: Mesh) -> bool:
    """Whether ``array`` is split over ``mesh``: a leading axis that divides evenly (else it is padded)."""
    return array.ndim > 0 and array.shape[0] % mesh.size == 0


def _place(array, sharding: NamedSharding):
    """``array``, which every process holds whole and equal, laid out as ``sharding`` says."""
    if isinstance(array, jax.Array) and array.sharding == sharding:  # Already there (it may span hosts).
        return array
    if sharding.is_fully_addressable:
        return jax.device_put(array, sharding)
    # device_put cannot reach other hosts' devices: each process fills its own.
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        data = _place(jax.random.key_data(array), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(array))
    host = np.asarray(array)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def is_primary_process() -> bool:
    """Whether this process writes the run's files: process 0 (the only one without ``--coordinator``)."""
    return jax.process_index() == 0


def to_host(tree):
    """NumPy copies of a pytree's arrays, also of arrays split over several hosts' devices.

    ``jax.device_get`` cannot read an array that spans devices of other
    processes; those are all-gathered (a collective: every process must call
    this at the same point of the program).
    """

    def fetch(array):
        if isinstance(array, jax.Array) and not (array.is_fully_addressable or array.is_fully_replicated):
            return np.asarray(multihost_utils.process_allgather(array, tiled=True))
        return np.asarray(array)

    return jax.tree.map(fetch, tree)
