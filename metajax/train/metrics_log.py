"""A run's metrics, as JSON lines and as TensorBoard event files, in its workdir."""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from metajax.train.checkpoints import keep_log_until
from metajax.train.sharding import is_primary_process


def scalars(prefix: str, value: Any) -> dict[str, float]:
    """Flattens a record into TensorBoard tags: nested dicts by ``/``; a list of
    numbers is logged as its mean (e.g. over seeds), a matrix as its column means."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(scalars(f"{prefix}/{key}" if prefix else str(key), inner))
        return out
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, Real):
        return {prefix: float(value)}
    if isinstance(value, list) and value:
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 1:
            return {prefix: float(array.mean())}
        if array.ndim == 2:
            return {f"{prefix}/{j}": float(m) for j, m in enumerate(array.mean(axis=0))}
    return {}


class MetricsLog:
    """Appends records to ``workdir/metrics.jsonl`` and ``workdir/tensorboard``.

    Of several processes of a multi-host run, only process 0 writes (the
    others compute the same records).

    Args:
      workdir: the run's folder.
      step_field: the record field that orders records (``step``, ``epoch``...).
      resume_after: the last step a checkpoint covers when the run resumes:
        records past it are dropped from both logs (they will be written
        again); ``None`` starts both logs afresh.
    """

    def __init__(self, workdir: str | Path, *, step_field: str, resume_after: int | None = None):
        from tensorboardX import SummaryWriter

        self._writer = None
        if not is_primary_process():
            return
        self.path = Path(workdir) / "metrics.jsonl"
        self.step_field = step_field
        if resume_after is None:
            self.path.write_text("")
        else:
            keep_log_until(self.path, resume_after, field=step_field)
        self._writer = SummaryWriter(
            str(Path(workdir) / "tensorboard"), purge_step=None if resume_after is None else resume_after + 1
        )

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        with self.path.open("a") as log:
            log.write(json.dumps(record) + "\n")
        step = record[self.step_field]
        for tag, value in scalars("", {k: v for k, v in record.items() if k != self.step_field}).items():
            self._writer.add_scalar(tag, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
