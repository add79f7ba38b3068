"""Turns a multi-task model into a run: data, epochs, model selection, results."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.data.multitask import MultiTaskDataset
from metajax.multitask import WeightingContext, multitask_trainer
from metajax.multitask.evaluation import headline, score_split
from metajax.registry import MULTITASK_DATASETS, MULTITASK_MODELS, MULTITASK_WEIGHTINGS
from metajax.train.engine import Loop, SteadyClock, Unit, dry_run_summary, start_run, train_loop, write_summary
from metajax.train.multitask_config import MultiTaskConfig
from metajax.train.run_info import run_metadata
from metajax.train.sharding import device_mesh, place_replicated, shard_leading_axis, to_host


def build_model(config: MultiTaskConfig, num_tasks: int) -> nn.Module:
    """The flax module ``config.model`` names (``config`` resolved), with a tower per task."""
    entry = MULTITASK_MODELS.get(config.model)
    return entry.build(entry.options(config.model_options), num_tasks=num_tasks)


def load_dataset(config: MultiTaskConfig) -> MultiTaskDataset:
    """The dataset ``config.dataset`` names, loaded (``config`` resolved)."""
    entry = MULTITASK_DATASETS.get(config.dataset)
    return entry.build(entry.options(config.dataset_options), data_dir=config.data_dir, seed=config.seed)


def build_trainer(config: MultiTaskConfig, model: nn.Module, dataset: MultiTaskDataset, place_batch=None):
    """The trainer of ``model`` on ``dataset``'s tasks with the configured weighting and Adam."""
    (task_kind,) = set(dataset.task_kinds)
    num_tasks = len(dataset.task_names)
    entry = MULTITASK_WEIGHTINGS.get(config.weighting)
    weighting = entry.build(entry.options(config.weighting_options), WeightingContext(num_tasks, config.learning_rate))
    return multitask_trainer(
        model.apply,
        num_tasks,
        optimizer=optax.adam(config.learning_rate),
        task_loss=task_kind,
        weighting=weighting,
        shared_parameters=getattr(model, "shared_parameters", None),  # The model's declared split.
        batch_size=config.batch_size,
        place_batch=place_batch,
    )


