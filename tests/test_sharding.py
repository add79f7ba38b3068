"""Laying a run's arrays out over a mesh of the 4 forced CPU devices (conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from metajax.train.sharding import device_mesh, place_leading_axis, place_replicated, shard_leading_axis, to_host


def _tree():
    return {
        "split": jnp.arange(8.0 * 3).reshape(8, 3),  # 8 rows divide over 4 devices
        "uneven": jnp.arange(6.0),  # 6 do not: stays whole on every device
        "scalar": jnp.asarray(2.0),
        "keys": jax.random.split(jax.random.key(0), 4),  # typed PRNG keys
    }


def _spec(array):
    assert isinstance(array.sharding, NamedSharding)
    return array.sharding.spec


def test_device_mesh_defaults_to_one_cpu_device_and_checks_the_count():
    assert len(jax.devices()) == 4
    assert device_mesh().size == 1  # several CPU devices share the same cores
    assert device_mesh(4).size == 4
    with pytest.raises(ValueError, match="devices must be between 1 and the 4 available, got 5"):
        device_mesh(5)


def test_place_replicated_puts_every_array_whole_on_every_device():
    tree = _tree()
    placed = place_replicated(tree, device_mesh(4))
    for name, array in placed.items():
        assert array.sharding.is_fully_replicated, name
    np.testing.assert_array_equal(placed["split"], tree["split"])
    assert jnp.array_equal(jax.random.key_data(placed["keys"]), jax.random.key_data(tree["keys"]))
    assert place_replicated(tree, device_mesh(1)) is tree  # one device: as it was


def test_place_leading_axis_splits_what_divides_and_keeps_the_rest_whole():
    tree = _tree()
    placed = place_leading_axis(tree, device_mesh(4))
    assert _spec(placed["split"]) == PartitionSpec("batch")
    assert len(placed["split"].addressable_shards) == 4
    assert placed["split"].addressable_shards[1].data.shape == (2, 3)
    assert _spec(placed["keys"]) == PartitionSpec("batch")
    assert jax.dtypes.issubdtype(placed["keys"].dtype, jax.dtypes.prng_key)
    for name in ("uneven", "scalar"):
        assert placed[name].sharding.is_fully_replicated, name
    for name in ("split", "uneven", "scalar"):
        np.testing.assert_array_equal(to_host(placed[name]), tree[name])


def test_placement_matches_what_a_jitted_step_returns():
    """Placed as a jitted function returns them, its second call needs no new compilation."""
    mesh = device_mesh(4)

    @jax.jit
    def step(tree):
        tree = shard_leading_axis(tree, mesh)
        return jax.tree.map(lambda a: a + 1, tree)

    tree = {"split": jnp.zeros((8, 3)), "uneven": jnp.zeros((6,))}
    out = step(place_leading_axis(tree, mesh))
    step(out)
    assert step._cache_size() == 1
    assert _spec(out["split"]) == PartitionSpec("batch")
