"""Trained runs loaded back (``metajax.load_run``) and scored again (``metajax evaluate``), on runs these
tests train through the command.

Rescored figures are compared to the summary's exactly: the evaluation is the runner's own function on the
same state (restored bit for bit), the same test tasks (the same keys) and the same compiled program, on
one CPU device, so there is no tolerance to allow for.
"""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax
from metajax.cli import main
from metajax.meta import MetaState

TINY = {
    "maml": ["maml", "--meta-iters", "4", "--log-every", "2", "--eval-tasks", "6", "--eval-chunk", "3"],
    "mmoe": ["mmoe", "--epochs", "2", "--batch-size", "500", "--experts", "2"],
    "continual": ["continual", "--batch-size", "64"],
}
# A classifier on a few classes of 8-feature vectors (an npz dataset the tests write): 3-way tasks, an MLP.
TINY_CLASSES = ["--model", "mlp", "--ways", "3", "--shots", "1", "--query-shots", "2", "--meta-iters", "2",
                "--meta-batch", "2", "--log-every", "2", "--eval-tasks", "4", "--eval-chunk", "2"]  # fmt: skip


def _write_classes(path, *, features: int = 8, seed: int = 0):
    """12 classes of 10 vectors around their own random means."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(12), 10)
    x = rng.normal(size=(12, features))[labels] * 2 + rng.normal(size=(labels.size, features))
    np.savez(path, x=x.astype(np.float32), y=labels)
    return path


def _train(tmp_path_factory, name: str, *extra: str):
    workdir = tmp_path_factory.mktemp(name)
    assert main([*TINY[name], *extra, "--no-progress", "--workdir", str(workdir)]) == 0
    return workdir, json.loads((workdir / "summary.json").read_text())


@pytest.fixture(scope="module")
def maml_seeds_run(tmp_path_factory):
    """Sinusoid regression, two seeds trained together: a state with a run axis."""
    return _train(tmp_path_factory, "maml", "--seeds", "2")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A lone meta-learning run of a classifier."""
    data = _write_classes(tmp_path_factory.mktemp("data") / "classes.npz")
    return _train(tmp_path_factory, "maml", "--dataset", f"npz:{data}", *TINY_CLASSES)


@pytest.fixture(scope="module")
def mmoe_run(tmp_path_factory):
    return _train(tmp_path_factory, "mmoe")


@pytest.fixture(scope="module")
def continual_run(tmp_path_factory):
    return _train(tmp_path_factory, "continual", "--seeds", "2")


def _figures(result: dict, names) -> dict:
    return {name: result[name] for name in names}


ACCURACIES = ("test_accuracy", "test_accuracy_ci95", "test_accuracy_transductive", "test_accuracy_non_transductive")


def test_meta_learning_run_loads_and_rescores_its_summary(classifier_run):
    workdir, summary = classifier_run
    run = metajax.load_run(workdir)
    assert run.family == "meta-learning" and run.config.algorithm == "maml" and run.step == 2 and run.runs == 1
    assert isinstance(run.state, MetaState) and int(run.state.step) == 2 and run.params is run.state.params
    assert json.loads(json.dumps(dataclasses.asdict(run.config))) == summary["config"]  # Tuples as lists.
    result = metajax.train.evaluate_run(run)
    assert _figures(result, ACCURACIES) == _figures(summary, ACCURACIES)
    assert result["checkpoint_step"] == 2 and result["changed"] == {} and result["run"] is None

    # adapt / apply on one test task.
    sample = run.data.sampler(run.data.test, ways=3, shots=1, query_shots=2)
    tasks = sample(jax.random.key(7), 1)
    adapted = run.algorithm.adapt(run.state, tasks.support_x[0], tasks.support_y[0], key=jax.random.key(8))
    logits = run.model.apply(adapted, tasks.query_x[0])
    assert logits.shape == (6, 3) and bool(jnp.all(jnp.isfinite(logits)))
    assert jax.tree.leaves(adapted)[0].shape == jax.tree.leaves(run.params)[0].shape


