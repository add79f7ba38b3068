"""``metajax mmoe`` end to end on small settings, and its errors."""

import json
import re

import pytest

from metajax.cli import main


@pytest.mark.parametrize("model", ["mmoe", "shared-bottom", "ple"])
def test_synthetic_run_writes_summary_and_log(model, tmp_path, capsys):
    args = [
        "mmoe",
        "--model",
        model,
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--no-progress",
        "--workdir",
        str(tmp_path),
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["model"] == model and summary["config"]["dataset"] == "synthetic"
    assert set(summary["tasks"]) == {"task_1", "task_2"}
    # Predicting zero scores the labels' mean square (about 2.5 here); two epochs do much better.
    assert all(0 < scores["mse"] < 1.0 for scores in summary["tasks"].values())
    assert summary["examples_per_second"] > 0 and summary["metajax_version"] and summary["best_epoch"] in (1, 2)
    if model == "shared-bottom":
        assert "mean_gate_weights" not in summary
    else:
        experts = 8 + 2 if model == "ple" else 8  # PLE: a task's own experts and the shared ones.
        for weights in summary["mean_gate_weights"].values():
            assert len(weights) == experts and abs(sum(weights) - 1) < 1e-4
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert "test mse, task_1" in capsys.readouterr().out


def test_depth_options_build_deeper_experts_and_towers(tmp_path):
    from metajax.train.multitask_config import MultiTaskConfig
    from metajax.train.multitask_training import build_model

    config = MultiTaskConfig(model="ple", model_options={"expert_layers": 2, "tower_layers": 3}).resolved()
    model = build_model(config, num_tasks=2)
    assert model.expert_widths == (16, 16) and model.tower_hidden == (8, 8, 8)
    bottom = build_model(MultiTaskConfig(model="shared-bottom", model_options={"bottom_layers": 2}).resolved(), 2)
    assert bottom.bottom_widths == (128, 128)
    args = ["mmoe", "--expert-layers", "2", "--tower-layers", "2", "--epochs", "1", "--no-progress"]
    assert main([*args, "--workdir", str(tmp_path)]) == 0


def test_dataset_presets_reach_only_the_models_that_read_them():
    from metajax.train.multitask_config import MultiTaskConfig

    census = {"dataset": "census", "data_dir": "unused"}
    assert MultiTaskConfig(**census).resolved().model_options["expert_units"] == 4  # keras-mmoe's census size
    bottom = MultiTaskConfig(**census, model="shared-bottom").resolved().model_options
    assert bottom["bottom_units"] == 32 and "expert_units" not in bottom
    mine = MultiTaskConfig(**census, model_options={"expert_units": 7}).resolved()
    assert mine.model_options["expert_units"] == 7 and mine.batch_size == 256  # the user's over the preset
    assert MultiTaskConfig().resolved().model_options["expert_units"] == 16


def test_same_seed_same_results(tmp_path):
    for name in ("a", "b"):
        args = ["mmoe", "--epochs", "1", "--seed", "4", "--no-progress", "--workdir", str(tmp_path / name)]
        assert main(args) == 0
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "b"))
    assert a["tasks"] == b["tasks"] and a["mean_gate_weights"] == b["mean_gate_weights"]


def test_census_run_reaches_the_papers_auc_range(census_dir, tmp_path):
    args = ["mmoe", "--dataset", "census", "--data-dir", str(census_dir), "--epochs", "2", "--batch-size", "512"]
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    tasks = json.loads((tmp_path / "summary.json").read_text())["tasks"]
    # Two short epochs already separate the classes well (the paper: .94 and .99 after full training).
    assert tasks["income"]["auc"] > 0.9 and tasks["never_married"]["auc"] > 0.97


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "census"], "census needs --data-dir"),
        (["--dataset", "census", "--data-dir", "/nonexistent"], "looked for /nonexistent/census-income.test.gz"),
        (["--correlation", "2"], r"correlation must be in \[-1, 1\], got 2.0"),
        (["--learning-rate", "0"], "learning-rate must be > 0"),
        (
            ["--census-tasks", "income,salary"],
            "census-tasks must be distinct names from income, never_married, college",
        ),
        (["--batch-size", "20000"], "batch-size 20000 is larger than the 10000 training examples"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(["mmoe", *args, "--no-progress", "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("metajax mmoe: error:") and error.count("\n") == 1
    assert re.search(message, error)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "transformer"], "model must be one of mmoe, omoe, shared-bottom, cgc, ple, got 'transformer'"),
        (["--dataset", "imagenet"], "dataset must be one of synthetic, census, npz, got 'imagenet'"),
        (["--model", "shared-bottom", "--experts", "3"], "--experts does not apply to model shared-bottom"),
        (["--census-tasks", "income"], "--census-tasks does not apply to dataset synthetic"),
    ],
)
def test_unknown_names_and_foreign_options_are_one_line_errors(args, message, tmp_path, capsys):
    assert main(["mmoe", *args, "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("metajax mmoe: error:") and error.count("\n") == 1 and message in error
