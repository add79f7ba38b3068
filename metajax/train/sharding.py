"""Spreading a run's independent axis (tasks, runs, examples) over the local devices.

A one-axis ``jax.sharding.Mesh`` of the devices, and a constraint that splits
an array's leading axis over it. Under ``jit`` XLA's partitioner then runs
each device's slice of a ``vmap`` over that axis locally, replicating the
weights and reducing what the step averages over the axis (the meta-gradient)
across devices. On one device both are no-ops.

Several hosts (``metajax --coordinator``, README "More than one device"):
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
        if array.ndim == 0 or array.shape[0] % mesh.size:
            return array
        return jax.lax.with_sharding_constraint(array, NamedSharding(mesh, PartitionSpec(axis_name)))

    return jax.tree.map(constrain, tree)


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