def test_other_tasks_and_data_change_the_evaluation(classifier_run, tmp_path):
    workdir, summary = classifier_run
    run = metajax.load_run(workdir)
    other = _write_classes(tmp_path / "other.npz", seed=1)
    # Other data, 2-way tasks (the model's first two outputs), more shots: one compiled evaluation.
    changed = metajax.train.evaluate_run(run, dataset=f"npz:{other}", ways=2, shots=3)
    assert changed["changed"] == {"dataset": f"npz:{other}", "ways": 2, "shots": 3}
    assert changed["config"]["dataset_options"]["path"] == str(other) and changed["config"]["ways"] == 2
    assert changed["test_accuracy"] != summary["test_accuracy"] and 0 <= changed["test_accuracy"] <= 1
    with pytest.raises(ValueError, match="eval-tasks must be at least 2"):
        metajax.train.evaluate_run(run, eval_tasks=1)
    with pytest.raises(ValueError, match="the run's model has 3 outputs, so it scores tasks of at most 3 ways"):
        metajax.train.evaluate_run(run, ways=5)
    narrow = _write_classes(tmp_path / "narrow.npz", features=5)
    with pytest.raises(ValueError, match=r"have shape \(5,\), but the run's model was trained on .* \(8,\)"):
        metajax.train.evaluate_run(run, dataset=f"npz:{narrow}")


