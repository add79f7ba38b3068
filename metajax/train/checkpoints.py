"""Checkpoints of a run in its workdir, with orbax: save every few steps, resume from the latest.

A run's whole state is a pytree of arrays (params, optimizer and strategy
states, the step) plus a small JSON record (the log position, the seconds
trained so far). Random keys are not stored: every runner derives its keys
from the seed and the step number alone, so the step restores them exactly.

orbax writes each checkpoint to a temporary folder and renames it when it is
complete, so a run killed during a save leaves the previous checkpoint usable.
A checkpoint damaged later is set aside, and the run resumes from the one before.
The workdir remembers the config it was started with (``run_config.json``); a
rerun with a different config is refused, naming the differing fields.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import signal
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from metajax.train.run_info import report
from metajax.train.sharding import is_primary_process

# Fault injection for the tests of resumption: the process SIGKILLs itself right
# after its N-th completed save, as a pre-empted job would die mid-training.
KILL_AFTER_SAVES_VARIABLE = "METAJAX_KILL_AFTER_CHECKPOINTS"

# Fields that may change between a run and its resumption: where the data lives
# (a resumed job may land on another machine) does not change the results, and
# the evaluation's size and shot counts do not change training, so a finished
# run can be scored again on more tasks or shots from its last checkpoint.
RESUMABLE_DIFFERENCES = ("data_dir", "eval_tasks", "eval_chunk", "also_eval_shots")


LOCK_FILE = ".metajax.lock"

# The layout of a family's config and state, recorded in run_config.json (absent: 1, the first layout).
RUN_FORMAT_FIELD = "metajax_run_format"


class ConfigMismatch(ValueError):
    """The workdir holds a run with another config."""


class WorkdirInUse(ValueError):
    """Another process is training a run in this workdir."""


class _WorkdirLock:
    """An exclusive ``flock`` on ``workdir/.metajax.lock`` while a run trains there.

    Two processes saving checkpoints of one run into one folder (a command
    started twice, a scheduler's retry while the first job still runs) would
    overwrite each other's steps. The lock file holds the owner's process id;
    the kernel drops the lock when the process ends, however it ends, so a
    killed run leaves no stale lock behind.
    """

    def __init__(self, workdir: Path):
        descriptor = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise WorkdirInUse(
                f"{workdir} is in use by another metajax run (process {owner}); wait for it to end, "
                "or use another --workdir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        # Closing the descriptor drops the lock: at release(), or with this object should a run
        # end in an exception before it.
        self._close = weakref.finalize(self, os.close, descriptor)

    def release(self) -> None:
        self._close()  # A finalizer runs once: a second release does nothing.


def _quiet_closed_loop_callbacks() -> None:
    """Keeps the leftovers of a failed orbax read off the user's screen.

    After a read fails, orbax's pending asyncio callbacks meet their closed
    event loop when they are collected, and Python prints each
    ``RuntimeError('Event loop is closed')`` with its traceback as an
    unraisable exception, however the run goes on. This hook drops exactly
    those and passes every other unraisable exception to the hook before it.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)

    hook.drops_closed_loop_callbacks = True  # type: ignore[attr-defined]  # Marks ours, not to wrap twice.
    sys.unraisablehook = hook


