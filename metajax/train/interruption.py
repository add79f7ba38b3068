"""Stopping a run on SIGTERM or Ctrl-C with its progress saved.

Schedulers pre-empt a job with SIGTERM and kill it a grace period later
(Slurm, Kubernetes, spot instances: 30 s or more). By default the signal ends
Python at once and a run loses everything since its last periodic checkpoint;
inside ``StopSignals`` it only sets a flag, which the runner reads where it can
save (after a chunk of meta-steps, an epoch, an experience): it saves, then
stops with ``RunInterrupted``. Rerunning the same command resumes from there.
A multi-host run does the same through JAX's preemption service.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils

from metajax.train.errors import RunInterrupted
from metajax.train.run_info import report

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """``with StopSignals() as stop:`` turns a SIGTERM or SIGINT into ``stop.should_stop(...)`` being true.

    One process: the signal sets ``received``, read at the run's next point
    where it can save. A second signal acts at once, as it would have without
    us (Ctrl-C twice stops without saving; the last periodic checkpoint is
    still there). Handlers are taken over in the main thread only, where
    Python delivers signals.

    Several processes (``jax.distributed``): the processes save together, so
    none may stop on its own. JAX's preemption service, on by default there,
    already catches SIGTERM; ``should_stop`` asks it
    (``multihost_utils.reached_preemption_sync_point``), and every process
    gets true at the same point, whichever of them was signalled.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._several_processes = False

    def __enter__(self) -> StopSignals:
        self._several_processes = jax.process_count() > 1
        if not self._several_processes and threading.current_thread() is threading.main_thread():
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

    def should_stop(self, point: int) -> bool:
        """Whether to save and stop at this point of the run.

        ``point`` numbers the places where the run can save (chunks, epochs,
        experiences) in increasing order, the same in every process: JAX's
        protocol agrees on the point after the highest any process has reached.
        """
        if self._several_processes:
            try:
                reached = multihost_utils.reached_preemption_sync_point(point)
            except RuntimeError:  # The service is off (jax_enable_preemption_service): periodic checkpoints only.
                return False
            if reached:
                self.received = signal.SIGTERM
        return self.received is not None

    def interrupted(self, where: str, checkpoint_directory) -> RunInterrupted:
        """The error to stop with once the checkpoint ``where`` names is saved."""
        assert self.received is not None, "interrupted() before a signal was received"
        name = signal.Signals(self.received).name
        return RunInterrupted(
            f"stopped by {name} {where}; its checkpoint is saved in {checkpoint_directory}: "
            "rerun the same command to resume",
            self.received,
        )
