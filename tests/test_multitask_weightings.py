"""DWA and MGDA against their papers' formulas, and the weightings from the command."""

import itertools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.cli import main
from metajax.data.multitask import MultiTaskBatch
from metajax.models import MMoE
from metajax.multitask import dynamic_weight_average, mgda, min_norm_weights, multitask_trainer
from metajax.registry import MULTITASK_WEIGHTINGS

TASKS, FEATURES = 3, 6
MODEL = MMoE(num_tasks=TASKS, num_experts=3, expert_widths=(5,), tower_hidden=(4,))


def _data(seed, n):
    x = jax.random.normal(jax.random.key(seed), (n, FEATURES))
    y = jnp.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] < 0.5], axis=1).astype(jnp.float32)
    return MultiTaskBatch(x, y)


def _task_loss(params, batch, task):
    logits = MODEL.apply(params, batch.x).predictions[task]
    labels = batch.y[:, task]
    return -jnp.mean(labels * jax.nn.log_sigmoid(logits) + (1 - labels) * jax.nn.log_sigmoid(-logits))


@pytest.mark.parametrize("jit", [True, False])
def test_dwa_weights_follow_the_last_two_epochs_loss_ratios(jit):
    temperature = 2.0
    trainer = multitask_trainer(
        MODEL.apply, TASKS, optimizer=optax.sgd(0.5), weighting=dynamic_weight_average(temperature), batch_size=16
    )
    epoch = jax.jit(trainer.train_epoch) if jit else trainer.train_epoch
    data = _data(0, 64)
    state = trainer.init(MODEL.init(jax.random.key(0), data.x))
    means, weights = [], []
    for e in range(4):
        state, metrics = epoch(state, data, key=jax.random.key(e))
        means.append(np.asarray(metrics["task_losses"]))  # The epoch's mean training losses.
        weights.append(np.asarray(metrics["task_weights"]))
    np.testing.assert_allclose(weights[0], 1.0)
    np.testing.assert_allclose(weights[1], 1.0)
    for e in (2, 3):  # w_k(t) = K softmax(r_k / T), r_k = L_k(t-1) / L_k(t-2)
        ratios = means[e - 1] / means[e - 2]
        expected = TASKS * np.exp(ratios / temperature) / np.sum(np.exp(ratios / temperature))
        np.testing.assert_allclose(weights[e], expected, rtol=1e-5)
    # The model descends the weighted sum with those weights, fixed.
    batch = _data(9, 16)
    w = trainer.train_step(state, batch, key=jax.random.key(0))[1]["task_weights"]
    new_state, _ = trainer.train_step(state, batch, key=jax.random.key(0))
    grads = jax.grad(lambda p: sum(w[t] * _task_loss(p, batch, t) for t in range(TASKS)))(state.params)
    chex.assert_trees_all_close(
        new_state.params, jax.tree.map(lambda p, g: p - 0.5 * g, state.params, grads), rtol=1e-4, atol=1e-6
    )


def _grid_min_norm(gram, steps=200):
    """The smallest alpha^T G alpha over a grid of the 3-task simplex, with its alpha."""
    best, best_alpha = np.inf, None
    for i, j in itertools.product(range(steps + 1), repeat=2):
        if i + j <= steps:
            alpha = np.array([i, j, steps - i - j]) / steps
            value = alpha @ gram @ alpha
            if value < best:
                best, best_alpha = value, alpha
    return best, best_alpha


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_frank_wolfe_solver_finds_the_min_norm_point_of_the_simplex(seed, jit):
    gradients = np.random.default_rng(seed).normal(size=(3, 7)) + np.array([[1.0], [0.0], [-0.5]])
    gram = gradients @ gradients.T
    solve = jax.jit(min_norm_weights) if jit else min_norm_weights
    alpha = np.asarray(solve(jnp.asarray(gram, jnp.float32)))
    assert alpha.min() >= 0 and alpha.sum() == pytest.approx(1.0, abs=1e-6)
    best, _ = _grid_min_norm(gram)
    # The grid's minimum bounds the true one from above; the solver must be at least as good (to float32).
    assert alpha @ gram @ alpha <= best + 1e-4 * max(1.0, best)


