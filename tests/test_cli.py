"""The ``metajax`` command end to end on tiny settings, and its errors."""

import json

import numpy as np
import pytest

from metajax.cli import main
from metajax.train import mean_and_ci95

TINY_SINUSOID = ["--meta-iters", "60", "--log-every", "20", "--eval-tasks", "20", "--eval-chunk", "10", "--no-progress"]


def test_sinusoid_default_run_writes_summary_log_and_plot(tmp_path, capsys):
    assert main(["reptile", *TINY_SINUSOID, "--also-eval-shots", "3", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_mse_by_shots"]["10"]["mse"] == summary["test_mse"]
    assert summary["test_mse_by_shots"]["3"]["mse"] > summary["test_mse"]  # Fewer points, worse fits.
    assert summary["config"]["dataset"] == "sinusoid" and summary["config"]["meta_iters"] == 60
    assert summary["meta_iters_done"] == 60
    assert summary["test_mse"] > 0 and summary["test_mse_ci95"] > 0 and summary["meta_tasks_per_second"] > 0
    assert summary["metajax_version"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [20, 40, 60]
    assert (tmp_path / "sinusoid_fits.png").read_bytes()[:4] == b"\x89PNG"
    assert "test MSE (20 tasks)" in capsys.readouterr().out


def test_same_seed_same_results(tmp_path):
    for name in ("a", "b"):
        assert main(["reptile", *TINY_SINUSOID, "--seed", "3", "--workdir", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "b"))
    assert a["test_mse"] == b["test_mse"] and a["final_training_loss"] == b["final_training_loss"]


def test_omniglot_tiny_run_scores_several_shots_and_rescores_a_finished_workdir(omniglot_dir, tmp_path, capsys):
    args = [
        "reptile", "--dataset", "omniglot", "--data-dir", str(omniglot_dir), "--split", "random", "--ways", "3",
        "--shots", "1", "--train-shots", "2", "--meta-batch", "2", "--inner-steps", "2", "--inner-batch", "4",
        "--meta-iters", "4", "--log-every", "2", "--eval-tasks", "8", "--eval-chunk", "4", "--eval-inner-steps", "2",
        "--no-progress", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert main([*args, "--also-eval-shots", "3"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["dataset_options"]["split"] == "random"
    for mode in ("transductive", "non_transductive"):
        assert 0.0 <= summary[f"test_accuracy_{mode}"] <= 1.0
        assert summary["test_accuracy_by_shots"]["1"][mode] == summary[f"test_accuracy_{mode}"]
        assert 0.0 <= summary["test_accuracy_by_shots"]["3"][mode] <= 1.0
    assert summary["test_accuracy"] == summary["test_accuracy_non_transductive"]
    out = capsys.readouterr().out
    assert "test accuracy 1-shot, non-transductive (8 tasks)" in out and "test accuracy 3-shot, transductive" in out
    log = (tmp_path / "metrics.jsonl").read_text()

    # The finished run scored again at more shots: from its last checkpoint, no training.
    assert main([*args, "--also-eval-shots", "2", "3"]) == 0
    rescored = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "metrics.jsonl").read_text() == log
    assert rescored["meta_iters_done"] == 4 and "resuming from the checkpoint at step 4" in capsys.readouterr().out
    assert sorted(rescored["test_accuracy_by_shots"]) == ["1", "2", "3"]
    assert rescored["test_accuracy_by_shots"]["3"] == summary["test_accuracy_by_shots"]["3"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "omniglot", "--data-dir", "/no/such/folder"], "data folder /no/such/folder does not exist"),
        (["--dataset", "omniglot", "--shots", "19", "--query-shots", "2"], "= 21, but omniglot has only 20"),
        (["--dataset", "omniglot", "--train-shots", "25"], "train-shots = 25, but omniglot has only 20"),
        (["--dataset", "omniglot", "--also-eval-shots", "5", "20"], "also-eval-shots \\+ query-shots = 21, but"),
        (["--split", "random"], "--split does not apply to dataset sinusoid"),
        (["--ways", "5"], "sinusoid regression has no classes: ways must be 1"),
        (["--inner-lr", "-1"], "inner-lr must be > 0"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_fast_with_one_line(tmp_path, capsys, args, message):
    assert main(["reptile", *args, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metajax reptile: error:") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_ways_beyond_the_evaluation_classes(omniglot_dir, tmp_path, capsys):
    assert main(["reptile", "--dataset", "omniglot", "--data-dir", str(omniglot_dir), "--ways", "700",
                 "--workdir", str(tmp_path)]) == 2  # fmt: skip
    assert "ways=700 is more than the 659 classes available" in capsys.readouterr().err


def test_non_positive_sizes_are_rejected_in_one_line(tmp_path, capsys):
    assert main(["reptile", "--meta-batch", "0", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "meta-batch must be a positive integer, got 0" in err and err.count("\n") == 1


def test_version_names_metajax_and_its_jax(capsys):
    import jax

    import metajax

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"metajax {metajax.__version__}, jax {jax.__version__}, jaxlib ")


def test_ctrl_c_outside_training_ends_in_one_line_and_exit_code_130(monkeypatch, tmp_path, capsys):
    from metajax.train import meta_training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(meta_training, "train_and_evaluate", interrupted)
    assert main(["maml", "--workdir", str(tmp_path), "--no-progress"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "metajax maml: interrupted; rerunning the same command resumes from the last checkpoint saved"
    ]


@pytest.mark.parametrize("command", ["reptile", "mmoe", "continual"])
def test_a_workdir_that_cannot_hold_a_run_fails_in_one_line(command, tmp_path, capsys, monkeypatch):
    from metajax.train import continual_training, meta_training, multitask_training

    def must_not_run(*args, **kwargs):
        raise AssertionError("the runner started with an unusable workdir")

    for module in (continual_training, meta_training, multitask_training):
        monkeypatch.setattr(module, "train_and_evaluate", must_not_run)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main([command, "--workdir", str(a_file)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"metajax {command}: error: --workdir {a_file} is a file, not a folder"
    ]
    assert main([command, "--workdir", str(a_file / "run")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"metajax {command}: error: --workdir {a_file / 'run'} cannot be created: Not a directory"
    ]


def test_a_full_disk_during_a_run_ends_in_one_line_naming_the_file(monkeypatch, tmp_path, capsys):
    from metajax.train import meta_training

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "summary.json"))

    monkeypatch.setattr(meta_training, "train_and_evaluate", disk_full)
    assert main(["maml", "--workdir", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"metajax maml: error: OSError: [Errno 28] No space left on device: '{tmp_path / 'summary.json'}'"
    ]


def test_confidence_interval_formula():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    mean, half_width = mean_and_ci95(values)
    assert mean == pytest.approx(0.6)
    assert half_width == pytest.approx(1.959963984540054 * values.std(ddof=1) / np.sqrt(5))
