"""MMoE, OMoE, shared-bottom and PLE against plain loops over tasks and experts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.models import CGC, PLE, MMoE, OMoE, SharedBottom

TASKS, EXPERTS, FEATURES, BATCH = 3, 4, 6, 5
# float32 through two small matmuls and a softmax: 1e-5 is ample, and any
# mix-up of tasks or experts moves outputs by far more.
RTOL, ATOL = 1e-5, 1e-6


def _inputs(seed=0):
    return jax.random.normal(jax.random.key(seed), (BATCH, FEATURES))


def _relu_dense(layer, x, *index):
    kernel, bias = layer["kernel"], layer["bias"]
    for i in index:
        kernel, bias = kernel[i], bias[i]
    return np.maximum(x @ kernel + bias, 0.0)


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _tower(towers, x, task):
    hidden = _relu_dense(towers["ReluStack_0"]["Dense_0"], x, task)
    return (hidden @ towers["Dense_0"]["kernel"][task] + towers["Dense_0"]["bias"][task])[:, 0]


def _reference_mmoe(params, x, one_gate=False):
    """The paper's equations with a Python loop over tasks and experts."""
    params = jax.tree.map(np.asarray, params["params"])
    x = np.asarray(x)
    experts = [_relu_dense(params["shared_experts"]["Dense_0"], x, e) for e in range(EXPERTS)]
    predictions, gates = [], []
    for task in range(TASKS):
        gate_params = params["task_gates"]
        g = 0 if one_gate else task
        gate = _softmax(x @ gate_params["kernel"][g] + gate_params["bias"][g])
        mixed = sum(gate[:, e : e + 1] * experts[e] for e in range(EXPERTS))
        predictions.append(_tower(params["task_towers"], mixed, task))
        gates.append(gate)
    return np.stack(predictions), np.stack(gates)


@pytest.mark.parametrize("jit", [True, False])
def test_mmoe_equals_a_loop_over_tasks_and_experts(jit):
    model = MMoE(num_tasks=TASKS, num_experts=EXPERTS, expert_widths=(7,), tower_hidden=(3,))
    x = _inputs()
    params = model.init(jax.random.key(1), x)
    apply = jax.jit(model.apply) if jit else model.apply
    output = apply(params, x)
    predictions, gates = _reference_mmoe(params, x)
    assert output.predictions.shape == (TASKS, BATCH)
    np.testing.assert_allclose(output.predictions, predictions, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(output.gate_weights, gates, rtol=RTOL, atol=ATOL)


def test_omoe_is_mmoe_with_one_gate_shared_by_all_tasks():
    x = _inputs(2)
    omoe = OMoE(num_tasks=TASKS, num_experts=EXPERTS)
    omoe_params = omoe.init(jax.random.key(3), x)
    assert omoe_params["params"]["task_gates"]["kernel"].shape == (1, FEATURES, EXPERTS)
    # An MMoE whose every gate is OMoE's gate computes the same function.
    mmoe = MMoE(num_tasks=TASKS, num_experts=EXPERTS)
    mmoe_params = jax.tree.map(lambda a: a, omoe_params)
    mmoe_params["params"]["task_gates"] = jax.tree.map(
        lambda a: jnp.repeat(a, TASKS, axis=0), omoe_params["params"]["task_gates"]
    )
    omoe_output, mmoe_output = omoe.apply(omoe_params, x), mmoe.apply(mmoe_params, x)
    np.testing.assert_allclose(omoe_output.predictions, mmoe_output.predictions, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(omoe_output.gate_weights, mmoe_output.gate_weights, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(omoe_output.gate_weights[0], omoe_output.gate_weights[1])
    np.testing.assert_allclose(
        omoe_output.predictions, _reference_mmoe(omoe_params, x, one_gate=True)[0], rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize(
    "model",
    [
        MMoE(num_tasks=TASKS, num_experts=EXPERTS),
        OMoE(num_tasks=TASKS, num_experts=EXPERTS),
        CGC(num_tasks=TASKS, task_experts=2, shared_experts=3),
        PLE(num_tasks=TASKS, num_levels=3, task_experts=2, shared_experts=3),
    ],
    ids=["mmoe", "omoe", "cgc", "ple"],
)
def test_gate_weights_are_distributions(model):
    x = _inputs(4) * 10.0  # Large logits: a softmax over the wrong axis would show.
    output = model.apply(model.init(jax.random.key(5), x), x)
    assert output.predictions.shape == (TASKS, BATCH)
    assert np.all(np.asarray(output.gate_weights) >= 0)
    np.testing.assert_allclose(np.sum(output.gate_weights, axis=-1), 1.0, rtol=1e-5)


def test_cgc_equals_a_loop_over_tasks_and_experts():
    """Task k mixes its own experts then the shared ones with its own gate."""
    model = CGC(num_tasks=TASKS, task_experts=2, shared_experts=3, expert_widths=(4,), tower_hidden=(3,))
    x = _inputs(6)
    params = model.init(jax.random.key(7), x)
    output = model.apply(params, x)
    p = jax.tree.map(np.asarray, params["params"])
    level, xs = p["level_0"], np.asarray(x)
    shared = [_relu_dense(level["shared_experts"]["Dense_0"], xs, e) for e in range(3)]
    for task in range(TASKS):
        own = [_relu_dense(level["task_experts"]["Dense_0"], xs, task, e) for e in range(2)]
        gate = _softmax(xs @ level["task_gates"]["kernel"][task] + level["task_gates"]["bias"][task])
        mixed = sum(gate[:, e : e + 1] * expert for e, expert in enumerate(own + shared))
        np.testing.assert_allclose(
            output.predictions[task], _tower(p["task_towers"], mixed, task), rtol=RTOL, atol=ATOL
        )
        np.testing.assert_allclose(output.gate_weights[task], gate, rtol=RTOL, atol=ATOL)


def test_shared_bottom_has_no_gates_and_one_tower_per_task():
    model = SharedBottom(num_tasks=TASKS, bottom_widths=(9,), tower_hidden=(3,))
    x = _inputs(8)
    params = model.init(jax.random.key(9), x)
    output = model.apply(params, x)
    assert output.gate_weights is None
    p = jax.tree.map(np.asarray, params["params"])
    bottom = _relu_dense(p["shared_bottom"]["Dense_0"], np.asarray(x))
    for task in range(TASKS):
        np.testing.assert_allclose(
            output.predictions[task], _tower(p["task_towers"], bottom, task), rtol=RTOL, atol=ATOL
        )


@pytest.mark.parametrize("model", [MMoE(num_tasks=2), SharedBottom(num_tasks=2), PLE(num_tasks=2)])
def test_wrong_input_rank_names_the_argument_and_shapes(model):
    with pytest.raises(ValueError, match=r"input x must have shape \[batch, features\], got shape \(5,\)"):
        model.init(jax.random.key(0), jnp.zeros((5,)))
