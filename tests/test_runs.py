"""Runs that survive: a SIGKILLed run resumes to the same result, bit for bit;
same seed, same summary; a workdir of another config is refused; bad arguments
fail in one line, whatever they are (hypothesis)."""

import collections
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metajax.cli import main
from metajax.train.checkpoints import KILL_AFTER_SAVES_VARIABLE

# Fields that measure time, not results: everything else must match exactly.
TIMING_FIELDS = {"train_seconds", "meta_tasks_per_second", "examples_per_second", "tasks_per_second", "plot"}

RUNS = {
    "reptile": ["reptile", "--meta-iters", "60", "--log-every", "10", "--checkpoint-every", "20", "--eval-tasks",
                "20", "--eval-chunk", "10"],
    "maml": ["maml", "--meta-iters", "40", "--log-every", "10", "--checkpoint-every", "10", "--eval-tasks", "20",
             "--eval-chunk", "10"],
    "mmoe": ["mmoe", "--epochs", "4", "--batch-size", "500", "--experts", "3"],
    "continual": ["continual", "--strategy", "replay-ewc", "--buffer-size", "200", "--seeds", "2"],
}  # fmt: skip
# Several runs in one program: a state with a run axis, and each run's best epoch, resume as one run does.
SEVERAL_RUNS = {
    "maml-sweep": [*RUNS["maml"], "--seeds", "2", "--sweep", "inner-lr=0.001,0.01"],
    "mmoe-sweep": [*RUNS["mmoe"], "--seeds", "2", "--sweep", "learning-rate=1e-3,1e-2"],
}


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _results(workdir: Path):
    summary = json.loads((workdir / "summary.json").read_text())
    log = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return _without_timing(summary), _without_timing(log)


def _final_state(workdir: Path) -> list[np.ndarray]:
    directory = workdir / "checkpoints"
    step = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    with warnings.catch_warnings():  # Restoring without a target: orbax warns it reads the saved layout.
        warnings.simplefilter("ignore", UserWarning)
        restored = ocp.PyTreeCheckpointer().restore(directory / str(step) / "state")
    return [np.asarray(leaf) for leaf in __import__("jax").tree.leaves(restored)]


def _assert_same_run(workdir: Path, whole: Path) -> None:
    """The same summary and log (timing aside) and the same final state, bit for bit."""
    assert _results(workdir) == _results(whole)
    for resumed, uninterrupted in zip(_final_state(workdir), _final_state(whole), strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)


def _resumes_to_the_same_run(args: list[str], workdir: Path, whole: Path, capsys) -> None:
    """Reruns ``args`` in ``workdir``: it says it resumes, and ends as the uninterrupted run in ``whole``."""
    capsys.readouterr()
    assert main([*args, "--workdir", str(workdir)]) == 0
    assert "resuming from the checkpoint" in capsys.readouterr().out
    _assert_same_run(workdir, whole)


@pytest.mark.parametrize("run", sorted(RUNS) + sorted(SEVERAL_RUNS))
def test_killed_run_resumes_to_the_same_result_bit_for_bit(run, tmp_path, capsys):
    args = [*{**RUNS, **SEVERAL_RUNS}[run], "--seed", "1", "--no-progress"]
    assert main([*args, "--workdir", str(tmp_path / "whole")]) == 0

    killed = tmp_path / "killed"
    environment = {**os.environ, KILL_AFTER_SAVES_VARIABLE: "2"}  # SIGKILL after the 2nd checkpoint.
    process = subprocess.run(
        [sys.executable, "-m", "metajax.cli", *args, "--workdir", str(killed)], env=environment, capture_output=True
    )
    assert process.returncode == -9, process.stderr.decode()[-2000:]
    assert not (killed / "summary.json").exists()
    _resumes_to_the_same_run(args, killed, tmp_path / "whole", capsys)


# Runs a command in a fresh process that sends itself a signal right after writing its N-th log record,
# as a scheduler's SIGTERM (or a user's Ctrl-C) would arrive in the middle of training.
_SIGNAL_AFTER_RECORDS = """
import os, signal, sys
from metajax.cli import main
from metajax.train.metrics_log import MetricsLog
write, written = MetricsLog.write, []
def write_then_signal(self, record):
    write(self, record)
    written.append(record)
    if len(written) == {records}:
        os.kill(os.getpid(), signal.{signal})
MetricsLog.write = write_then_signal
sys.exit(main({args!r}))
"""


