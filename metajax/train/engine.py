"""The run engine: what every family's run does around its own unit of work.

A meta-learning run trains chunks of meta-steps, a multi-task run epochs, a
continual run experiences; around that unit all three do the same things, and
this module does them once:

- ``start_run``: resolve the config, make the workdir, check the checkpoint interval;
- ``dry_run_summary``: what a dry run returns once the family has validated its arguments and data;
- ``train_loop``: the workdir lock and checkpoints (restored to resume exactly, saved
  periodically, at the end and on a stop signal), the metrics log and its
  TensorBoard copy, the progress bar, SIGTERM / Ctrl-C, the stop on a loss that is not finite,
  and the training time carried across resumptions;
- ``write_summary`` (from ``run_info``): the summary every run ends with.

A family's runner is then its data, its model, its jitted unit of work, its
record and its summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from metajax.train.checkpoints import RunCheckpoints
from metajax.train.errors import TrainingDiverged
from metajax.train.interruption import StopSignals
from metajax.train.metrics_log import MetricsLog
from metajax.train.run_info import progress_bar, report, run_metadata
from metajax.train.run_info import write_summary as write_summary


def start_run(config: Any, workdir: str | Path, checkpoint_every: int) -> tuple[Any, Path]:
    """``(config.resolved(), workdir as a Path)``, the workdir made; a bad checkpoint interval fails first."""
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint-every must be a positive integer, got {checkpoint_every}")
    config = config.resolved()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return config, workdir


def dry_run_summary(config) -> dict[str, Any]:
    """What ``dry_run=True`` returns, once the runner has validated its arguments and data."""
    return {"dry_run": True, **run_metadata(config)}


class Unit(NamedTuple):
    """What one call of a family's unit of work reports to the engine.

    Attributes:
      carry: everything the checkpoint saves (the training state, and e.g. the best epoch's weights).
      units: how many units (steps, epochs, experiences) the call trained.
      record: the line for ``metrics.jsonl`` (and TensorBoard); ``None`` writes none.
      diverged: why training cannot go on (a loss that is not finite), or ``None``.
      postfix: what the progress bar shows beside its count.
    """

    carry: Any
    units: int
    record: dict[str, Any] | None = None
    diverged: str | None = None
    postfix: dict[str, str] | None = None


class Loop(NamedTuple):
    """How a family counts its run, for the engine's messages, log and bar.

    Attributes:
      total: units in the whole run.
      done: units a carry and its progress record have trained (``done(carry, progress)``).
      position: where a run is, in words, after ``done`` units ("at step 20 of 60",
        "after epoch 3 of 5"): used when resuming and when stopping.
      log_field: the field that orders the records of ``metrics.jsonl``.
      log_position: the value of ``log_field`` in the record of the last of ``done`` units.
      description: the progress bar's label.
      bar_unit: the progress bar's unit.
    """

    total: int
    done: Callable[[Any, dict[str, Any]], int]
    position: Callable[[int], str]
    log_field: str
    description: str
    bar_unit: str
    log_position: Callable[[int], int] = lambda done: done


def train_loop(
    workdir: Path,
    config,
    carry,
    progress: dict[str, Any],
    loop: Loop,
    train: Callable[[Any, dict[str, Any], int], Unit],
    *,
    checkpoint_every: int,
    show_progress: bool,
    place: Callable[[Any], Any] = lambda carry: carry,
) -> tuple[Any, dict[str, Any]]:
    """Trains ``carry`` until ``loop.total`` units are done, resuming from the workdir's latest checkpoint.

    ``train(carry, progress, done)`` trains the next units and returns a
    ``Unit``; it may update the JSON-able ``progress`` dict (what the summary
    needs beyond the carry), which is checkpointed with the carry. The engine
    keeps ``progress["train_seconds"]``, the training time across resumptions.
    ``place`` lays a fresh or restored carry out over the run's devices.

    A checkpoint is saved at the first unit past every ``checkpoint_every``,
    at the end, and where a stop signal is heeded (then ``RunInterrupted``).
    A ``Unit`` with ``diverged`` set stops the run with ``TrainingDiverged``
    naming the last good checkpoint.

    Returns:
      The trained ``(carry, progress)``.
    """
    checkpoints = RunCheckpoints(workdir, config)
    # Not closed if this fails: closing orbax's manager after a failed read prints the read's leftover
    # asyncio errors; the workdir lock is released when the object is collected, or with the process.
    restored = checkpoints.restore(carry)
    if restored is not None:
        carry, progress = restored
        report(f"resuming from the checkpoint {loop.position(loop.done(carry, progress))} in {workdir}")
    carry = place(carry)
    done = loop.done(carry, progress)
    log = MetricsLog(
        workdir, step_field=loop.log_field, resume_after=None if restored is None else loop.log_position(done)
    )
    started = time.perf_counter() - progress.get("train_seconds", 0.0)
    bar = progress_bar(show=show_progress, total=loop.total, initial=done, desc=loop.description, unit=loop.bar_unit)
    last_saved = done
    try:
        with StopSignals() as stop:  # SIGTERM, Ctrl-C: save, then stop.
            # point: the places where a stop can be heeded, numbered 0, 1, ... in every process alike.
            point = 0
            while done < loop.total:
                unit = train(carry, progress, done)
                if unit.diverged is not None:
                    raise TrainingDiverged(f"{unit.diverged}; {checkpoints.kept_message()}")
                carry, done = unit.carry, done + unit.units
                if unit.record is not None:
                    log.write(unit.record)
                bar.update(unit.units)
                if unit.postfix:
                    bar.set_postfix(unit.postfix)
                progress["train_seconds"] = time.perf_counter() - started
                stopping = stop.should_stop(point)
                point += 1
                if done // checkpoint_every > last_saved // checkpoint_every or done == loop.total or stopping:
                    checkpoints.save(done, carry, progress)
                    last_saved = done
                if stopping:
                    raise stop.interrupted(loop.position(done), checkpoints.directory)
    finally:
        bar.close()
        log.close()
        checkpoints.close()
    return carry, progress


class SteadyClock:
    """Training time without the compilation of a process's first unit, carried in the progress record.

    ``tick(progress, seconds, units)`` after each timed unit; the first of a
    process is left out (it compiles). ``rate(progress, fallback_units)``: units
    per second over the steady ones, or over the whole training time (compilation
    included) when a process trained a single unit.
    """

    def __init__(self, seconds_field: str, units_field: str):
        self.seconds_field, self.units_field = seconds_field, units_field
        self._first = True

    def tick(self, progress: dict[str, Any], seconds: float, units: int) -> None:
        if not self._first:
            progress[self.seconds_field] += seconds
            progress[self.units_field] += units
        self._first = False

    def rate(self, progress: dict[str, Any], fallback_units: int) -> float:
        seconds, units = progress[self.seconds_field], progress[self.units_field]
        if units == 0:
            seconds, units = progress["train_seconds"], fallback_units
        return units / seconds
