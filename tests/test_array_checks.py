"""Public functions check their array arguments at trace time: the error names the argument,
the expected and the actual shape (or dtype), jitted and not."""

import re
from functools import partial

import jax
import jax.numpy as jnp
import optax
import pytest

from metajax.array_checks import check_array, check_key
from metajax.continual import continual_learner, diagonal_fisher, masked_cross_entropy, naive
from metajax.continual.replay import buffered_example
from metajax.continual.replay_buffer import BufferedExample, empty_buffer, reservoir_add
from metajax.data import TaskBatch, few_shot_sampler, sinusoid_sampler
from metajax.data.correlated_regression import CorrelatedTaskParameters, correlated_task_examples
from metajax.meta import maml, protonets, reptile, softmax_cross_entropy
from metajax.meta import mean_squared_error as meta_mse
from metajax.meta.base import predict_queries, task_scores
from metajax.meta.protonets import prototype_logits, prototypes
from metajax.models import MLP
from metajax.multitask import binary_cross_entropy, project_conflicting, uncertainty_weighting
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


_CONTINUAL = continual_learner(_MLP.apply, naive(), optax.sgd(0.1), epochs=1, batch_size=2)
_TASKS = TaskBatch(_zeros((2, 6, 2)), _zeros((2, 6), I32), _zeros((2, 3, 2)), _zeros((2, 3), I32))


def _adapt(learner, support_x, support_y, key):
    return learner.adapt(learner.init(_PARAMS), support_x, support_y, key=key)