@pytest.mark.parametrize(
    "run, stop_signal, exit_code, where",
    [
        ("maml", "SIGTERM", 143, "at step 30 of 40"),
        ("mmoe", "SIGTERM", 143, "after epoch 3 of 4"),
        ("continual", "SIGINT", 130, "after experience 3 of 5"),
    ],
)
def test_a_signal_saves_where_the_run_is_and_it_resumes_to_the_same_result(
    run, stop_signal, exit_code, where, tmp_path, capsys
):
    # Periodic checkpoints too rare to help: what survives is the signal's own checkpoint.
    args = [*RUNS[run], "--seed", "1", "--no-progress", "--checkpoint-every", "1000"]
    assert main([*args, "--workdir", str(tmp_path / "whole")]) == 0

    stopped = tmp_path / "stopped"
    code = _SIGNAL_AFTER_RECORDS.format(records=3, signal=stop_signal, args=[*args, "--workdir", str(stopped)])
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert process.returncode == exit_code, process.stderr[-2000:]
    assert f"{stop_signal} received" in process.stdout
    errors = [line for line in process.stderr.splitlines() if line.startswith("metajax ")]
    assert errors == [
        f"metajax {run}: stopped by {stop_signal} {where}; its checkpoint is saved in {stopped / 'checkpoints'}: "
        "rerun the same command to resume"
    ], process.stderr[-2000:]
    assert "Traceback" not in process.stderr
    assert [p.name for p in (stopped / "checkpoints").iterdir()] == [where.split()[-3]]
    assert not (stopped / "summary.json").exists()
    _resumes_to_the_same_run(args, stopped, tmp_path / "whole", capsys)


def test_a_second_signal_acts_at_once_and_the_handlers_are_given_back():
    code = """
import os, signal
from metajax.train.interruption import StopSignals
with StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    print("first noted", stop.received == signal.SIGINT)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        print("second ignored")
    except KeyboardInterrupt:
        print("second raised KeyboardInterrupt")
print("restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
      signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
"""
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = process.stdout.splitlines()
    assert lines[0].startswith("SIGINT received: stopping after a checkpoint"), process.stderr[-2000:]
    assert lines[1:] == ["first noted True", "second raised KeyboardInterrupt", "restored True True"]


def test_a_save_cut_short_leaves_the_previous_checkpoint_usable(tmp_path, capsys):
    args = [*RUNS["reptile"], "--no-progress", "--workdir", str(tmp_path)]
    process = subprocess.run(
        [sys.executable, "-m", "metajax.cli", *args], env={**os.environ, KILL_AFTER_SAVES_VARIABLE: "1"}
    )
    assert process.returncode == -9
    # What a kill in the middle of orbax's next save leaves: a temporary folder, never renamed.
    partial = tmp_path / "checkpoints" / "40.orbax-checkpoint-tmp-1700000000000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "half_written").write_bytes(b"\0" * 100)
    assert main(args) == 0
    assert "resuming from the checkpoint at step 20 of 60" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["meta_iters_done"] == 60


def _damage(checkpoint: Path) -> None:
    """Overwrites the array data of a checkpoint, as a disk error or a partial copy would leave it."""
    data = [path for path in (checkpoint / "state").rglob("*") if path.is_file() and path.parent.name == "d"]
    assert data, f"no array data found under {checkpoint}"
    for path in data:
        path.write_bytes(b"not the array data")


def test_a_damaged_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(tmp_path):
    # In fresh processes: a failed read leaves orbax's asyncio callbacks to a closed event loop,
    # which Python reports as unraisable when they are collected, whichever test runs then.
    args = [sys.executable, "-m", "metajax.cli", *RUNS["reptile"], "--seed", "1", "--no-progress"]
    assert main([*args[3:], "--workdir", str(tmp_path / "whole")]) == 0
    damaged = tmp_path / "damaged"
    environment = {**os.environ, KILL_AFTER_SAVES_VARIABLE: "2"}  # Killed after the checkpoint at step 40.
    assert subprocess.run([*args, "--workdir", str(damaged)], env=environment).returncode == -9
    _damage(damaged / "checkpoints" / "40")
    resumed = subprocess.run([*args, "--workdir", str(damaged)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(
        r"the checkpoint at step 40 cannot be read \(.+\); moved it to .*unreadable_checkpoints/40\.", resumed.stdout
    )
    assert "resuming from the checkpoint at step 20 of 60" in resumed.stdout
    assert "Traceback" not in resumed.stderr and "Exception ignored" not in resumed.stderr
    assert [p.name.split(".")[0] for p in (damaged / "unreadable_checkpoints").iterdir()] == ["40"]
    _assert_same_run(damaged, tmp_path / "whole")  # Step 40 saved again on the way.

    for checkpoint in (damaged / "checkpoints").iterdir():
        _damage(checkpoint)
    refused = subprocess.run([*args, "--workdir", str(damaged)], capture_output=True, text=True)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if not line.startswith(("WARNING", "I", "W"))]
    assert len(errors) == 1 and "the checkpoint at step 60 in" in errors[0], refused.stderr[-2000:]
    assert "nor can any earlier one" in errors[0]
    assert sorted(p.name for p in (damaged / "checkpoints").iterdir()) == ["20", "40", "60"]  # Nothing moved.


@pytest.mark.parametrize("run", ["reptile", "mmoe", "continual"])
def test_same_command_same_seed_same_summary(run, tmp_path):
    for name in ("a", "b"):
        assert main([*RUNS[run], "--seed", "2", "--no-progress", "--workdir", str(tmp_path / name)]) == 0
    assert _results(tmp_path / "a") == _results(tmp_path / "b")


def test_a_workdir_in_use_by_another_run_is_refused_naming_the_process(tmp_path, capsys):
    args = [*RUNS["reptile"], "--no-progress", "--workdir", str(tmp_path)]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom metajax.train.checkpoints import _WorkdirLock\n"
         f"lock = _WorkdirLock(__import__('pathlib').Path({str(tmp_path)!r}))\nprint('locked', flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(args) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"metajax reptile: error: {tmp_path} is in use by another metajax run (process {holder.pid}); "
            "wait for it to end, or use another --workdir"
        ]
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
    assert main(args) == 0  # The lock went with the process.
    assert main(args) == 0  # And a run releases its own: the same command again rescores the finished run.