def test_two_tasks_take_the_closed_form_weight():
    g1, g2 = np.array([1.0, 0.2, -0.4]), np.array([-0.3, 0.8, 0.5])
    gram = np.stack([g1, g2]) @ np.stack([g1, g2]).T
    expected = np.clip((g2 - g1) @ g2 / np.sum(np.square(g1 - g2)), 0, 1)  # Sener & Koltun, Algorithm 1
    alpha = np.asarray(min_norm_weights(jnp.asarray(gram, jnp.float32)))
    np.testing.assert_allclose(alpha, [expected, 1 - expected], atol=1e-5)


@pytest.mark.parametrize("jit", [True, False])
def test_mgda_moves_shared_weights_by_the_min_norm_combination_and_task_weights_by_their_own(jit):
    batch = _data(1, 32)
    params = MODEL.init(jax.random.key(0), batch.x)
    trainer = multitask_trainer(
        MODEL.apply, TASKS, optimizer=optax.sgd(0.1), weighting=mgda(), shared_parameters=MODEL.shared_parameters
    )
    step = jax.jit(trainer.train_step) if jit else trainer.train_step
    new_state, metrics = step(trainer.init(params), batch, key=jax.random.key(0))
    task_grads = [jax.grad(lambda p, t=t: _task_loss(p, batch, t))(params) for t in range(TASKS)]
    shared = MODEL.shared_parameters(params)
    flat = np.stack(
        [np.concatenate([np.ravel(g) for g, s in zip(jax.tree.leaves(tg), jax.tree.leaves(shared), strict=True) if s])
         for tg in task_grads]
    )  # fmt: skip
    best, _ = _grid_min_norm(flat @ flat.T)
    alpha = np.asarray(new_state.weighting_state.alpha)
    assert alpha @ (flat @ flat.T) @ alpha <= best + 1e-4 * max(1.0, best)
    expected = jax.tree.map(
        lambda p, is_shared, *g: p - 0.1 * (sum(a * x for a, x in zip(alpha, g, strict=True)) if is_shared else sum(g)),
        params, shared, *task_grads,
    )  # fmt: skip
    chex.assert_trees_all_close(new_state.params, expected, rtol=1e-4, atol=1e-6)


def test_a_gradient_weighting_without_the_models_split_is_one_line():
    from metajax.models.task_stacks import MultiTaskOutput

    trainer = multitask_trainer(
        lambda params, x: MultiTaskOutput(jnp.stack([x[:, 0] * params["w"]] * TASKS), None),
        TASKS,
        optimizer=optax.sgd(0.1),
        weighting=mgda(),
    )
    with pytest.raises(ValueError, match="mgda needs the model's shared parameters, and this model declares none"):
        trainer.train_step(trainer.init({"w": jnp.ones(())}), _data(0, 8), key=jax.random.key(0))


@pytest.mark.parametrize("weighting", ["dwa", "mgda", "pcgrad", "gradnorm", "uncertainty"])
def test_every_weighting_trains_from_the_command(weighting, tmp_path):
    assert MULTITASK_WEIGHTINGS.get(weighting).trait("acts_on") in ("losses", "gradients")
    args = ["multitask", "--weighting", weighting, "--epochs", "3", "--no-progress", "--workdir", str(tmp_path)]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["weighting"] == weighting
    assert all(np.isfinite(task["mse"]) for task in summary["tasks"].values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--weighting", "magic"], "weighting must be one of equal, uncertainty, dwa, gradnorm, mgda, pcgrad"),
        (["--gradnorm-alpha", "2"], "--gradnorm-alpha does not apply to weighting equal"),
        (["--weighting", "mgda", "--mgda-normalization", "l3"], "invalid choice: 'l3'"),
        (["--weighting", "dwa", "--dwa-temperature", "0"], "dwa-temperature must be > 0"),
    ],
)
def test_bad_weighting_arguments_give_one_line_and_exit_2(args, message, tmp_path, capsys):
    try:
        code = main(["mmoe", *args, "--no-progress", "--workdir", str(tmp_path)])
    except SystemExit as exit:  # argparse's own errors (a choice not offered) end the process.
        code = exit.code
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
