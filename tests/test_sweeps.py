"""Seeds and sweeps: many runs of one config as one vmapped program, each equal to the run it stands for."""

import dataclasses
import json

import numpy as np
import pytest

from metajax.cli import main
from metajax.continual import naive
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES
from metajax.train import ContinualConfig, MultiTaskConfig, train_continual
from metajax.train.sweeps import parse_sweep, run_grid, with_values


def _run(tmp_path, name, args):
    workdir = tmp_path / name
    assert main([*args, "--no-progress", "--workdir", str(workdir)]) == 0
    return json.loads((workdir / "summary.json").read_text())


def test_the_grid_is_every_combination_times_the_seeds_point_major():
    grid = run_grid({"a": (1.0, 2.0), "b": (10.0, 20.0, 30.0)}, seeds=2)
    assert grid.size == 12 and len(grid.points) == 6
    assert grid.points[1] == {"a": 1.0, "b": 20.0} and grid.points[3] == {"a": 2.0, "b": 10.0}
    np.testing.assert_array_equal(grid.values()["b"][:4], [10.0, 10.0, 20.0, 20.0])
    np.testing.assert_array_equal(grid.seed_indices(), [0, 1] * 6)
    assert grid.describe(7) == {"seed_index": 1, "values": {"a": 2.0, "b": 10.0}}
    assert run_grid({}, seeds=3).points == ({},) and run_grid({}, seeds=3).size == 3
    assert parse_sweep("ewc-lambda=1,1e3") == ("ewc_lambda", (1.0, 1000.0))


def test_with_values_sets_fields_without_running_the_dataclass_checks():
    @dataclasses.dataclass(frozen=True)
    class Options:
        rate: float = option(0.1, "a rate", above=0)

        def __post_init__(self):
            if not self.rate > 0:
                raise ValueError("rate must be > 0")

    tracer_like = object()  # What a vmapped program would pass: nothing Python can compare.
    assert with_values(Options(), {"rate": tracer_like}).rate is tracer_like
    assert with_values(Options(), {"other": 1.0}) == Options()


def test_a_continual_sweep_equals_the_separate_runs(tmp_path):
    base = ["continual", "--strategy", "ewc"]
    swept = _run(tmp_path, "sweep", [*base, "--sweep", "ewc-lambda=1,1000", "--sweep", "learning-rate=1e-3,3e-3"])
    assert [point["values"] for point in swept["sweep"]] == [
        {"ewc_lambda": 1.0, "learning_rate": 0.001}, {"ewc_lambda": 1.0, "learning_rate": 0.003},
        {"ewc_lambda": 1000.0, "learning_rate": 0.001}, {"ewc_lambda": 1000.0, "learning_rate": 0.003},
    ]  # fmt: skip
    for run, (ewc_lambda, rate) in enumerate([("1", "1e-3"), ("1000", "3e-3")]):
        run = 3 * run  # Points 0 and 3.
        alone = _run(tmp_path, f"alone{run}", [*base, "--ewc-lambda", ewc_lambda, "--learning-rate", rate])
        # The same predictions (one test example is 1/200); a vmapped mean of them rounds apart from a lone one.
        np.testing.assert_allclose(
            swept["accuracy_matrix_per_seed"][run], alone["accuracy_matrix_per_seed"][0], rtol=0, atol=1e-6
        )
        assert swept["runs"][run]["final_average_accuracy"] == pytest.approx(alone["final_average_accuracy"]["mean"])
    # One seed per point: a point's mean is its run's figure and its spread is zero.
    assert swept["sweep"][3]["final_average_accuracy"]["std"] == 0.0


