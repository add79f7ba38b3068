"""Several hosts: the same command in two processes joined by ``jax.distributed``
(``metajax --coordinator``; gloo collectives on CPU), each with two forced CPU
devices, gives the results of one process with four devices."""

import json
import os
import socket
import subprocess
import sys

import pytest
from test_runs import SHARDED, _damage, _numbers, _without_timing

from metajax.cli import main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


METAJAX = [sys.executable, "-m", "metajax.cli"]


def _start_on_two_hosts(args: list[str], workdir, commands=(METAJAX, METAJAX)) -> list[subprocess.Popen]:
    """Starts process 0 and 1 of a two-process run (``commands``: how each starts ``metajax``)."""
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    coordinator = f"localhost:{_free_port()}"
    return [
        subprocess.Popen(
            [
                *command,
                "--coordinator",
                coordinator,
                "--num-processes",
                "2",
                "--process-id",
                str(index),
                *args,
                "--devices",
                "4",
                "--no-progress",
                "--workdir",
                str(workdir),
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for index, command in enumerate(commands)
    ]


def _wait(processes: list[subprocess.Popen]) -> list[subprocess.CompletedProcess]:
    finished = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return finished


def _run_on_two_hosts(args: list[str], workdir) -> list[subprocess.CompletedProcess]:
    """Runs process 0 and 1 of a two-process run to their end, both successful."""
    finished = _wait(_start_on_two_hosts(args, workdir))
    for index, process in enumerate(finished):
        assert process.returncode == 0, f"process {index}:\n{process.stderr[-3000:]}"
    return finished


def _own_lines(output: str) -> list[str]:
    """A process's printed lines, without those of the gloo collectives' library.

    Gloo's threads print "[Gloo] Rank 1 is connected to 1 peer ranks. ..." to
    stdout concurrently, and one such line once came through split from its
    "[Gloo] Rank " prefix (CI, 2026-11-27): its text marks it as well. Under
    heavy load other fragments may come through, so the tests compare lines
    with process 0's rather than expect none.
    """
    return [line for line in output.splitlines() if line.strip() and "[Gloo]" not in line and "peer ranks" not in line]


@pytest.mark.parametrize("run", sorted(SHARDED))
def test_two_processes_give_the_one_process_results(run, tmp_path):
    host_0, host_1 = _run_on_two_hosts(SHARDED[run], tmp_path / "two_hosts")
    # Process 0 alone reports and writes: process 1 prints none of its lines (only, at most, gloo's).
    assert "wrote" in host_0.stdout and "wrote" not in host_1.stdout
    assert not set(_own_lines(host_0.stdout)) & set(_own_lines(host_1.stdout))
    assert main([*SHARDED[run], "--devices", "4", "--no-progress", "--workdir", str(tmp_path / "one_host")]) == 0
    two, one = (
        _numbers(_without_timing(json.loads((tmp_path / folder / "summary.json").read_text())))
        for folder in ("two_hosts", "one_host")
    )
    assert two.keys() == one.keys() and one
    for name, value in one.items():  # The same partition of the work: only reductions' order may differ.
        assert two[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    lines = (tmp_path / "two_hosts" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "one_host" / "metrics.jsonl").read_text().splitlines())  # One writer.


def test_two_processes_resume_from_their_checkpoint(tmp_path):
    """A finished two-process run, rerun with more test tasks, restores its weights and scores again."""
    _run_on_two_hosts(SHARDED["maml"], tmp_path)
    first = json.loads((tmp_path / "summary.json").read_text())
    host_0, _ = _run_on_two_hosts([*SHARDED["maml"], "--eval-tasks", "60"], tmp_path)
    assert "resuming from the checkpoint at step 20 of 20" in host_0.stdout + host_0.stderr
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["config"]["eval_tasks"] == 60 and again["final_training_loss"] == first["final_training_loss"]


def test_a_damaged_checkpoint_stops_a_run_of_several_processes_moving_nothing(tmp_path):
    _run_on_two_hosts(SHARDED["maml"], tmp_path)
    _damage(tmp_path / "checkpoints" / "20")
    for index, host in enumerate(_wait(_start_on_two_hosts(SHARDED["maml"], tmp_path))):
        assert host.returncode == 2, f"process {index}:\n{host.stderr[-3000:]}"
        assert "the checkpoint at step 20 in" in host.stderr and "does not fall back to an earlier one" in host.stderr
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["20"]
    assert not (tmp_path / "unreadable_checkpoints").exists()


def test_a_sigterm_to_one_host_stops_both_at_one_checkpoint_and_they_resume(tmp_path):
    """JAX's preemption service takes SIGTERM in a multi-host run; both processes agree on where to save."""
    args = [*SHARDED["maml"], "--meta-iters", "200", "--checkpoint-every", "1000"]
    # Process 1 (which writes nothing) signals itself after its 3rd chunk, as a scheduler would.
    signal_after_3_records = (
        "import os, signal, sys\n"
        "from metajax.cli import main\n"
        "from metajax.train.metrics_log import MetricsLog\n"
        "write, written = MetricsLog.write, []\n"
        "def write_then_signal(self, record):\n"
        "    write(self, record)\n"
        "    written.append(record)\n"
        "    if len(written) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "MetricsLog.write = write_then_signal\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    stopped = tmp_path / "stopped"
    host_0, host_1 = _wait(
        _start_on_two_hosts(args, stopped, (METAJAX, [sys.executable, "-c", signal_after_3_records]))
    )
    assert (host_0.returncode, host_1.returncode) == (143, 143), host_0.stderr[-3000:] + host_1.stderr[-3000:]
    saved = [int(p.name) for p in (stopped / "checkpoints").iterdir()]
    assert len(saved) == 1 and 30 <= saved[0] < 200, saved
    for host in (host_0, host_1):
        assert f"stopped by SIGTERM at step {saved[0]} of 200; its checkpoint is saved in" in host.stderr
        assert "Traceback" not in host.stderr
    assert not (stopped / "summary.json").exists()

    host_0, _ = _run_on_two_hosts(args, stopped)
    assert f"resuming from the checkpoint at step {saved[0]} of 200" in host_0.stdout + host_0.stderr
    assert main([*args, "--devices", "4", "--no-progress", "--workdir", str(tmp_path / "one_host")]) == 0
    resumed, one = (
        _numbers(_without_timing(json.loads((tmp_path / folder / "summary.json").read_text())))
        for folder in ("stopped", "one_host")
    )
    assert resumed.keys() == one.keys() and one
    for name, value in one.items():
        assert resumed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "localhost:1"], "--coordinator, --num-processes and --process-id go together"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
         "--process-id must be between 0 and 1, got 2"),
    ],
)  # fmt: skip
def test_incomplete_distributed_flags_are_refused(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*flags, "maml", "--workdir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
