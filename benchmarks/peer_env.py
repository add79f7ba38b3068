"""Interpreter management for the PyTorch speed peers (Reptile, MMoE).

The metajax environment deliberately does not depend on torch, so the peer
(``torch_reptile.py``) runs in its own interpreter: either a dedicated
virtual environment built here, or the current interpreter when torch is
already installed in it (e.g. on a GPU machine with a preinstalled CUDA
build, which we must not shadow with a CPU wheel).

The venv installs a pinned ``torch`` because an unpinned install resolves to
the newest release with multi-gigabyte CUDA dependencies; the pinned version
is available locally as a CPU wheel, so building the venv is quick.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".venv-torch"
PEER_SCRIPT = BENCH_DIR / "torch_reptile.py"
TORCH_VERSION = "2.13.0"
REQUIREMENTS = (f"torch=={TORCH_VERSION}", "numpy")


def _venv_python(path: Path) -> Path:
    """Path of the interpreter inside venv ``path`` (not symlink-resolved,
    since resolving would leave the venv and lose its site-packages)."""
    bindir = "Scripts" if os.name == "nt" else "bin"
    exe = "python.exe" if os.name == "nt" else "python"
    return path.absolute() / bindir / exe


def _venv_ready(python: Path) -> bool:
    """True if ``python`` imports numpy and the pinned torch.

    Checking the version (not just importability) means a venv left over
    from an older pin gets upgraded instead of silently reused.
    """
    probe = f"import numpy, torch, sys; sys.exit(torch.__version__.split('+')[0] != {TORCH_VERSION!r})"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, check=False)
    return result.returncode == 0


def ensure_torch_venv(path: Path = DEFAULT_VENV) -> Path:
    """Create (if needed) a venv at ``path`` with torch and numpy; return its python.

    Idempotent: when the venv exists and already imports the pinned torch,
    this only costs one interpreter start-up for the probe.
    """
    python = _venv_python(path)
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=path.exists()).create(path)
    if not _venv_ready(python):
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            check=True,
        )
        if not _venv_ready(python):
            raise RuntimeError(f"{python} still cannot import torch=={TORCH_VERSION} after install")
    return python


def torch_python(venv_path: Path = DEFAULT_VENV, prefer_current: bool = False) -> Path:
    """Interpreter to run the peer with.

    With ``prefer_current`` and torch importable here, use ``sys.executable``
    (any torch version: a preinstalled GPU build is what we want to measure);
    otherwise fall back to the dedicated venv.
    """
    if prefer_current and importlib.util.find_spec("torch") is not None:
        return Path(sys.executable)
    return ensure_torch_venv(venv_path)


def run_peer(python: Path | str, args: list[str], script: Path = PEER_SCRIPT) -> dict:
    """Run ``script`` (default ``torch_reptile.py``) under ``python`` with ``args``; return its JSON result.

    The script prints exactly one JSON object as its last stdout line;
    anything before it (and all of stderr) is diagnostics.
    """
    result = subprocess.run(
        [str(python), str(script), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"torch peer failed (exit {result.returncode}):\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"torch peer printed nothing on stdout:\n{result.stderr}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python benchmarks/peer_env.py [--prefer-current] [peer args...]``.

    Builds or reuses the interpreter, runs the peer, and prints its JSON.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prefer_current = "--prefer-current" in argv
    if prefer_current:
        argv.remove("--prefer-current")
    python = torch_python(DEFAULT_VENV, prefer_current=prefer_current)
    print(json.dumps(run_peer(python, argv)))


if __name__ == "__main__":
    main()
