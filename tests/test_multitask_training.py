"""The multi-task trainer, loss weightings, PCGrad and ROC-AUC against plain references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.data.multitask import MultiTaskBatch
from metajax.models import PLE, MMoE, SharedBottom
from metajax.multitask import (
    gradnorm,
    multitask_trainer,
    pcgrad,
    project_conflicting,
    roc_auc,
    uncertainty_weighting,
)

TASKS, FEATURES, BATCH = 2, 6, 16
RTOL, ATOL = 1e-4, 1e-6  # float32 through a few Adam steps of a small network.

MODELS = {
    "shared-bottom": SharedBottom(num_tasks=TASKS, bottom_widths=(8,), tower_hidden=(4,)),
    "mmoe": MMoE(num_tasks=TASKS, num_experts=3, expert_widths=(5,), tower_hidden=(4,)),
    "ple": PLE(num_tasks=TASKS, num_levels=2, task_experts=2, shared_experts=2, expert_widths=(5,), tower_hidden=(4,)),
}


def _batch(seed, n=BATCH):
    x = jax.random.normal(jax.random.key(seed), (n, FEATURES))
    y = jnp.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0], axis=1).astype(jnp.float32)
    return MultiTaskBatch(x, y)


def _reference_task_loss(model, params, batch, task):
    """One task's binary cross-entropy, -[y log p + (1 - y) log(1 - p)], written out.

    (A form with max(z, 0) and |z| would have kinks at z = 0, which a tower
    whose ReLUs are all off hits exactly: its subgradient there is not the
    derivative.)
    """
    logits = model.apply(params, batch.x).predictions[task]
    labels = batch.y[:, task]
    return -jnp.mean(labels * jax.nn.log_sigmoid(logits) + (1 - labels) * jax.nn.log_sigmoid(-logits))


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("name", list(MODELS))
def test_train_step_descends_the_summed_task_losses(name, jit):
    model = MODELS[name]
    params = model.init(jax.random.key(0), _batch(0).x)
    # Momentum SGD: an optimizer with state, whose update is linear in the
    # gradient (Adam's first steps are about lr * sign(g), which would hide a
    # wrong gradient and magnify float noise in near-zero ones).
    optimizer = optax.sgd(0.1, momentum=0.9)
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optimizer, task_loss="binary")
    step = jax.jit(trainer.train_step) if jit else trainer.train_step
    state = trainer.init(params)
    expected, optimizer_state = params, optimizer.init(params)
    for i in range(3):
        batch = _batch(i)
        grads = jax.grad(lambda p, b=batch: sum(_reference_task_loss(model, p, b, t) for t in range(TASKS)))(expected)
        updates, optimizer_state = optimizer.update(grads, optimizer_state, expected)
        expected = optax.apply_updates(expected, updates)
        state, metrics = step(state, batch, key=jax.random.key(i))
        chex.assert_trees_all_close(state.params, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(metrics["task_weights"], 1.0)
    assert int(state.step) == 3


def test_second_step_does_not_recompile():
    model = MODELS["mmoe"]
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optax.adam(1e-2))
    step = jax.jit(chex.assert_max_traces(trainer.train_step, n=1))
    state = trainer.init(model.init(jax.random.key(0), _batch(0).x))
    for i in range(3):
        state, _ = step(state, _batch(i), key=jax.random.key(i))
    chex.clear_trace_counter()


def test_epoch_scan_equals_a_loop_of_steps_over_the_same_batches():
    model = MODELS["mmoe"]
    data = _batch(5, n=70)  # 4 batches of 16; the last 6 rows are dropped.
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optax.adam(1e-2), batch_size=16)
    state = trainer.init(model.init(jax.random.key(0), data.x))
    key = jax.random.key(7)
    scanned, metrics = jax.jit(trainer.train_epoch)(state, data, key=key)
    shuffle_key, steps_key = jax.random.split(key)
    order = np.asarray(jax.random.permutation(shuffle_key, 70))[:64].reshape(4, 16)
    looped, losses = state, []
    for rows, step_key in zip(order, jax.random.split(steps_key, 4), strict=True):
        looped, step_metrics = trainer.train_step(looped, MultiTaskBatch(data.x[rows], data.y[rows]), key=step_key)
        losses.append(step_metrics["task_losses"])
    chex.assert_trees_all_close(scanned.params, looped.params, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(metrics["task_losses"], np.mean(losses, axis=0), rtol=RTOL)


def test_uncertainty_weighting_follows_kendalls_objective():
    model = MODELS["shared-bottom"]
    batch = _batch(1)
    params = model.init(jax.random.key(0), batch.x)
    weighting = uncertainty_weighting(optax.sgd(0.1))  # Its own optimizer: SGD of the model's rate here.
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optax.sgd(0.1), weighting=weighting)
    state = trainer.init(params)
    log_variances = jnp.array([0.5, -0.3])
    state = state._replace(weighting_state=state.weighting_state._replace(log_variances=log_variances))
    new_state, metrics = trainer.train_step(state, batch, key=jax.random.key(0))

    def objective(p, s):
        losses = jnp.stack([_reference_task_loss(model, p, batch, t) for t in range(TASKS)])
        return jnp.sum(jnp.exp(-s) * losses + s)

    grads_p, grads_s = jax.grad(objective, argnums=(0, 1))(params, log_variances)
    chex.assert_trees_all_close(
        new_state.params, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads_p), rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(new_state.weighting_state.log_variances, log_variances - 0.1 * grads_s, rtol=RTOL)
    np.testing.assert_allclose(metrics["task_weights"], np.exp([-0.5, 0.3]), rtol=1e-6)


def test_gradnorm_weights_follow_the_paper_and_stay_normalized():
    model = MODELS["mmoe"]
    batch = _batch(2)
    params = model.init(jax.random.key(0), batch.x)
    alpha, lr = 1.5, 0.05
    trainer = multitask_trainer(
        model.apply,
        TASKS,
        optimizer=optax.sgd(lr),
        weighting=gradnorm(optax.sgd(lr), alpha),
        shared_parameters=model.shared_parameters,
    )
    state = trainer.init(params)
    gradnorm_state = state.weighting_state._replace(
        task_weights=jnp.array([0.6, 1.4]),
        initial_task_losses=jnp.array([0.9, 0.5]),
        step=jnp.ones((), jnp.int32),  # Past step 0, so L(0) above is kept.
    )
    state = state._replace(weighting_state=gradnorm_state)
    new_state, _ = trainer.train_step(state, batch, key=jax.random.key(0))

    w = np.asarray(gradnorm_state.task_weights)
    shared_mask = jax.tree.leaves(model.shared_parameters(params))
    losses, norms = [], []
    for t in range(TASKS):
        losses.append(float(_reference_task_loss(model, params, batch, t)))
        grads = jax.grad(lambda p, t=t: _reference_task_loss(model, p, batch, t))(params)
        shared = [leaf for leaf, is_shared in zip(jax.tree.leaves(grads), shared_mask, strict=True) if is_shared]
        norms.append(float(np.sqrt(sum(np.sum(np.square(leaf)) for leaf in shared))))
    losses, norms = np.array(losses), np.array(norms)
    weighted_norms = w * norms
    ratios = losses / np.array([0.9, 0.5])
    target = weighted_norms.mean() * (ratios / ratios.mean()) ** alpha
    weights = w - lr * np.sign(weighted_norms - target) * norms
    np.testing.assert_allclose(new_state.weighting_state.task_weights, weights * TASKS / weights.sum(), rtol=1e-4)
    # The model descends the weighted sum, with the weights of before the step.
    grads = jax.grad(lambda p: sum(w[t] * _reference_task_loss(model, p, batch, t) for t in range(TASKS)))(params)
    chex.assert_trees_all_close(
        new_state.params, jax.tree.map(lambda p, g: p - lr * g, params, grads), rtol=RTOL, atol=ATOL
    )


def _reference_pcgrad(gradients, orders):
    """Yu et al. (2020), algorithm 1, with given orders of the other tasks."""
    projected = []
    for task, order in enumerate(orders):
        g = gradients[task].copy()
        for other in order:
            if other == task:
                continue
            dot = g @ gradients[other]
            if dot < 0:
                g = g - dot / (gradients[other] @ gradients[other]) * gradients[other]
        projected.append(g)
    return np.sum(projected, axis=0)


@pytest.mark.parametrize("jit", [True, False])
def test_pcgrad_projects_conflicting_gradients(jit):
    gradients = np.array([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0], [0.2, -0.8, 1.0]], np.float32)
    key = jax.random.key(3)
    orders = [np.asarray(jax.random.permutation(k, 3)) for k in jax.random.split(key, 3)]
    project = jax.jit(project_conflicting) if jit else project_conflicting
    np.testing.assert_allclose(
        project(jnp.asarray(gradients), key=key), _reference_pcgrad(gradients, orders), rtol=1e-5
    )
    # Two tasks without conflict: the plain sum.
    agreeing = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(project_conflicting(agreeing, key=key), [1.5, 0.5])


def test_pcgrad_transform_in_the_trainer_combines_per_task_gradients():
    model = MODELS["mmoe"]
    batch = _batch(3)
    params = model.init(jax.random.key(0), batch.x)
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optax.sgd(0.1), weighting=pcgrad())
    key = jax.random.key(4)
    new_state, _ = jax.jit(trainer.train_step)(trainer.init(params), batch, key=key)
    task_grads = [jax.grad(lambda p, t=t: _reference_task_loss(model, p, batch, t))(params) for t in range(TASKS)]
    flat = np.stack([np.asarray(jax.flatten_util.ravel_pytree(g)[0]) for g in task_grads])
    orders = [np.asarray(jax.random.permutation(k, TASKS)) for k in jax.random.split(key, TASKS)]
    combined = _reference_pcgrad(flat, orders)
    flat_params, unravel = jax.flatten_util.ravel_pytree(params)
    chex.assert_trees_all_close(new_state.params, unravel(flat_params - 0.1 * combined), rtol=RTOL, atol=ATOL)


def _reference_auc(scores, labels):
    """Pairs of (positive, negative): the fraction ordered correctly, ties counting one half."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    diff = positives[:, None] - negatives[None, :]
    return np.mean((diff > 0) + 0.5 * (diff == 0))


