"""What a run tells its user: the metadata every summary.json starts with, the summary, progress lines and bars."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from pathlib import Path
from typing import Any

import jax

import metajax
from metajax.train.sharding import is_primary_process


def run_metadata(config) -> dict[str, Any]:
    return {
        "metajax_version": metajax.__version__,
        "jax_version": jax.__version__,
        "device": jax.devices()[0].device_kind,
        "config": dataclasses.asdict(config),
    }


def progress_bar(iterable=None, *, show: bool, **options):
    """A tqdm bar over ``iterable``, drawn when ``show`` and by process 0 alone of a multi-host run."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not show or not is_primary_process(), **options)


def report(message: str) -> None:
    """Prints a line of a run's progress above its progress bar; in a multi-host run, process 0 alone speaks."""
    if is_primary_process():
        from tqdm.auto import tqdm

        tqdm.write(message)


def write_summary(workdir: Path, summary: dict[str, Any]) -> None:
    """Writes ``workdir/summary.json``; in a multi-host run process 0 alone writes (all computed the same)."""
    if is_primary_process():
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def provenance(command: str | None = None) -> dict[str, str]:
    """Where a benchmark's figures came from, for its results file: the command, the machine and JAX's version.

    ``command`` defaults to the command line that started the script (``python benchmarks/NAME.py ARGS``).
    """
    if command is None:
        command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return {
        "command": command,
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}",
        "jax_version": jax.__version__,
    }
