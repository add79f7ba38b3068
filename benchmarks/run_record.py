"""Where a benchmark's figures came from: the command, the machine and the JAX version, for its results file."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import jax


def provenance(command: str | None = None) -> dict[str, str]:
    """``command`` defaults to the command line that started this script (``python benchmarks/NAME.py ARGS``)."""
    if command is None:
        command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return {
        "command": command,
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}",
        "jax_version": jax.__version__,
    }