@pytest.mark.parametrize("jit", [True, False])
def test_roc_auc_equals_the_pairwise_definition(jit):
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.3).astype(np.float32)
    scores = (labels + rng.normal(size=500)).astype(np.float32)
    tied = np.round(scores, 1)  # Many ties.
    auc = jax.jit(roc_auc) if jit else roc_auc
    for s in (scores, tied):
        np.testing.assert_allclose(auc(jnp.asarray(s), jnp.asarray(labels)), _reference_auc(s, labels), rtol=1e-6)
    np.testing.assert_allclose(auc(jnp.array([0.1, 0.4, 0.35, 0.8]), jnp.array([0, 0, 1, 1])), 0.75)


def test_bad_batch_shapes_name_the_field():
    model = MODELS["mmoe"]
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optax.adam(1e-2))
    state = trainer.init(model.init(jax.random.key(0), _batch(0).x))
    batch = _batch(0)
    with pytest.raises(ValueError, match=r"batch.y must have shape \[examples, tasks\] = \(16, 2\), got shape \(16,\)"):
        trainer.train_step(state, MultiTaskBatch(batch.x, batch.y[:, 0]), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch.x must have shape \[examples, features\]"):
        trainer.train_step(state, MultiTaskBatch(batch.x[0], batch.y), key=jax.random.key(0))
    with pytest.raises(ValueError, match="task_loss must be one of"):
        multitask_trainer(model.apply, TASKS, optimizer=optax.adam(1e-2), task_loss="hinge")
