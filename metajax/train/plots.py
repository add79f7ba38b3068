"""``metajax plot WORKDIR``: a finished (or running) run's figures, from the files in its workdir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metajax.train.continual_training import plot_accuracy_matrix
from metajax.train.metrics_log import scalars

STEP_FIELDS = ("step", "epoch", "experience")


def _read_json_lines(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}, is not JSON ({error.msg}): {line[:80]!r}") from None
    return records


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error.msg} at line {error.lineno})") from None


def plot_run(workdir: str | Path) -> list[Path]:
    """Draws ``learning_curves.png`` from ``metrics.jsonl``, and from ``summary.json`` the accuracy
    matrix (continual runs) or the mean gate weights (mixture-of-experts runs); returns the files written.

    Raises:
      ValueError: when the folder holds no metrics of a metajax run.
    """
    workdir = Path(workdir)
    log_path = workdir / "metrics.jsonl"
    if not log_path.exists():
        raise ValueError(f"no metrics.jsonl in {workdir}: give the --workdir of a metajax run")
    records = _read_json_lines(log_path)
    if not records:
        raise ValueError(f"{log_path} is empty: the run has not logged anything yet")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step_field = next((f for f in STEP_FIELDS if f in records[0]), None)
    if step_field is None:
        raise ValueError(f"{log_path} has none of the fields {', '.join(STEP_FIELDS)}: not a metajax log")
    steps = [record[step_field] for record in records]
    curves: dict[str, list[float]] = {}
    for index, record in enumerate(records):
        for tag, value in scalars("", {k: v for k, v in record.items() if k != step_field}).items():
            curves.setdefault(tag, [np.nan] * len(records))[index] = value

    written = []
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3 * rows), squeeze=False)
    for axis, (tag, values) in zip(axes.flat, sorted(curves.items()), strict=False):
        axis.plot(steps, values, marker="." if len(steps) < 30 else None)
        axis.set(title=tag, xlabel=step_field)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    figure.suptitle(str(workdir), fontsize=9)
    figure.tight_layout()
    path = workdir / "learning_curves.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    written.append(path)

    summary_path = workdir / "summary.json"
    summary = _read_json(summary_path) if summary_path.exists() else {}
    if "accuracy_matrix" in summary:
        config = summary.get("config", {})
        title = f"{config.get('strategy')}, {config.get('benchmark')} {config.get('scenario')}"
        written.append(
            plot_accuracy_matrix(np.asarray(summary["accuracy_matrix"]), title, workdir / "accuracy_matrix.png")
        )
    if "mean_gate_weights" in summary:
        written.append(_plot_gate_weights(summary["mean_gate_weights"], workdir / "gate_weights.png"))
    return written


def _plot_gate_weights(weights: dict[str, list[float]], path: Path) -> Path:
    """Bars of each task's mean gate weight per expert: which experts each task uses."""
    import matplotlib.pyplot as plt

    tasks = list(weights)
    experts = len(next(iter(weights.values())))
    width = 0.8 / len(tasks)
    figure, axis = plt.subplots(figsize=(1.5 + 0.6 * experts * len(tasks), 3.5))
    for index, task in enumerate(tasks):
        axis.bar(np.arange(experts) + index * width, weights[task], width, label=task)
    axis.set(xlabel="expert", ylabel="mean gate weight", xticks=np.arange(experts) + 0.4 - width / 2)
    axis.set_xticklabels([str(expert) for expert in range(experts)])
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
