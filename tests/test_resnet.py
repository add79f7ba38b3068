"""ResNet-18 and its batch norm: shapes, parameter count, running statistics against numpy, the
continual learner's handling of them, and a command-line run that resumes bit for bit after SIGKILL."""

import json
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from test_runs import _resumes_to_the_same_run

from metajax.cli import main
from metajax.continual import Experience, TrainMode, continual_learner, naive
from metajax.models import ResNet18, RunningBatchNorm
from metajax.train.checkpoints import KILL_AFTER_SAVES_VARIABLE


def tiny_resnet(conv_impl="lax"):
    """Two stages of one block, 4 base filters: every kind of layer ResNet-18 has, at little cost."""
    return ResNet18(num_classes=3, base_filters=4, blocks_per_stage=(1, 1), conv_impl=conv_impl)


def images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("base_filters", [20, 64])
def test_resnet18_output_and_feature_shapes(base_filters):
    model = ResNet18(num_classes=10, base_filters=base_filters)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 10)
    assert jax.eval_shape(model.features, variables, x).shape == (2, 8 * base_filters)
    logits, updated = jax.eval_shape(model.train_apply, variables, x)
    assert logits.shape == (2, 10)
    assert jax.tree.map(lambda a: a.shape, updated) == jax.tree.map(lambda a: a.shape, variables)


def test_features_are_what_the_head_reads():
    model = tiny_resnet()
    x = images((2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    head = variables["params"]["head"]
    expected = model.features(variables, x) @ head["kernel"] + head["bias"][None]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def resnet18_parameter_count(base_filters, in_channels=3, classes=10):
    """Parameters of mammoth's ResNet-18 from its layer shapes: bias-free 3x3 convolutions, batch norm's scale
    and bias, a 1x1 convolution and batch norm on the shortcut of each stage that changes shape, linear head."""

    def conv(k, cin, cout):
        return k * k * cin * cout

    def norm(c):
        return 2 * c

    count = conv(3, in_channels, base_filters) + norm(base_filters)  # stem
    cin = base_filters
    for stage in range(4):
        width = base_filters * 2**stage
        for block in range(2):
            count += conv(3, cin, width) + norm(width) + conv(3, width, width) + norm(width)
            if block == 0 and stage > 0:  # stride 2 and twice the width
                count += conv(1, cin, width) + norm(width)
            cin = width
    return count + cin * classes + classes


@pytest.mark.parametrize("base_filters", [20, 64])
def test_resnet18_has_mammoths_parameter_count(base_filters):
    model = ResNet18(num_classes=10, base_filters=base_filters)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))
    assert count == resnet18_parameter_count(base_filters)
    if base_filters == 64:
        assert count == 11_173_962  # the figure PyTorch reports for mammoth's ResNet-18 with 10 classes


def test_batch_norm_trains_on_the_batch_and_infers_with_running_statistics():
    x = images((6, 3, 3, 4), seed=1) * 2.0 + 1.0
    norm = RunningBatchNorm()
    variables = norm.init(jax.random.key(0), x, train=False)
    variables = {
        "params": {"scale": jnp.asarray([1.0, 2.0, 0.5, 1.5]), "bias": jnp.asarray([0.0, 1.0, -1.0, 0.5])},
        "batch_stats": variables["batch_stats"],
    }
    out, updated = norm.apply(variables, x, train=True, mutable=["batch_stats"])

    rows = np.asarray(x, np.float64).reshape(-1, 4)
    mean, var = rows.mean(axis=0), rows.var(axis=0)
    scale, bias = (np.asarray(variables["params"][k]) for k in ("scale", "bias"))
    expected = (np.asarray(x) - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)  # float32 against float64
    running_mean = 0.9 * 0.0 + 0.1 * mean
    running_var = 0.9 * 1.0 + 0.1 * rows.var(axis=0, ddof=1)  # unbiased, as PyTorch's running variance
    np.testing.assert_allclose(updated["batch_stats"]["mean"], running_mean, rtol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["var"], running_var, rtol=1e-5)

    inferred = norm.apply({**variables, **updated}, x, train=False)
    expected = (np.asarray(x) - running_mean) / np.sqrt(running_var + 1e-5) * scale + bias
    np.testing.assert_allclose(inferred, expected, rtol=1e-5, atol=1e-5)