def _step(learner, tasks, key):
    return learner.step(learner.init(_PARAMS), tasks, key=key)


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
    "maml step empty query set": (
        partial(_step, _MAML), (_TASKS._replace(query_x=_zeros((2, 0, 2)), query_y=_zeros((2, 0), I32)), KEY),
        ValueError, r"tasks.query_x must have shape \[tasks, query_size, \*example_shape\] with query_size >= 1, got",
    ),
    "maml step integer key": (
        partial(_step, _MAML), (_TASKS, 3), TypeError, r"key must be a random key",
    ),
    "protonets step float labels": (
        partial(_step, _PROTONETS), (_TASKS._replace(support_y=_zeros((2, 6)), query_y=_zeros((2, 3))), KEY),
        TypeError, r"tasks.support_y must be an integer array, got dtype float32",
    ),
    "reptile step integer images": (
        partial(_step, _REPTILE), (_TASKS._replace(support_x=_zeros((2, 6, 2), jnp.uint8)), KEY),
        TypeError, r"tasks.support_x must be a floating-point array, got dtype uint8",
    ),
    "reptile step query labels of another dtype": (
        partial(_step, _REPTILE), (_TASKS._replace(query_y=_zeros((2, 3))), KEY),
        TypeError, r"tasks.support_y and tasks.query_y must have one dtype, got int32 and float32",
    ),
    "few-shot sampler integer key": (
        lambda key: few_shot_sampler(_zeros((4, 5, 2)), 2, 1, 1)(key, 3), (7,), TypeError, r"key must be a random key",
    ),
    "sinusoid sampler integer key": (
        lambda key: sinusoid_sampler(5, 5)(key, 3), (7,), TypeError, r"key must be a random key",
    ),
    "continual accuracy labels [e, m, 1]": (
        partial(_CONTINUAL.accuracy, _CONTINUAL.init(_PARAMS)),
        (_zeros((2, 4, 2)), _zeros((2, 4, 1), I32), jnp.ones((2, 4), bool), jnp.ones((2, 3), bool)),
        ValueError, r"test_y must have shape \[experiences, examples\] = \(2, 4\), got shape \(2, 4, 1\)",
    ),
    "continual accuracy float mask": (
        partial(_CONTINUAL.accuracy, _CONTINUAL.init(_PARAMS)),
        (_zeros((2, 4, 2)), _zeros((2, 4), I32), jnp.ones((2, 4)), jnp.ones((2, 3), bool)),
        TypeError, r"test_mask must be a boolean array, got dtype float32",
    ),
    "replay buffer features": (
        lambda items: reservoir_add(empty_buffer(4, buffered_example((2,), 3)), items, key=KEY),
        (BufferedExample(_zeros((5, 3)), _zeros((5,), I32), jnp.ones((5, 3), bool)),),
        ValueError, r"items.x must have shape \[examples, 2\] = \(any, 2\), got shape \(5, 3\)",
    ),
    "replay buffer per-example heads": (
        lambda items: reservoir_add(empty_buffer(4, buffered_example((2,), 3)), items, key=KEY),
        (BufferedExample(_zeros((5, 2)), _zeros((5,), I32), jnp.ones((4, 3), bool)),),
        ValueError, r"items.logit_mask must have shape \[examples, 3\] = \(5, 3\), got shape \(4, 3\)",
    ),
    "MLP input rank": (
        _MLP.apply, (_PARAMS, _zeros((2,))),
        ValueError, r"x must have shape \[batch, in_features\] = \(any, any\), got shape \(2,\)",
    ),
    "uncertainty weighting losses [tasks, 1]": (
        uncertainty_weighting(optax.sgd(0.1)).task_terms,
        (uncertainty_weighting(optax.sgd(0.1)).init(2), _zeros((2, 1))),
        ValueError, r"task_losses must have shape \[tasks\] = \(2,\), got shape \(2, 1\)",
    ),
    "predict_queries query examples unlike the support's": (
        partial(predict_queries, _MLP.apply, _PARAMS, transductive=True), (_zeros((6, 2)), _zeros((3, 5))),
        ValueError, r"query_x must have shape \[queries, 2\] = \(any, 2\), got shape \(3, 5\)",
    ),
    "task_scores class labels without a class axis": (
        partial(task_scores, softmax_cross_entropy), (_zeros((4,)), _zeros((4,), I32)),
        ValueError, r"predictions must have shape \[\*targets.shape = \(4,\), classes\] = \(4, any\), got shape \(4,\)",
    ),
    "synthetic task examples betas unlike alphas": (
        lambda key, parameters: correlated_task_examples(key, parameters, 3),
        (KEY, CorrelatedTaskParameters(_zeros((2, 5)), _zeros((5,)), _zeros((4,)))),
        ValueError, r"parameters.betas must have shape \[sines\] like alphas = \(5,\), got shape \(4,\)",
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


def test_host_side_functions_name_their_arguments():
    """Functions that run outside jit (stream builders, scoring) check what they are given too."""
    import numpy as np

    from metajax.data.continual_streams import split_mnist
    from metajax.data.errors import DataError
    from metajax.data.mnist import LabeledImages, MnistSplits
    from metajax.data.multitask import MultiTaskBatch
    from metajax.data.omniglot import to_class_bank, with_rotations
    from metajax.multitask.evaluation import score_split
    from metajax.train.evaluation import evaluate_tasks, mean_and_ci95

    images = LabeledImages(np.zeros((20, 28, 28), np.float32), np.arange(20, dtype=np.int32) % 10)
    flat = LabeledImages(np.zeros((20, 784), np.float32), images.y)
    with pytest.raises(
        ValueError,
        match=re.escape("data.test.x must have shape [examples, *example_shape] = (any, 28, 28), got shape (20, 784)"),
    ):
        split_mnist(MnistSplits(images, flat), "class-il")
    with pytest.raises(ValueError, match=re.escape("data.train.x must have shape [examples, *example_shape]")):
        split_mnist(MnistSplits(LabeledImages(np.zeros(20, np.float32), images.y), flat), "class-il")
    with pytest.raises(ValueError, match=re.escape("values must have shape [tasks] with at least 2 tasks")):
        mean_and_ci95(np.zeros((4, 2)))
    with pytest.raises(
        ValueError, match=re.escape("data.y must have shape [examples, tasks] = (6, 2), got shape (6, 3)")
    ):
        score_split(None, None, MultiTaskBatch(np.zeros((6, 4)), np.zeros((6, 3))), ["a", "b"], ["binary"] * 2)
    with pytest.raises(DataError, match=re.escape("raw.npz: expected images [n, 105, 105] and labels [n], got shapes")):
        to_class_bank(np.zeros((20, 28, 28), bool), np.zeros((20,), np.int32), "raw.npz")
    with pytest.raises(ValueError, match=re.escape("bank must have shape [classes, examples, size, size, channels]")):
        with_rotations(np.zeros((2, 20, 28, 28)))
    with pytest.raises(ValueError, match=re.escape("evaluate_chunk's 'accuracy' must have shape [chunk_size] = (4,)")):
        evaluate_tasks(lambda key: {"accuracy": jnp.zeros((3,))}, key=KEY, num_tasks=8, chunk_size=4)


def test_reservoir_keeps_each_examples_own_head():
    """Per-example heads ([n, outputs]) go into the slots with their examples (it used to fail for n != capacity)."""
    heads = jnp.eye(3, dtype=bool)[jnp.array([0, 1, 2, 0, 1, 2])]
    items = BufferedExample(_zeros((6, 2)), jnp.arange(6, dtype=I32), heads)
    buffer = reservoir_add(empty_buffer(4, buffered_example((2,), 3)), items, key=KEY)
    assert jnp.array_equal(buffer.items.logit_mask, heads[buffer.items.y])  # Label i was offered with head i % 3.
