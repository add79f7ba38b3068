"""``metajax continual`` end to end on generated data, and its errors."""

import json
import re

import pytest

from metajax.cli import main


def test_default_run_writes_summary_log_and_heat_map(tmp_path, capsys):
    assert main(["continual", "--strategy", "replay", "--seeds", "2", "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["benchmark"] == "split-gaussian" and summary["config"]["scenario"] == "class-il"
    matrix = summary["accuracy_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    assert len(summary["accuracy_matrix_per_seed"]) == 2
    # Replay of 1000 examples keeps old classes alive: far above naive's 1/5 in class-IL.
    assert summary["final_average_accuracy"]["mean"] > 0.4 and summary["final_average_accuracy"]["std"] >= 0
    for key in ("forgetting", "bwt", "fwt"):
        assert set(summary[key]) == {"mean", "std"}
    assert summary["train_seconds"] > 0 and summary["metajax_version"]
    assert (tmp_path / "accuracy_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5
    assert "final average accuracy %" in capsys.readouterr().out


def test_naive_class_il_forgets_and_joint_does_not(tmp_path):
    runs = {"naive": ["--strategy", "naive"], "joint": ["--strategy", "joint"],
            "naive-reset": ["--strategy", "naive", "--reset-optimizer"]}  # fmt: skip
    summaries = {}
    for name, options in runs.items():
        assert main(["continual", *options, "--no-progress", "--workdir", str(tmp_path / name)]) == 0
        summaries[name] = json.loads((tmp_path / name / "summary.json").read_text())
    naive, joint, reset = (summaries[name] for name in ("naive", "joint", "naive-reset"))
    assert joint["final_average_accuracy"]["mean"] > 0.9 and joint["forgetting"] is None
    # With a fresh Adam per experience, naive class-IL keeps only the last experience (the classic 1/5).
    assert reset["final_average_accuracy"]["mean"] < 0.3 and reset["forgetting"]["mean"] > 0.8
    # Adam's carried state slows the overwriting (a few steps per experience here), but it still forgets.
    assert naive["forgetting"]["mean"] > 0.2
    assert naive["final_average_accuracy"]["mean"] < joint["final_average_accuracy"]["mean"] - 0.4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "dream"], "strategy must be one of naive, joint"),
        (["--buffer-size", "0"], "buffer-size must be a positive integer, got 0"),
        (["--replay-batch", "0"], "replay-batch must be a positive integer, got 0"),
        (["--strategy", "replay", "--buffer-size", "99999"], "buffer-size 99999 is larger than the whole stream"),
        (["--benchmark", "permuted-mnist", "--scenario", "class-il"], "cannot run scenario 'class-il'"),
        (["--benchmark", "split-mnist", "--data-dir", "/nonexistent"], "MNIST not found: looked for /nonexistent"),
        (["--ewc-lambda", "-1"], "ewc-lambda must be >= 0"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(["continual", *args, "--no-progress", "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("metajax continual: error:") and error.count("\n") == 1
    assert re.search(message, error)


def test_split_mnist_task_il_with_ewc(mnist_dir, tmp_path):
    args = ["continual", "--benchmark", "split-mnist", "--scenario", "task-il", "--strategy", "ewc"]
    args += ["--data-dir", str(mnist_dir), "--hidden", "100", "--no-progress", "--workdir", str(tmp_path)]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_average_accuracy"]["mean"] > 0.9  # task-IL Split MNIST is easy (paper: 98.6 for EWC)


def test_split_omniglot_task_il(omniglot_dir, tmp_path):
    args = ["continual", "--benchmark", "split-omniglot", "--scenario", "task-il", "--experiences", "3"]
    args += ["--data-dir", str(omniglot_dir), "--batch-size", "32", "--epochs", "3", "--hidden", "64"]
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["accuracy_matrix"]) == 3
    assert summary["final_average_accuracy"]["mean"] > 0.2  # 10-way heads: chance is 0.1


def test_the_optimizer_and_its_learning_rate_are_the_ones_asked_for(tmp_path):
    def joint_accuracy(*options):
        workdir = tmp_path / "-".join(options)
        assert main(["continual", "--strategy", "joint", *options, "--no-progress", "--workdir", str(workdir)]) == 0
        summary = json.loads((workdir / "summary.json").read_text())
        assert summary["config"]["optimizer"] == "sgd"
        return summary["final_average_accuracy"]["mean"]

    assert joint_accuracy("--optimizer", "sgd", "--learning-rate", "0.1") > 0.9
    assert joint_accuracy("--optimizer", "sgd", "--learning-rate", "1e-7") < 0.5  # Too small a step to learn.


def test_an_unknown_optimizer_is_refused():
    from metajax.train.continual_config import ContinualConfig

    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd, got 'rmsprop'"):
        ContinualConfig(optimizer="rmsprop").resolved()


@pytest.mark.parametrize("strategy", ["replay", "replay-ewc"])
def test_replay_batch_reaches_the_strategy(strategy):
    import jax
    import jax.numpy as jnp

    from metajax.continual import ContinualBatch
    from metajax.data.continual_streams import gaussian_classes, split_mnist
    from metajax.models import MLP
    from metajax.train.continual_config import ContinualConfig
    from metajax.train.continual_training import build_strategy

    stream = split_mnist(gaussian_classes(), "class-il")
    config = ContinualConfig(strategy=strategy, strategy_options={"buffer_size": 50, "replay_batch": 7}).resolved()
    built = build_strategy(config, MLP((8,), stream.num_outputs), stream)
    x, y = jnp.asarray(stream.train_x[0, :4]), jnp.asarray(stream.train_y[0, :4])
    batch = ContinualBatch(x, y, jnp.ones((4, stream.num_outputs), bool), jnp.ones(4))
    extended = built.augment(built.init(None), batch, jax.random.key(0))
    assert extended.x.shape[0] == 4 + 7


def test_online_replay_runs_from_the_command(tmp_path):
    args = [
        "--strategy",
        "replay",
        "--buffer-update",
        "step",
        "--buffer-policy",
        "class-balanced",
        "--batch-size",
        "10",
        "--replay-batch",
        "20",
    ]
    assert main(["continual", *args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["strategy_options"]["buffer_update"] == "step"
    assert summary["config"]["strategy_options"]["replay_batch"] == 20
    assert summary["final_average_accuracy"]["mean"] > 0.4  # Far above naive class-IL's 1/5.
    from metajax.train.continual_config import ContinualConfig

    with pytest.raises(ValueError, match="buffer-update must be one of experience, step, got 'hourly'"):
        ContinualConfig(strategy="replay", strategy_options={"buffer_update": "hourly"}).resolved()


def test_split_omniglot_with_a_convolutional_network_and_replay(omniglot_dir, tmp_path):
    args = ["continual", "--benchmark", "split-omniglot", "--scenario", "task-il", "--experiences", "3"]
    args += ["--model", "conv4", "--conv-features", "16", "--strategy", "replay", "--buffer-size", "200"]
    args += ["--data-dir", str(omniglot_dir), "--batch-size", "32", "--epochs", "3"]
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["model"] == "conv4" and len(summary["accuracy_matrix"]) == 3
    assert summary["final_average_accuracy"]["mean"] > 0.2  # 10-way heads: chance is 0.1