def test_train_apply_updates_every_running_statistic_and_no_gradient_reaches_them():
    model = tiny_resnet()
    x = images((4, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    _, updated = model.train_apply(variables, x)
    for before, after in zip(
        jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(updated["batch_stats"]), strict=True
    ):
        assert not np.allclose(before, after)
    assert jax.tree.all(jax.tree.map(np.array_equal, variables["params"], updated["params"]))

    def loss(v, train):
        logits = model.train_apply(v, x)[0] if train else model.apply(v, x)
        return jnp.sum(logits**2)

    for train in (False, True):
        grads = jax.grad(loss)(updated, train)
        assert all(np.all(g == 0) for g in jax.tree.leaves(grads["batch_stats"]))
        assert any(np.any(g != 0) for g in jax.tree.leaves(grads["params"]))


def test_conv_formulations_agree():
    x = images((2, 9, 9, 3))  # odd size: the stride-2 padding is where they could differ
    lax_model, slices_model = tiny_resnet("lax"), tiny_resnet("slices")
    variables = lax_model.init(jax.random.key(0), x)
    np.testing.assert_allclose(slices_model.apply(variables, x), lax_model.apply(variables, x), rtol=1e-4, atol=1e-5)


def tiny_learner(model, optimizer, batch_size=4):
    return continual_learner(
        model.apply,
        naive(),
        optimizer,
        epochs=1,
        batch_size=batch_size,
        train_mode=TrainMode(model.train_apply, model.running_statistics),
    )


def tiny_experience(n, seed=0):
    rng = np.random.default_rng(seed)
    return Experience(
        images((n, 8, 8, 3), seed), jnp.asarray(rng.integers(0, 3, n), jnp.int32), jnp.ones((3,), bool), jnp.asarray(0)
    )


def test_learner_step_takes_the_forward_pass_statistics_and_no_optimizer_update():
    """One step with adamw (weight decay would move every leaf it is applied to): the running statistics end as
    the training forward pass made them, the parameters move."""
    model = tiny_resnet()
    experience = tiny_experience(4)  # one step of the whole experience
    variables = model.init(jax.random.key(0), experience.x)
    learner = tiny_learner(model, optax.adamw(1e-2, weight_decay=0.5))
    state, _ = learner.train_experience(learner.init(variables), experience, key=jax.random.key(1))

    _, forwarded = model.train_apply(variables, experience.x)
    # The step's batch is the experience in shuffled order: sums in another order, to float32 rounding.
    # Weight decay would have moved each statistic by lr * 0.5 * value, orders above this tolerance.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
        state.params["batch_stats"],
        forwarded["batch_stats"],
    )
    for before, after in zip(
        jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params["params"]), strict=True
    ):
        assert not np.array_equal(before, after)
    # The optimizer holds nothing of the statistics: Adam's two moments of the parameters alone.
    trainable = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    moments = sum(leaf.size for leaf in jax.tree.leaves(state.opt_state) if jnp.issubdtype(leaf.dtype, jnp.floating))
    assert moments == 2 * trainable


def test_learner_jitted_and_not_jitted_agree_and_compile_once():
    model = tiny_resnet()
    experience = tiny_experience(8)
    variables = model.init(jax.random.key(0), experience.x)
    learner = tiny_learner(model, optax.adam(1e-2))
    state = learner.init(variables)
    traces = []

    def train(state, key):
        traces.append(1)
        return learner.train_experience(state, experience, key=key)

    jitted = jax.jit(train)
    eager, _ = learner.train_experience(state, experience, key=jax.random.key(1))
    compiled, _ = jitted(state, jax.random.key(1))
    jitted(compiled, jax.random.key(2))
    assert len(traces) == 1
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), eager, compiled)
    assert not np.array_equal(eager.params["batch_stats"]["stem_norm"]["mean"], np.zeros(4))


@pytest.fixture
def tiny_images_npz(tmp_path):
    """Six classes of twelve 8x8 RGB images, each class a different mean colour: three experiences of two."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 12)
    x = (
        rng.normal(size=(len(y), 8, 8, 3)) * 0.3
        + (y[:, None, None, None] % 3 == np.arange(3))
        + 0.5 * (y >= 3)[:, None, None, None]
    )
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


def test_reduced_resnet_runs_from_the_command_line_and_resumes_bit_for_bit_after_sigkill(
    tiny_images_npz, tmp_path, capsys
):
    args = [
        "continual", "--benchmark", f"npz:{tiny_images_npz}", "--test-fraction", "0.25", "--model",
        "reduced-resnet18", "--base-filters", "2", "--strategy", "replay", "--buffer-size", "12", "--batch-size", "9",
        "--seeds", "2", "--seed", "1", "--no-progress",
    ]  # fmt: skip
    whole = tmp_path / "whole"
    assert main([*args, "--workdir", str(whole)]) == 0
    summary = json.loads((whole / "summary.json").read_text())
    assert len(summary["accuracy_matrix"]) == 3

    killed = tmp_path / "killed"
    environment = {**os.environ, KILL_AFTER_SAVES_VARIABLE: "2"}  # SIGKILL after the 2nd of 3 checkpoints.
    process = subprocess.run(
        [sys.executable, "-m", "metajax.cli", *args, "--workdir", str(killed)], env=environment, capture_output=True
    )
    assert process.returncode == -9, process.stderr.decode()[-2000:]
    # The same final state bit for bit, batch-norm running statistics among its leaves.
    _resumes_to_the_same_run(args, killed, whole, capsys)
    means = _checkpointed_running_means(killed)
    assert means and all(m.shape[0] == 2 and np.any(m != 0) for m in means)  # both seeds', trained


def _checkpointed_running_means(workdir):
    directory = workdir / "checkpoints"
    step = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    with warnings.catch_warnings():  # Restoring without a target: orbax warns it reads the saved layout.
        warnings.simplefilter("ignore", UserWarning)
        restored = ocp.PyTreeCheckpointer().restore(directory / str(step) / "state")
    leaves = jax.tree_util.tree_flatten_with_path(restored)[0]
    path_names = [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in leaves]
    return [leaf for name, leaf in path_names if "batch_stats" in name and name.endswith("['mean']")]
