"""Stopping a run on SIGTERM or Ctrl-C with its progress saved.

Schedulers pre-empt a job with SIGTERM and kill it a grace period later
(Slurm, Kubernetes, spot instances: 30 s or more). By default the signal ends
Python at once and a run loses everything since its last periodic checkpoint;
inside ``StopSignals`` it only sets a flag, which the runner reads where it can
save (after a chunk of meta-steps, an epoch, an experience): it saves, then
stops with ``RunInterrupted``. Rerunning the same command resumes from there.
"""

from __future__ import annotations

import signal
import threading

import jax

from metajax.train.errors import RunInterrupted
from metajax.train.run_info import report

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """``with StopSignals() as stop:`` turns SIGTERM and SIGINT into ``stop.received``.

    A second signal acts at once, as it would have without us (Ctrl-C twice
    stops without saving; the last periodic checkpoint is still there).
    Handlers are taken over only in the main thread of a single-process run:
    Python delivers signals to the main thread alone, and the processes of a
    multi-host run save together, so one process cannot save on its own
    signal; those runs keep the default behaviour and their periodic checkpoints.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exception) -> None:
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number: int, frame) -> None:
        if self.received is not None:  # The second: as without us (Ctrl-C raises KeyboardInterrupt).
            self._restore()
            signal.raise_signal(number)
            return
        self.received = number
        report(
            f"{signal.Signals(number).name} received: stopping after a checkpoint at the next point the run "
            "can save (send it again to stop at once, without saving)"
        )

    def interrupted(self, where: str, checkpoint_directory) -> RunInterrupted:
        """The error to stop with once the checkpoint ``where`` names is saved."""
        name = signal.Signals(self.received).name
        return RunInterrupted(
            f"stopped by {name} {where}; its checkpoint is saved in {checkpoint_directory}: "
            "rerun the same command to resume",
            self.received,
        )