class RunCheckpoints:
    """The checkpoints of one run: ``restore`` the latest, ``save`` new ones, ``close`` at the end."""

    def __init__(self, workdir: str | Path, config, *, keep: int = 3, read_only: bool = False):
        """``config``: the run's config dataclass (its field defaults also decide which workdirs resume).

        ``read_only``: to read a run's checkpoints without training it (``metajax.train.loading``): no
        lock, no check or record of the config, and an unreadable checkpoint is passed over, not moved.
        """
        self.directory = Path(workdir).absolute() / "checkpoints"
        self._read_only = read_only
        self.restored_step: int | None = None
        self._saves = 0
        self._last_step: int | None = None
        if read_only:
            self._lock = None
            absl_logger = logging.getLogger("absl")
            level = absl_logger.level
            absl_logger.setLevel(logging.ERROR)  # orbax warns that a read-only folder is read-only.
            try:
                self._manager = ocp.CheckpointManager(
                    self.directory,
                    options=ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0),
                )
            finally:
                absl_logger.setLevel(level)
            return
        # Of several hosts sharing the workdir, process 0 locks it; the others save with it.
        self._lock = _WorkdirLock(Path(workdir)) if is_primary_process() else None
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
            for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
        run_format = getattr(type(config), "RUN_FORMAT", 1)
        self._check_config(Path(workdir) / "run_config.json", dataclasses.asdict(config), defaults, run_format)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
        )

    @staticmethod
    def _check_config(path: Path, config: dict[str, Any], defaults: dict[str, Any], run_format: int) -> None:
        config, defaults = json.loads(json.dumps([config, defaults]))  # Tuples as lists, as in the file.
        if path.exists():
            stored = json.loads(path.read_text())
            stored_format = stored.pop(RUN_FORMAT_FIELD, 1)
            if stored_format != run_format:
                raise ConfigMismatch(
                    f"{path.parent} holds a run in the layout of another metajax version (run format "
                    f"{stored_format}; this version reads format {run_format}: its configs and checkpoints hold "
                    "other fields); resume it with the version that started it, or use another --workdir"
                )
            # A field the workdir lacks came with a later version; at its default it does what
            # that version did, so the run resumes.
            stored = {**{name: defaults[name] for name in set(config) - set(stored) if name in defaults}, **stored}
            differing = sorted(
                name
                for name in set(stored) | set(config)
                if name not in RESUMABLE_DIFFERENCES and stored.get(name) != config.get(name)
            )
            if differing:
                details = ", ".join(
                    f"{name} (workdir: {stored.get(name)!r}, now: {config.get(name)!r})" for name in differing
                )
                raise ConfigMismatch(
                    f"{path.parent} holds a run with a different config: {details}; use another --workdir, "
                    "or rerun with the workdir's settings to resume it"
                )
        elif is_primary_process():  # Of several hosts sharing the workdir, one writes.
            path.parent.mkdir(parents=True, exist_ok=True)
            recorded = {**config, RUN_FORMAT_FIELD: run_format} if run_format != 1 else config
            path.write_text(json.dumps(recorded, indent=2) + "\n")

    @property
    def latest_step(self) -> int | None:
        if self._manager is None:  # Closed: the step it had last.
            return self._last_step
        return self._manager.latest_step()

    def kept_message(self) -> str:
        """Where the last good checkpoint is, for the error of a run that stops."""
        step = self.latest_step
        if step is None:
            return "no checkpoint had been saved yet"
        return f"the last good checkpoint ({step}) is kept in {self.directory}"

    def restore(self, like: Any) -> tuple[Any, dict[str, Any]] | None:
        """The latest readable ``(state, record)``, with ``state`` shaped like ``like``; ``None`` without
        checkpoints.

        A checkpoint that cannot be read (damaged or partly copied files) is
        moved to ``unreadable_checkpoints/`` beside ``checkpoints/``, saying so,
        when an earlier one can be read: the run resumes from that one, and
        the step is free to be saved again. When none can be read nothing is
        moved and a ``ValueError`` says what to do. A run of several processes
        does not move files (they share the folder): it stops with the error.
        """
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        _quiet_closed_loop_callbacks()  # Before reading: a failed read's leftovers start during it.
        unreadable = []
        for step in steps:
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()),
                )
            except Exception as error:  # orbax and TensorStore raise many kinds for a damaged file.
                first: BaseException = error
                while first.__cause__ is not None:  # The first error says most (which file, what is wrong).
                    first = first.__cause__
                reason = f"{type(first).__name__}: {' '.join(str(first).split())[:300]}"
                if jax.process_count() > 1:
                    raise ValueError(
                        f"the checkpoint at step {step} in {self.directory} cannot be read ({reason}); a run of "
                        "several processes does not fall back to an earlier one: move this one away and rerun"
                    ) from None
                unreadable.append((step, reason))
                continue
            self._set_aside(unreadable)
            self.restored_step = step
            # Host copies, not arrays committed to the device orbax put them on, so
            # that the run lays them out over its own mesh as it did the fresh state.
            return jax.tree.map(np.asarray, restored["state"]), restored["record"]
        step, reason = unreadable[0]
        raise ValueError(
            f"the checkpoint at step {step} in {self.directory} cannot be read ({reason}), nor can any "
            f"earlier one; move {self.directory} away to start the run afresh"
        )

    def _set_aside(self, unreadable: list[tuple[int, str]]) -> None:
        """Moves unreadable checkpoints out of orbax's folder, keeping them for a look (read-only: says so)."""
        if self._read_only:
            for step, reason in unreadable:
                report(f"the checkpoint at step {step} cannot be read ({reason}); reading an earlier one")
            return
        aside = self.directory.parent / "unreadable_checkpoints"
        for step, reason in unreadable:
            aside.mkdir(exist_ok=True)
            target = aside / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
            (self.directory / str(step)).rename(target)
            report(f"the checkpoint at step {step} cannot be read ({reason}); moved it to {target}")
        if unreadable:
            self._manager.reload()

    def save(self, step: int, state: Any, record: dict[str, Any]) -> None:
        """Saves ``state`` and the JSON-able ``record`` as checkpoint ``step`` (blocking until it is complete)."""
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)),
            force=True,
        )
        self._manager.wait_until_finished()
        self._saves += 1
        if os.environ.get(KILL_AFTER_SAVES_VARIABLE) == str(self._saves):
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        if self._manager is not None:
            self._last_step = self._manager.latest_step()
            self._manager.close()
            self._manager = None
        if self._lock is not None:
            self._lock.release()


def keep_log_until(path: Path, last: int, field: str = "step") -> None:
    """Drops the lines of a JSON-lines log written after checkpoint ``last`` (they will be written again)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)[field] <= last]
    path.write_text("".join(line + "\n" for line in lines))