def test_evaluate_command_prints_and_writes_the_summary_figures(classifier_run, tmp_path, capsys):
    workdir, summary = classifier_run
    output = tmp_path / "figures.json"
    assert main(["evaluate", str(workdir), "--no-progress", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    mode = "non_transductive"
    accuracy = f"{100 * summary[f'test_accuracy_{mode}']:.2f} +- {100 * summary[f'test_accuracy_{mode}_ci95']:.2f} %"
    assert f"test accuracy 3-way 1-shot, non-transductive  {accuracy}" in printed
    written = json.loads(output.read_text())
    assert written["family"] == "meta-learning" and _figures(written, ACCURACIES) == _figures(summary, ACCURACIES)
    assert main(["evaluate", str(workdir), "--no-progress", "--json", "--shots", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["changed"] == {"shots": 2} and shown["test_accuracy"] != summary["test_accuracy"]
    assert main(["evaluate", str(workdir), "--ways", "5"]) == 2
    assert "the run's model has 3 outputs" in capsys.readouterr().err
    # Nothing in the workdir was written.
    assert json.loads((workdir / "summary.json").read_text()) == summary and not (workdir / "figures.json").exists()


def test_runs_of_several_seeds_load_whole_or_one_at_a_time(maml_seeds_run):
    workdir, summary = maml_seeds_run
    whole = metajax.load_run(workdir)
    assert whole.runs == 2 and whole.state.step.shape == (2,)
    result = metajax.train.evaluate_run(whole)
    names = ("test_mse", "test_mse_std_over_runs")
    assert _figures(result, names) == _figures(summary, names)
    assert [run["test_mse"] for run in result["runs"]] == [run["test_mse"] for run in summary["runs"]]
    second = metajax.load_run(workdir, run=1)
    assert second.runs == 1 and second.run == 1 and second.state.step.shape == ()
    np.testing.assert_array_equal(jax.tree.leaves(second.params)[0], jax.tree.leaves(whole.params)[0][1])
    figures = metajax.train.evaluate_run(second)
    assert _figures(figures, ("test_mse", "test_mse_ci95")) == _figures(
        summary["runs"][1], ("test_mse", "test_mse_ci95")
    )

    # adapt / apply: the adapted weights fit a test task's support set better than the meta-learned ones.
    sample = second.data.sampler(second.data.test, ways=1, shots=10, query_shots=10)
    tasks = sample(jax.random.key(7), 1)
    adapted = second.algorithm.adapt(second.state, tasks.support_x[0], tasks.support_y[0], key=jax.random.key(8))

    def support_mse(params):
        return float(jnp.mean(jnp.square(second.model.apply(params, tasks.support_x[0]) - tasks.support_y[0])))

    assert support_mse(adapted) < support_mse(second.params)
    with pytest.raises(ValueError, match="run must be between 0 and 1"):
        metajax.load_run(workdir, run=2)


def test_multitask_run_loads_and_rescores_its_summary(mmoe_run, capsys):
    workdir, summary = mmoe_run
    run = metajax.load_run(workdir)
    assert run.family == "multi-task" and run.step == 2 and run.record["best_epoch"] == summary["best_epoch"]
    result = metajax.train.evaluate_run(run)
    names = ("best_epoch", "tasks", "final_epoch_tasks", "mean_gate_weights")
    assert _figures(result, names) == _figures(summary, names)
    output = run.model.apply(run.params, jnp.asarray(run.data.test.x[:5]))  # The best epoch's parameters.
    assert output.predictions.shape[:2] == (2, 5)
    other_data = metajax.train.evaluate_run(run, data_seed=run.config.data_seed + 1)
    assert other_data["changed"] == {"data_seed": 1} and other_data["tasks"] != summary["tasks"]
    assert main(["evaluate", str(workdir), "--no-progress"]) == 0
    task_1 = summary["tasks"]["task_1"]["mse"]
    assert f"test mse, task_1 (best validation epoch)  {task_1:.4f}" in capsys.readouterr().out


def test_continual_run_loads_and_rescores_its_summary(continual_run, capsys):
    workdir, summary = continual_run
    run = metajax.load_run(workdir)
    assert run.family == "continual" and run.runs == 2 and run.step == 5
    result = metajax.train.evaluate_run(run)
    assert result["final_accuracy"] == summary["accuracy_matrix"][-1]
    assert result["final_accuracy_per_run"] == [matrix[-1] for matrix in summary["accuracy_matrix_per_seed"]]
    assert result["final_average_accuracy"] == summary["final_average_accuracy"]
    # One seed's state, ready for the learner's own functions: no run axis.
    lone = metajax.load_run(workdir, run=0)
    stream = lone.data
    accuracy = lone.algorithm.accuracy(lone.state, stream.test_x, stream.test_y, stream.test_mask, stream.logit_mask)
    # Op by op and unbatched, the learner's accuracy rounds its float32 division apart from the runner's
    # jitted, vmapped one (the same counts): equal to float32's resolution.
    np.testing.assert_allclose(accuracy, summary["accuracy_matrix_per_seed"][0][-1], rtol=1e-6)
    assert main(["evaluate", str(workdir), "--no-progress"]) == 0
    average = summary["final_average_accuracy"]
    assert f"average accuracy             {100 * average['mean']:.2f} +- {100 * average['std']:.2f} %" in (
        capsys.readouterr().out
    )


def test_unusable_workdirs_fail_in_one_line(classifier_run, tmp_path, capsys):
    workdir, _ = classifier_run
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cases = [
        (tmp_path / "missing", "is not a folder"),
        (fresh, "is not a metajax run's workdir: it has no run_config.json"),
    ]
    no_checkpoint = tmp_path / "no_checkpoint"
    no_checkpoint.mkdir()
    (no_checkpoint / "run_config.json").write_text((workdir / "run_config.json").read_text())
    cases.append((no_checkpoint, "has no checkpoint yet"))
    old_format = tmp_path / "old_format"
    old_format.mkdir()
    config = json.loads((workdir / "run_config.json").read_text())
    (old_format / "run_config.json").write_text(json.dumps({**config, "metajax_run_format": 1}))
    cases.append((old_format, "holds a meta-learning run in run format 1; this metajax version reads format 2"))
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            metajax.load_run(path)
        assert main(["evaluate", str(path)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("metajax evaluate: error: ") and message in error and error.count("\n") == 1


def test_changes_a_family_does_not_take_are_refused(continual_run, classifier_run, capsys):
    workdir, _ = continual_run
    assert main(["evaluate", str(workdir), "--shots", "3"]) == 2
    error = capsys.readouterr().err
    assert "shots cannot change when scoring a continual run again (these can: data-dir)" in error
    with pytest.raises(ValueError, match="meta-iters cannot change"):
        metajax.train.evaluate_run(metajax.load_run(classifier_run[0]), meta_iters=10)


def test_import_metajax_stays_light():
    code = "import sys, metajax; assert 'jax' not in sys.modules; assert callable(metajax.load_run); print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "ok\n"