def test_meta_learning_seeds_and_sweep_equal_lone_runs(tmp_path):
    base = ["maml", "--meta-iters", "30", "--log-every", "10", "--eval-tasks", "20", "--eval-chunk", "10"]
    swept = _run(tmp_path, "sweep", [*base, "--seeds", "2", "--sweep", "inner-lr=0.001,0.01"])
    assert len(swept["runs"]) == 4 and [p["values"] for p in swept["sweep"]] == [
        {"inner_lr": 0.001},
        {"inner_lr": 0.01},
    ]
    alone = _run(tmp_path, "alone", [*base, "--inner-lr", "0.01", "--seed", "1"])
    run = swept["runs"][3]  # inner-lr 0.01, seed index 1: the lone run of seed 1.
    assert run["values"] == {"inner_lr": 0.01} and run["seed_index"] == 1
    assert run["final_training_loss"] == alone["final_training_loss"]  # The same training, to the bit.
    np.testing.assert_allclose(run["test_mse"], alone["test_mse"], rtol=1e-5)  # vmapped scoring rounds apart
    mses = [r["test_mse"] for r in swept["runs"]]
    assert swept["test_mse"] == pytest.approx(np.mean(mses)) and swept["sweep"][1]["test_mse"]["mean"] == pytest.approx(
        np.mean(mses[2:])
    )


def test_multitask_seeds_and_sweep_equal_lone_runs(tmp_path):
    base = ["mmoe", "--epochs", "2", "--batch-size", "500"]
    swept = _run(tmp_path, "sweep", [*base, "--seeds", "2", "--sweep", "learning-rate=1e-3,1e-2"])
    alone = _run(tmp_path, "alone", [*base, "--learning-rate", "1e-2", "--seed", "1", "--data-seed", "0"])
    run = swept["runs"][3]
    assert run["values"] == {"learning_rate": 0.01} and run["best_epoch"] == alone["best_epoch"]
    for task, scores in alone["tasks"].items():
        np.testing.assert_allclose(run["tasks"][task]["mse"], scores["mse"], rtol=1e-4)
    assert set(swept["sweep"][0]) == {"values", "task_1_mse", "task_2_mse"}
    assert MultiTaskConfig(seed=3).resolved().data_seed == 3  # The data follows --seed unless told.


@pytest.mark.parametrize(
    "args, message",
    [
        (["continual", "--sweep", "buffer-size=10,20", "--strategy", "replay"], "--sweep buffer-size: not a real"),
        (["continual", "--sweep", "bogus=1"], "--sweep bogus: not a real-valued hyperparameter"),
        (["continual", "--strategy", "ewc", "--sweep", "ewc-lambda=-1,1"], "ewc-lambda must be >= 0, got -1.0"),
        (["continual", "--strategy", "ewc", "--sweep", "ewc-lambda=1,1"], "--sweep ewc-lambda repeats a value"),
        (["maml", "--sweep", "meta-iters=10,20"], "--sweep meta-iters: not a real-valued"),
        (["mmoe", "--weighting", "dwa", "--sweep", "gradnorm-alpha=1,2"], "--sweep gradnorm-alpha: not a real"),
    ],
)
def test_what_cannot_be_swept_is_a_one_line_error(args, message, tmp_path, capsys):
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error


def test_a_sweep_flag_without_values_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["continual", "--sweep", "learning-rate"])
    assert exit_info.value.code == 2 and "must be NAME=V1,V2" in capsys.readouterr().err


@dataclasses.dataclass(frozen=True)
class _BranchingOptions:
    threshold: float = option(0.5, "a value the factory branches on in Python")


def test_a_factory_that_branches_on_a_swept_value_says_so(tmp_path):
    @CONTINUAL_STRATEGIES.register("branching", hyperparams=_BranchingOptions, description="Branches in Python.")
    def build(options, context):
        if options.threshold > 1:  # Python control flow: a tracer cannot answer.
            raise AssertionError("unreachable in this test")
        return naive()

    try:
        config = ContinualConfig(strategy="branching", sweep={"threshold": (0.1, 0.2)})
        with pytest.raises(ValueError, match="--sweep threshold: the method branches on this value in Python"):
            train_continual(config, tmp_path, show_progress=False)
    finally:
        CONTINUAL_STRATEGIES.unregister("branching")
