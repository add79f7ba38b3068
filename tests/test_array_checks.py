"""Public functions check their array arguments at trace time: the error names the argument,
the expected and the actual shape (or dtype), jitted and not."""

import re
from functools import partial

import jax
import jax.numpy as jnp
import optax
import pytest

from metajax.array_checks import check_array, check_key
from metajax.continual import diagonal_fisher, masked_cross_entropy
from metajax.meta import maml, protonets, reptile, softmax_cross_entropy
from metajax.meta import mean_squared_error as meta_mse
from metajax.meta.protonets import prototype_logits, prototypes
from metajax.models import MLP
from metajax.multitask import binary_cross_entropy, project_conflicting
from metajax.multitask import mean_squared_error as task_mse

F32, I32 = jnp.float32, jnp.int32
KEY = jax.random.key(0)


def _zeros(shape, dtype=F32):
    return jnp.zeros(shape, dtype)


_MLP = MLP((4,), 3)
_PARAMS = _MLP.init(KEY, _zeros((1, 2)))
_REPTILE = reptile(_MLP.apply, softmax_cross_entropy, inner_optimizer=optax.sgd(0.1), inner_steps=1, inner_batch=2)
_MAML = maml(_MLP.apply, softmax_cross_entropy, inner_lr=0.1, inner_steps=1, outer_optimizer=optax.sgd(0.1))
_PROTONETS = protonets(_MLP.apply, ways=3, outer_optimizer=optax.sgd(0.1))


def _adapt(learner, support_x, support_y, key):
    return learner.adapt(learner.init(_PARAMS), support_x, support_y, key=key)


BAD_CALLS = {
    "cross-entropy labels [b, 1]": (
        softmax_cross_entropy, (_zeros((4, 3)), _zeros((4, 1), I32)),
        ValueError, r"labels must have shape \[batch\] = \(4,\), got shape \(4, 1\)",
    ),
    "cross-entropy float labels": (
        softmax_cross_entropy, (_zeros((4, 3)), _zeros((4,))),
        TypeError, r"labels must be an integer array, got dtype float32",
    ),
    "cross-entropy logits rank 1": (
        softmax_cross_entropy, (_zeros((4,)), _zeros((4,), I32)),
        ValueError, r"logits must have shape \[batch, classes\] = \(any, any\), got shape \(4,\)",
    ),
    "regression loss broadcasting": (
        meta_mse, (_zeros((5, 1)), _zeros((5,))),
        ValueError, r"predictions and targets must have the same shape, got \(5, 1\) and \(5,\)",
    ),
    "reptile adapt support_y rows": (
        partial(_adapt, _REPTILE), (_zeros((6, 2)), _zeros((5,), I32), KEY),
        ValueError, r"support_y must have shape \[support_size, \.\.\.\] = \(6, \.\.\.\), got shape \(5,\)",
    ),
    "reptile adapt support_x rank": (
        partial(_adapt, _REPTILE), (_zeros((6,)), _zeros((6,), I32), KEY),
        ValueError,
        r"support_x must have shape \[support_size, \*example_shape\] = \(any, any, \.\.\.\), got shape \(6,\)",
    ),
    "reptile adapt integer key": (
        partial(_adapt, _REPTILE), (_zeros((6, 2)), _zeros((6,), I32), 3),
        TypeError, r"key must be a random key \(jax\.random\.key\(seed\)\), got",
    ),
    "maml adapt support_y rows": (
        partial(_adapt, _MAML), (_zeros((6, 2)), _zeros((2,), I32), KEY),
        ValueError, r"support_y must have shape \[support_size, \.\.\.\] = \(6, \.\.\.\), got shape \(2,\)",
    ),
    "protonets adapt support_y rows": (
        partial(_adapt, _PROTONETS), (_zeros((6, 2)), _zeros((2,), I32), KEY), ValueError, r"support_y must have shape",
    ),
    "prototypes labels length": (
        partial(prototypes, ways=3), (_zeros((6, 8)), _zeros((5,), I32)),
        ValueError, r"labels must have shape \[n\] = \(6,\), got shape \(5,\)",
    ),
    "prototype logits dim": (
        prototype_logits, (_zeros((4, 7)), _zeros((3, 8))),
        ValueError, r"query_embeddings must have shape \[queries, dim\] = \(any, 8\), got shape \(4, 7\)",
    ),
    "binary cross-entropy labels shape": (
        binary_cross_entropy, (_zeros((8,)), _zeros((8, 1))),
        ValueError, r"logits and labels must have the same shape, got \(8,\) and \(8, 1\)",
    ),
    "multitask regression rank": (
        task_mse, (_zeros((8, 2)), _zeros((8, 2))),
        ValueError, r"predictions must have shape \[batch\] = \(any,\), got shape \(8, 2\)",
    ),
    "pcgrad gradients rank": (
        partial(project_conflicting, key=KEY), (_zeros((10,)),),
        ValueError, r"task_gradients must have shape \[tasks, parameters\]",
    ),
    "masked cross-entropy mask width": (
        masked_cross_entropy, (_zeros((4, 10)), _zeros((4,), I32), jnp.ones((4, 9), bool), jnp.ones((4,))),
        ValueError, r"logit_mask must have shape \[b, outputs\] or \[outputs\] = \(4, 10\), got shape \(4, 9\)",
    ),
    "masked cross-entropy weight length": (
        masked_cross_entropy, (_zeros((4, 10)), _zeros((4,), I32), jnp.ones((10,), bool), jnp.ones((3,))),
        ValueError, r"weight must have shape \[b\] = \(4,\), got shape \(3,\)",
    ),
    "fisher labels length": (
        partial(diagonal_fisher, _MLP.apply, _PARAMS), (_zeros((6, 2)), _zeros((5,), I32), jnp.ones((3,), bool)),
        ValueError, r"y must have shape \[examples\] = \(6,\), got shape \(5,\)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_arguments_are_named_with_expected_and_actual_shapes(case, jit):
    function, args, error, message = BAD_CALLS[case]
    with pytest.raises(error, match=message):
        (jax.jit(function) if jit else function)(*args)


def test_well_formed_arguments_pass():
    assert check_array("x", _zeros((3, 4, 5)), (3, ...)) == (3, 4, 5)
    assert check_array("x", _zeros((3, 4)), (None, 4), dtype="floating") == (3, 4)
    check_key("key", KEY)
    check_key("key", jax.random.PRNGKey(0))  # The raw uint32[2] form.
    assert softmax_cross_entropy(_zeros((4, 3)), _zeros((4,), I32)) == pytest.approx(jnp.log(3.0))


def test_a_batch_of_keys_is_not_one_key():
    with pytest.raises(ValueError, match=re.escape("key must be a single random key, got a key array of shape (2,)")):
        check_key("key", jax.random.split(KEY))