def train_and_evaluate(
    config: MultiTaskConfig,
    workdir: str | Path,
    *,
    show_progress: bool = True,
    dataset: MultiTaskDataset | None = None,
    checkpoint_every: int = 1,
    dry_run: bool = False,
    devices: int | None = None,
) -> dict[str, Any]:
    """Trains ``config.epochs`` epochs, scores the validation split after each, and the test split
    with the parameters of the best validation epoch.

    Writes ``workdir/metrics.jsonl`` (one line per epoch) and ``workdir/summary.json``.
    ``dataset``, when given, replaces loading the one ``config`` names (to reuse
    one loaded copy across many runs). The training state, the best epoch's
    parameters and the log position are saved in ``workdir/checkpoints`` every
    ``checkpoint_every`` epochs and at the end; rerun with the same workdir and
    config, a run resumes from its latest checkpoint. Each training batch is
    split over ``devices`` local devices (default: every accelerator, one CPU); ``dry_run`` validates
    the arguments and the data, then returns without training.

    Returns:
      The summary dictionary written to ``summary.json``.
    """
    config, workdir = start_run(config, workdir, checkpoint_every)
    dataset = dataset or load_dataset(config)
    if dataset.train.x.shape[0] < config.batch_size:
        raise ValueError(
            f"batch-size {config.batch_size} is larger than the {dataset.train.x.shape[0]} training examples"
        )
    train_data = jax.tree.map(jnp.asarray, dataset.train)

    model = build_model(config, len(dataset.task_names))
    mesh = device_mesh(devices)
    trainer = build_trainer(config, model, dataset, place_batch=lambda batch: shard_leading_axis(batch, mesh))
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    # Jitted: one compilation, where initializing op by op compiled each of its many small operations.
    state = jax.jit(lambda key, x: trainer.init(model.init(key, x)))(init_key, train_data.x[:1])

    @functools.partial(jax.jit, donate_argnums=0)
    def train_epoch(state, data, epoch):  # The epoch's key derived inside the program, not op by op before it.
        return trainer.train_epoch(state, data, key=jax.random.fold_in(train_key, epoch))

    predict = jax.jit(model.apply)

    def score(params, split):
        return score_split(predict, params, split, dataset.task_names, dataset.task_kinds)

    if dry_run:  # Everything above validated the arguments and the data.
        return dry_run_summary(config)
    steps_per_epoch = train_data.x.shape[0] // config.batch_size
    clock = SteadyClock("steady_seconds", "steady_epochs")

    def train(carry, progress, done):
        state, best_params = carry["state"], carry["best_params"]
        epoch = done + 1
        epoch_start = time.perf_counter()
        state, metrics = train_epoch(state, train_data, np.uint32(epoch))
        metrics = to_host(metrics)
        elapsed = time.perf_counter() - epoch_start
        clock.tick(progress, elapsed, 1)
        if not np.all(np.isfinite(metrics["task_losses"])):
            return Unit(carry, 1, diverged=f"training loss became {metrics['task_losses']} in epoch {epoch}")
        validation = score(state.params, dataset.validation)
        value = headline(validation, dataset.task_kinds)
        if value > (-np.inf if progress["best_value"] is None else progress["best_value"]):
            progress.update(best_value=float(value), best_epoch=epoch, best_validation=validation)
            best_params = jax.tree.map(jnp.copy, state.params)
        record = {
            "epoch": epoch,
            "step": int(state.step),
            "train_task_losses": dict(zip(dataset.task_names, map(float, metrics["task_losses"]), strict=True)),
            "task_weights": dict(zip(dataset.task_names, map(float, metrics["task_weights"]), strict=True)),
            "validation": validation["tasks"],
            "examples_per_second": steps_per_epoch * config.batch_size / elapsed,
        }
        progress["epoch"] = epoch
        postfix = {name: f"{scores.get('auc', scores['loss']):.4f}" for name, scores in validation["tasks"].items()}
        return Unit({"state": state, "best_params": best_params}, 1, record=record, postfix=postfix)

    loop = Loop(
        total=config.epochs,
        done=lambda carry, progress: progress["epoch"],
        position=lambda epoch: f"after epoch {epoch} of {config.epochs}",
        log_field="epoch",
        description=f"training {config.model}",
        bar_unit="epoch",
    )
    # Everything beyond the state that the summary needs, carried across a resumption.
    progress = {"epoch": 0, "best_value": None, "best_epoch": 0, "best_validation": None, "steady_seconds": 0.0,
                "steady_epochs": 0, "train_seconds": 0.0}  # fmt: skip
    carry, progress = train_loop(
        workdir,
        config,
        {"state": state, "best_params": state.params},
        progress,
        loop,
        train,
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        # The state where train_epoch returns it: one compilation, not two.
        place=lambda carry: {**carry, "state": place_replicated(carry["state"], mesh)},
    )
    state, best_params = carry["state"], carry["best_params"]
    best_epoch, best_validation = progress["best_epoch"], progress["best_validation"]

    test = score(best_params, dataset.test)
    final_test = score(state.params, dataset.test)
    summary: dict[str, Any] = {
        "model": config.model,
        **run_metadata(config),
        "data": {
            "train_examples": int(dataset.train.x.shape[0]),
            "validation_examples": int(dataset.validation.x.shape[0]),
            "test_examples": int(dataset.test.x.shape[0]),
            "features": int(dataset.train.x.shape[1]),
            "tasks": list(dataset.task_names),
        },
        "best_epoch": best_epoch,
        "tasks": test["tasks"],
        "validation_tasks": best_validation["tasks"],
        "final_epoch_tasks": final_test["tasks"],
        "examples_per_second": clock.rate(progress, config.epochs) * steps_per_epoch * config.batch_size,
        "train_seconds": progress["train_seconds"],
    }
    if "mean_gate_weights" in test:
        summary["mean_gate_weights"] = test["mean_gate_weights"]
    write_summary(workdir, summary)
    return summary
