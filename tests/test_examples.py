"""The examples under examples/ run: each family's ``train_and_evaluate`` on a tiny config, and one as a script.

(The plugins of examples/plugin are loaded through ``metajax --plugin`` and run in tests/test_registry.py.)
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(family: str, name: str):
    """``examples/FAMILY/NAME.py`` as a module of its own name (the three families each have a config.py)."""
    spec = importlib.util.spec_from_file_location(f"example_{family}_{name}", EXAMPLES / family / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(family: str, workdir: Path, **tiny):
    """The example's ``train_and_evaluate`` on its default config with ``tiny`` overrides, and its summary.json."""
    config = dataclasses.replace(_load(family, "config").get_config(), **tiny)
    result = _load(family, "train").train_and_evaluate(config, workdir)
    assert json.loads((workdir / "summary.json").read_text()) == json.loads(json.dumps(result))
    return result


def test_meta_learning_example_learns_to_adapt(tmp_path):
    # A meta step size 10x the paper's so that 100 steps show learning; the test tasks are one fixed set of
    # 64, so "lower" compares the same tasks, not two draws.
    result = _run(
        "meta_learning", tmp_path, steps=100, log_every=50, meta_batch=10, meta_lr=1e-2, hidden=(16, 16),
        eval_tasks=64, eval_query_shots=20,
    )  # fmt: skip
    assert [step for step, _ in result["train_losses"]] == [50, 100]
    scores = [*result["test_mse_initial"].values(), *result["test_mse_final"].values()]
    assert all(np.isfinite(scores))
    # Sinusoids of amplitude 0.1-5 have a mean square near 4.2, about an untrained net's MSE. Seeds 0-3 of
    # this config: the test MSE after adapting falls to 0.49-0.77 of the untrained net's (seed 0: 4.40 -> 2.56),
    # the mean training loss of steps 51-100 is 0.2-0.4 below that of steps 1-50.
    assert result["test_mse_final"]["after_adaptation"] < 0.9 * result["test_mse_initial"]["after_adaptation"]
    assert result["train_losses"][-1][1] < result["train_losses"][0][1]


def test_multitask_example_trains_mmoe(tmp_path):
    result = _run(
        "multitask", tmp_path, train_rows=320, eval_rows=64, num_features=8, experts=3, expert_units=4,
        tower_units=4, epochs=3, learning_rate=1e-2, log_every=1,
    )  # fmt: skip
    history = result["history"]
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert all(np.isfinite(record[field]).all() for record in history for field in ("train_losses", "validation_mse"))
    assert np.sum(history[-1]["train_losses"]) < np.sum(history[0]["train_losses"])
    assert 1 <= result["best_epoch"] <= 3
    assert set(result["test_mse"]) == {"task_1", "task_2"} and all(np.isfinite(list(result["test_mse"].values())))
    for gates in result["mean_gate_weights"].values():  # A softmax over the 3 experts, averaged over rows.
        assert len(gates) == 3 and np.isclose(sum(gates), 1.0, atol=1e-5)


def test_continual_example_fills_the_accuracy_matrix(tmp_path):
    # 50 steps of Adam 1e-2 per experience: enough to learn two classes and, for fine-tuning, to forget the
    # old ones (with fewer, the old classes' logits have not yet been pushed down and naive seems to remember).
    result = _run(
        "continual", tmp_path, train_per_class=40, hidden=(32,), learning_rate=1e-2, batch_size=8, epochs=5,
        seeds=2, buffer_size=40,
    )  # fmt: skip
    assert list(result["strategies"]) == ["naive", "ewc", "replay"]
    for scores in result["strategies"].values():
        matrix = np.asarray(scores["accuracy_matrix"])
        assert matrix.shape == (5, 5) and np.all((matrix >= 0) & (matrix <= 1))
        assert min(np.diag(matrix)) > 0.8  # Each experience is learned when it is trained on.
        assert all(len(scores[metric]) == 2 and np.isfinite(scores[metric]).all()
                   for metric in ("average_accuracy", "forgetting", "backward_transfer"))  # fmt: skip
    naive, replay = result["strategies"]["naive"], result["strategies"]["replay"]
    # Fine-tuning forgets the old classes, replay much less. Seeds 0-2 of this config: naive forgets 0.64-0.69
    # and averages 0.44-0.48, replay forgets 0.14-0.18 and averages 0.84-0.88; the margins leave room.
    assert np.mean(naive["forgetting"]) > 0.4 > np.mean(replay["forgetting"])
    assert np.mean(replay["average_accuracy"]) > np.mean(naive["average_accuracy"]) + 0.2


@pytest.mark.parametrize("family", ["meta_learning", "multitask", "continual"])
def test_each_example_takes_its_config_from_flags(family, capsys):
    defaults = _load(family, "config").get_config()
    parse_config = _load(family, "train").parse_config
    assert parse_config(defaults, []) == (defaults, f"runs/{family}")  # The defaults pass their own checks.
    config, workdir = parse_config(defaults, ["--seed", "3", "--workdir", "elsewhere"])
    assert config == dataclasses.replace(defaults, seed=3) and workdir == "elsewhere"
    with pytest.raises(SystemExit):
        parse_config(defaults, ["--batch-size" if family != "meta_learning" else "--steps", "0"])
    assert "must be a positive integer, got 0" in capsys.readouterr().err


def test_an_example_runs_as_a_script(tmp_path):
    # The repository root on the path, as for the library's own subprocess tests: an installed
    # metajax would do as well.
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, str(EXAMPLES / "meta_learning" / "train.py"), "--steps", "2", "--log-every", "1",
        "--meta-batch", "2", "--hidden", "8", "8", "--eval-tasks", "4", "--workdir", str(tmp_path),
    ]  # fmt: skip
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "step      2  query loss" in finished.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["steps"] == 2 and summary["config"]["hidden"] == [8, 8]