def test_workdir_of_another_config_is_refused_naming_the_fields(tmp_path, capsys):
    args = [*RUNS["reptile"], "--no-progress", "--workdir", str(tmp_path)]
    assert main([*args, "--seed", "0"]) == 0
    assert main([*args, "--seed", "5", "--meta-iters", "80"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with a different config: meta_iters (workdir: 60, now: 80), seed (workdir: 0, now: 5)" in err
    assert len(err.strip().splitlines()) == 1


def test_a_workdir_from_before_a_new_field_resumes_at_the_fields_default(tmp_path, capsys):
    """Fields added later (here the continual optimizer and buffer update) are absent from older
    workdirs; at their defaults the run is the one that version made, so it resumes; otherwise refused."""
    args = ["continual", "--strategy", "replay", "--no-progress", "--workdir", str(tmp_path)]
    assert main(args) == 0
    config_file = tmp_path / "run_config.json"
    older = {k: v for k, v in json.loads(config_file.read_text()).items() if k not in ("optimizer", "buffer_update")}
    config_file.write_text(json.dumps(older))
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from the checkpoint" in capsys.readouterr().out
    assert main([*args, "--optimizer", "sgd"]) == 2
    assert "different config: optimizer (workdir: 'adam', now: 'sgd')" in capsys.readouterr().err


def test_divergence_names_the_step_and_exits_non_zero(tmp_path, capsys):
    args = ["reptile", "--inner-lr", "1e4", "--meta-iters", "40", "--log-every", "10", "--no-progress"]
    assert main([*args, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "meta-training" in err and "at step" in err
    assert "last good checkpoint" in err or "no checkpoint had been saved yet" in err


# Values a user might type, valid or not.
_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=50).map(str),
    st.sampled_from(
        ["0", "-1", "1e9", "nan", "inf", "abc", "", "1.5", "sgd", "ple", "class-il", "replay", "mmoe", "random"]
    ),
)
_FLAGS = {
    "reptile": ["--ways", "--shots", "--query-shots", "--meta-batch", "--inner-steps", "--inner-lr", "--meta-iters",
                "--eval-tasks", "--inner-optimizer", "--meta-step-size", "--checkpoint-every", "--split",
                "--also-eval-shots"],
    "maml": ["--ways", "--shots", "--inner-steps", "--second-order-steps", "--meta-lr", "--eval-inner-steps",
             "--meta-batch", "--devices"],
    "protonets": ["--ways", "--shots", "--query-shots", "--meta-lr"],
    "mmoe": ["--model", "--experts", "--epochs", "--batch-size", "--correlation", "--weighting", "--tower-layers",
             "--learning-rate", "--task-experts", "--levels"],
    "continual": ["--strategy", "--scenario", "--buffer-size", "--epochs", "--batch-size", "--seeds", "--ewc-lambda",
                  "--experiences", "--hidden", "--buffer-policy", "--learning-rate"],
}  # fmt: skip


@st.composite
def _command_lines(draw):
    command = draw(st.sampled_from(sorted(_FLAGS)))
    flags = draw(st.lists(st.sampled_from(_FLAGS[command]), max_size=4, unique=True))
    argv = [command] + [part for flag in flags for part in (flag, draw(_VALUES))]
    # Data-free choices only (no TFDS download); ProtoNets' Omniglot from a folder that is not there.
    return argv + (["--data-dir", "/nonexistent/omniglot"] if command == "protonets" else [])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=_command_lines())
def test_no_traceback_reaches_the_user(argv, tmp_path_factory, capsys):
    """Whatever the arguments: valid ones pass the dry run, others fail with one line and exit code 2."""
    workdir = tmp_path_factory.mktemp("dry")
    try:
        code = main([*argv, "--dry-run", "--no-progress", "--workdir", str(workdir)])
    except SystemExit as exit_info:  # argparse's own errors.
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and "error:" in err, (argv, err)


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Reads TensorBoard event files (TFRecord framing: length, its CRC, an Event proto, its CRC) by hand."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_logs_as_json_lines_and_tensorboard_and_plot(tmp_path, capsys):
    assert main([*RUNS["mmoe"], "--no-progress", "--workdir", str(tmp_path)]) == 0
    losses = _tensorboard_scalars(tmp_path / "tensorboard")["train_task_losses/task_1"]
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in losses] == [r["epoch"] for r in log] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in losses], [r["train_task_losses"]["task_1"] for r in log], rtol=1e-6)

    capsys.readouterr()
    assert main(["plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("learning_curves.png", "gate_weights.png"):
        assert f"wrote {tmp_path / name}" in out
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_plot_of_a_folder_without_a_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert f"no metrics.jsonl in {tmp_path}" in capsys.readouterr().err


def test_plot_of_a_damaged_log_names_the_file_and_line(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo\n')
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{tmp_path / 'metrics.jsonl'}, line 2, is not JSON" in err[0]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (tmp_path / "summary.json").write_text("{")
    assert main(["plot", str(tmp_path)]) == 2
    assert f"{tmp_path / 'summary.json'} is not JSON" in capsys.readouterr().err


SHARDED = {
    "maml": ["maml", "--meta-batch", "8", "--meta-iters", "20", "--log-every", "10", "--eval-tasks", "40",
             "--eval-chunk", "20"],
    "mmoe": ["mmoe", "--epochs", "2", "--batch-size", "500", "--experts", "3"],
    "continual": ["continual", "--strategy", "replay", "--buffer-size", "200", "--seeds", "4"],
}  # fmt: skip


def _numbers(value, prefix=""):
    """Every number of a summary, by path, timing fields left out."""
    if isinstance(value, dict):
        return {k: v for key, inner in value.items() for k, v in _numbers(inner, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, inner in enumerate(value) for k, v in _numbers(inner, f"{prefix}/{i}").items()}
    return {prefix: value} if isinstance(value, float) else {}


# The jitted programs a run calls again and again (the same shapes each time).
REPEATED_PROGRAMS = {"maml": ["train_chunk"], "mmoe": ["train_epoch"], "continual": ["train_runs", "accuracy_of_runs"]}


class _CompileCounter(logging.Handler):
    """Counts ``jax.log_compiles``'s "Compiling jit(NAME) ..." lines by NAME."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def emit(self, record):
        match = re.match(r"Compiling jit\((\w+)\)", record.getMessage())
        if match:
            self.counts[match.group(1)] += 1


@pytest.mark.parametrize("run", sorted(SHARDED))
def test_four_devices_give_the_single_device_results(run, tmp_path):
    """The tests run with 4 forced CPU devices (conftest); float sums split over devices may round differently.

    Each repeated program compiles once on 4 devices too: a state first placed
    on one device and returned replicated used to compile the step twice.
    """
    import jax

    assert len(jax.devices()) == 4
    counter, jax_logger = _CompileCounter(), logging.getLogger("jax")
    for devices in ("1", "4"):
        jax_logger.addHandler(counter)
        try:
            with jax.log_compiles():
                args = [*SHARDED[run], "--devices", devices, "--no-progress", "--workdir", str(tmp_path / devices)]
                assert main(args) == 0
        finally:
            jax_logger.removeHandler(counter)
        for program in REPEATED_PROGRAMS[run]:
            assert counter.counts[program] == 1, (devices, program, counter.counts[program])
        counter.counts.clear()
    one, four = (_without_timing(json.loads((tmp_path / d / "summary.json").read_text())) for d in ("1", "4"))
    one_numbers, four_numbers = _numbers(one), _numbers(four)
    assert one_numbers.keys() == four_numbers.keys() and one_numbers
    # Five experiences of training amplify float rounding (sums split over devices)
    # into a few flipped test examples out of 400 per experience and seed: within
    # 2 points there; 1e-3 relative elsewhere.
    absolute = 2e-2 if run == "continual" else 1e-4
    for name, value in one_numbers.items():
        assert four_numbers[name] == pytest.approx(value, rel=1e-3, abs=absolute), name


def test_more_devices_than_there_are_is_refused(tmp_path, capsys):
    assert main(["maml", "--devices", "9", "--workdir", str(tmp_path)]) == 2
    assert "devices must be between 1 and the 4 available, got 9" in capsys.readouterr().err
