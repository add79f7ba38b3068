"""The meta-learning family's subcommands end to end on tiny settings, and their errors."""

import json

import pytest

from metajax.cli import main
from metajax.train import MetaLearningConfig

TINY = ["--meta-iters", "20", "--log-every", "10", "--eval-tasks", "10", "--eval-chunk", "10", "--no-progress"]


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil", "meta-sgd"])
def test_sinusoid_run_writes_summary(algorithm, tmp_path, capsys):
    assert main([algorithm, *TINY, "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algorithm"] == algorithm == summary["config"]["algorithm"]
    assert (
        summary["config"]["meta_batch"] == 25 and summary["config"]["algorithm_options"]["inner_lr"] == 0.01
    )  # MAML's preset.
    assert summary["test_mse"] > 0 and summary["meta_tasks_per_second"] > 0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [10, 20]
    assert {"query_loss", "support_loss", "tasks_per_second"} <= set(lines[0])
    assert f"algorithm              {algorithm}" in capsys.readouterr().out


@pytest.mark.parametrize("algorithm", ["maml", "protonets"])
def test_omniglot_tiny_run(algorithm, omniglot_dir, tmp_path):
    args = [
        algorithm, "--dataset", "omniglot", "--data-dir", str(omniglot_dir), "--ways", "3", "--shots", "1",
        "--query-shots", "2", "--meta-batch", "2", "--meta-iters", "4", "--log-every", "2", "--eval-tasks", "8",
        "--eval-chunk", "4", "--no-progress", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    for mode in ("transductive", "non_transductive"):
        assert 0.0 <= summary[f"test_accuracy_{mode}"] <= 1.0


def test_fomaml_equals_maml_with_first_order(tmp_path):
    assert main(["fomaml", *TINY, "--workdir", str(tmp_path / "a")]) == 0
    assert main(["maml", "--first-order", *TINY, "--workdir", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "b"))
    assert a["test_mse"] == b["test_mse"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["protonets", "--dataset", "sinusoid"], "sinusoid regression has no classes"),
        (["maml", "--second-order-steps", "2"], "second-order-steps must be between 0 and inner-steps = 1, got 2"),
        (["maml", "--meta-lr", "0"], "meta-lr must be > 0"),
        (["anil", "--dataset", "omniglot", "--ways", "1"], "ways must be at least 2"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_fast_with_one_line(tmp_path, capsys, args, message):
    assert main([*args, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"metajax {args[0]}: error:") and len(err.strip().splitlines()) == 1
    assert message in err, err


def test_options_of_another_algorithm_are_refused():
    with pytest.raises(ValueError, match="inner-batch does not apply to algorithm maml"):
        MetaLearningConfig(algorithm="maml", algorithm_options={"inner_batch": 5}).resolved()
    with pytest.raises(ValueError, match="meta-lr does not apply to algorithm reptile"):
        MetaLearningConfig(algorithm="reptile", algorithm_options={"meta_lr": 1e-3}).resolved()
    with pytest.raises(SystemExit):  # The parser of protonets has no inner loop options at all.
        main(["protonets", "--inner-steps", "3"])


def test_reptile_trains_omniglot_on_ten_shots_as_the_paper_unless_told():
    """The Reptile paper trains 1-shot and 5-shot learners alike on tasks of 10 examples per class."""
    for shots in (1, 5):
        assert MetaLearningConfig(dataset="omniglot", shots=shots).resolved().train_shots == 10
    assert MetaLearningConfig(dataset="omniglot", shots=1, train_shots=3).resolved().train_shots == 3
    assert MetaLearningConfig(dataset="sinusoid", shots=7).resolved().train_shots == 7


def test_diverging_adaptation_is_reported_not_averaged(tmp_path, capsys):
    args = ["meta-sgd", *TINY, "--inner-lr", "1.5", "--eval-inner-steps", "30", "--workdir", str(tmp_path)]
    assert main(args) == 2
    assert "so adaptation diverged" in capsys.readouterr().err
