"""Scoring a multi-task model on a split: per-task loss, ROC-AUC or MSE, and mean gate weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metajax.array_checks import check_array
from metajax.data.multitask import MultiTaskBatch, check_multitask_batch
from metajax.models.task_stacks import MultiTaskOutput
from metajax.multitask.losses import TASK_LOSSES
from metajax.multitask.metrics import roc_auc


def predict_in_chunks(
    predict: Callable[[Any, jax.Array], MultiTaskOutput], params, x: jax.Array, *, chunk_size: int = 4096
) -> MultiTaskOutput:
    """``predict`` over ``x`` in fixed-size chunks (the last one padded), so one compiled shape serves any split."""
    num_examples = check_array("x", x, (None, None), "[examples, features]")[0]
    padded = -(-num_examples // chunk_size) * chunk_size
    x = jnp.pad(x, ((0, padded - num_examples), (0, 0)))
    outputs = [predict(params, x[start : start + chunk_size]) for start in range(0, padded, chunk_size)]
    return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=1)[:, :num_examples], *outputs)


def score_split(
    predict: Callable[[Any, jax.Array], MultiTaskOutput],
    params,
    data: MultiTaskBatch,
    task_names: Sequence[str],
    task_kinds: Sequence[str],
    *,
    chunk_size: int = 4096,
) -> dict[str, Any]:
    """Per-task ``loss`` and ``auc`` (binary tasks) or ``mse`` (regression), and each task's mean gate weights."""
    check_multitask_batch(data, len(task_names), "data")
    if len(task_kinds) != len(task_names):
        raise ValueError(f"task_kinds must name one kind per task ({len(task_names)}), got {len(task_kinds)}")
    output = predict_in_chunks(predict, params, jnp.asarray(data.x), chunk_size=chunk_size)
    labels = jnp.asarray(data.y).T
    tasks = {}
    for index, (name, kind) in enumerate(zip(task_names, task_kinds, strict=True)):
        predictions, targets = output.predictions[index], labels[index]
        scores = {"loss": float(TASK_LOSSES[kind](predictions, targets))}
        if kind == "binary":
            scores["auc"] = float(roc_auc(predictions, targets))
        else:
            scores["mse"] = scores["loss"]
        tasks[name] = scores
    result: dict[str, Any] = {"tasks": tasks}
    if output.gate_weights is not None:
        result["mean_gate_weights"] = {
            name: np.asarray(jnp.mean(output.gate_weights[index], axis=0)).tolist()
            for index, name in enumerate(task_names)
        }
    return result


def headline(scores: dict[str, Any], task_kinds: Sequence[str]) -> float:
    """One number to select epochs by, larger is better: mean AUC, or minus mean MSE for regression."""
    tasks = scores["tasks"].values()
    if all(kind == "binary" for kind in task_kinds):
        return float(np.mean([task["auc"] for task in tasks]))
    return -float(np.mean([task["loss"] for task in tasks]))
