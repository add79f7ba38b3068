"""Turns a multi-task model into a run: data, epochs, model selection, results."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
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
from metajax.train.sweeps import RunGrid, by_point, run_grid, traced_build, with_values


def build_model(config: MultiTaskConfig, num_tasks: int) -> nn.Module:
    """The flax module ``config.model`` names (``config`` resolved), with a tower per task."""
    entry = MULTITASK_MODELS.get(config.model)
    return entry.build(entry.options(config.model_options), num_tasks=num_tasks)


def load_dataset(config: MultiTaskConfig) -> MultiTaskDataset:
    """The dataset ``config.dataset`` names, loaded (``config`` resolved)."""
    entry = MULTITASK_DATASETS.get(config.dataset)
    return entry.build(entry.options(config.dataset_options), data_dir=config.data_dir, seed=config.data_seed)


def build_trainer(
    config: MultiTaskConfig,
    model: nn.Module,
    dataset: MultiTaskDataset,
    place_batch=None,
    values: Mapping[str, Any] | None = None,
):
    """The trainer of ``model`` on ``dataset``'s tasks with the configured weighting and Adam; ``values``: a
    run's swept hyperparameters (``learning_rate`` or the weighting's), traced inside a vmapped program."""
    (task_kind,) = set(dataset.task_kinds)
    num_tasks = len(dataset.task_names)
    values = values or {}
    learning_rate = values.get("learning_rate", config.learning_rate)
    entry = MULTITASK_WEIGHTINGS.get(config.weighting)

    def build():
        options = with_values(entry.options(config.weighting_options), values)
        weighting = entry.build(options, WeightingContext(num_tasks, learning_rate))
        return multitask_trainer(
            model.apply,
            num_tasks,
            optimizer=optax.adam(learning_rate),
            task_loss=task_kind,
            weighting=weighting,
            shared_parameters=getattr(model, "shared_parameters", None),  # The model's declared split.
            batch_size=config.batch_size,
            place_batch=place_batch,
        )

    return traced_build(build, list(values))


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

    def trainer_for(values=None):
        return build_trainer(config, model, dataset, lambda batch: shard_leading_axis(batch, mesh), values)

    trainer_for()  # Its errors before any compilation.
    grid = run_grid(config.sweep, config.seeds)  # Runs: sweep points x seeds, point-major.
    several = grid.size > 1  # Then the state, and the best parameters, have a leading run axis.
    run_values = grid.values(squeeze_lone=True)

    def over_runs(fn, in_axes):
        return _over_runs(fn, in_axes, several)

    init_key, train_key = run_keys(config, grid)
    state = initial_state(config, model, dataset, grid, init_key)

    @functools.partial(jax.jit, donate_argnums=0)
    def train_epoch(state, data, train_key, values, epoch):  # The epoch's key derived inside the program.
        def one_run(state, key, values):
            return trainer_for(values).train_epoch(state, data, key=jax.random.fold_in(key, epoch))

        return over_runs(one_run, (0, 0, 0))(state, train_key, values)

    score = split_scorer(model, dataset)

    def run_params(params, run):
        return jax.tree.map(lambda a: a[run], params) if several else params

    if dry_run:  # Everything above validated the arguments and the data.
        return dry_run_summary(config)
    steps_per_epoch = train_data.x.shape[0] // config.batch_size
    clock = SteadyClock("steady_seconds", "steady_epochs")

    def train(carry, progress, done):
        state, best_params = carry["state"], carry["best_params"]
        epoch = done + 1
        epoch_start = time.perf_counter()
        state, metrics = train_epoch(state, train_data, train_key, run_values, np.uint32(epoch))
        metrics = to_host(metrics)  # [tasks], or [runs, tasks]
        elapsed = time.perf_counter() - epoch_start
        clock.tick(progress, elapsed, 1)
        if not np.all(np.isfinite(metrics["task_losses"])):
            return Unit(carry, 1, diverged=f"training loss became {metrics['task_losses']} in epoch {epoch}")
        # Each run keeps the parameters of its own best validation epoch.
        validations = [score(run_params(state.params, run), dataset.validation) for run in range(grid.size)]
        bests = progress["best_value"] if several else [progress["best_value"]]
        improved = [
            headline(v, dataset.task_kinds) > (-np.inf if best is None else best)
            for v, best in zip(validations, bests, strict=True)
        ]
        if several:
            for run in np.flatnonzero(improved):
                progress["best_value"][run] = float(headline(validations[run], dataset.task_kinds))
                progress["best_epoch"][run], progress["best_validation"][run] = epoch, validations[run]
            mask = jnp.asarray(improved)
            best_params = jax.tree.map(
                lambda best, new: jnp.where(mask.reshape(-1, *[1] * (new.ndim - 1)), new, best),
                best_params,
                state.params,
            )
        elif improved[0]:
            value = float(headline(validations[0], dataset.task_kinds))
            progress.update(best_value=value, best_epoch=epoch, best_validation=validations[0])
            best_params = jax.tree.map(jnp.copy, state.params)

        def by_task(values):  # {task: value}, or {task: [one per run]}
            return dict(zip(dataset.task_names, np.asarray(values).T.tolist(), strict=True))

        validation_tasks = (
            {
                task: {metric: [v["tasks"][task][metric] for v in validations] for metric in scores}
                for task, scores in validations[0]["tasks"].items()
            }  # fmt: skip
            if several
            else validations[0]["tasks"]
        )
        record = {
            "epoch": epoch,
            "step": int(np.asarray(state.step).reshape(-1)[0]),
            "train_task_losses": by_task(metrics["task_losses"]),
            "task_weights": by_task(metrics["task_weights"]),
            "validation": validation_tasks,
            "examples_per_second": steps_per_epoch * config.batch_size * grid.size / elapsed,
        }
        progress["epoch"] = epoch
        postfix = {
            name: f"{np.mean(scores.get('auc', scores['loss'])):.4f}" for name, scores in validation_tasks.items()
        }
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
    progress: dict[str, Any] = {"epoch": 0, "best_value": None, "best_epoch": 0, "best_validation": None,
                                "steady_seconds": 0.0, "steady_epochs": 0, "train_seconds": 0.0}  # fmt: skip
    if several:  # One best epoch per run.
        progress.update(best_value=[None] * grid.size, best_epoch=[0] * grid.size, best_validation=[None] * grid.size)
    carry, progress = train_loop(
        workdir,
        config,
        {"state": state, "best_params": jax.tree.map(jnp.copy, state.params)},  # Not the donated arrays.
        progress,
        loop,
        train,
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        # The state where train_epoch returns it: one compilation, not two.
        place=lambda carry: {**carry, "state": place_replicated(carry["state"], mesh)},
    )
    state, best_params = carry["state"], carry["best_params"]
    data = {
        "train_examples": int(dataset.train.x.shape[0]),
        "validation_examples": int(dataset.validation.x.shape[0]),
        "test_examples": int(dataset.test.x.shape[0]),
        "features": int(dataset.train.x.shape[1]),
        "tasks": list(dataset.task_names),
    }
    summary: dict[str, Any] = {"model": config.model, **run_metadata(config), "data": data}
    summary.update(evaluation_figures(score, best_params, state.params, progress, grid))
    summary["examples_per_second"] = (
        clock.rate(progress, config.epochs) * steps_per_epoch * config.batch_size * grid.size
    )
    summary["train_seconds"] = progress["train_seconds"]
    write_summary(workdir, summary)
    return summary


def _over_runs(fn, in_axes, several: bool):
    """``fn`` vmapped over the run axis of the arguments ``in_axes`` marks 0, when there are several runs."""
    return jax.vmap(fn, in_axes=in_axes) if several else fn


def run_keys(config: MultiTaskConfig, grid: RunGrid) -> tuple[jax.Array, jax.Array]:
    """The runs' initialization and training keys (``[runs]`` key arrays when there are several): run r's are
    those of a lone run with ``--seed seed + its seed index`` and the same ``--data-seed``."""
    several = grid.size > 1
    seeds = grid.seed_indices() + config.seed if several else np.asarray(config.seed)
    keys = _over_runs(lambda seed: jax.random.split(jax.random.key(seed)), (0,), several)(jnp.asarray(seeds))
    return keys[..., 0], keys[..., 1]


def initial_state(config: MultiTaskConfig, model: nn.Module, dataset: MultiTaskDataset, grid: RunGrid, init_key):
    """The runs' initial trainer state, with a leading run axis when there are several."""

    def init(key, x, values):
        return build_trainer(config, model, dataset, values=values).init(model.init(key, x))

    # Jitted: one compilation, where initializing op by op compiled each of its many small operations.
    init = jax.jit(_over_runs(init, (0, None, 0), grid.size > 1))
    return init(init_key, jnp.asarray(dataset.train.x[:1]), grid.values(squeeze_lone=True))


def split_scorer(model: nn.Module, dataset: MultiTaskDataset):
    """``score(params, split)``: ``score_split`` of ``model`` on a split of ``dataset`` (its name or the split)."""
    predict = jax.jit(model.apply)

    def score(params, split):
        split = getattr(dataset, split) if isinstance(split, str) else split
        return score_split(predict, params, split, dataset.task_names, dataset.task_kinds)

    return score


def evaluation_figures(score, best_params, final_params, progress: dict[str, Any], grid: RunGrid) -> dict[str, Any]:
    """The summary's test figures (``score``: a ``split_scorer``): a lone run's, or each run's (``runs``), their
    mean and spread over runs, and each sweep point's; ``progress``: the run's record of its best epochs."""
    if grid.size == 1:
        return _run_figures(score, best_params, final_params, progress["best_epoch"], progress["best_validation"])
    runs = [
        {
            **grid.describe(run),
            **_run_figures(
                score,
                jax.tree.map(lambda a, r=run: a[r], best_params),
                jax.tree.map(lambda a, r=run: a[r], final_params),
                progress["best_epoch"][run],
                progress["best_validation"][run],
            ),
        }
        for run in range(grid.size)
    ]
    task_figures = {  # {task: {metric: [one per run]}}
        task: {metric: [run["tasks"][task][metric] for run in runs] for metric in scores}
        for task, scores in runs[0]["tasks"].items()
    }
    figures: dict[str, Any] = {
        "tasks": jax.tree.map(lambda values: float(np.mean(values)), task_figures, is_leaf=_is_list),
        "tasks_std_over_runs": jax.tree.map(lambda values: float(np.std(values)), task_figures, is_leaf=_is_list),
        "runs": runs,
    }
    if any(grid.points[0]):  # A sweep: each task's headline metric ("income_auc", "task_1_mse") by point.
        headlines = {
            f"{task}_{metric}": values
            for task, metrics in task_figures.items()
            for metric, values in metrics.items()
            if metric in ("auc", "mse")
        }
        figures["sweep"] = by_point(grid, headlines)
    return figures


def _run_figures(score, best_params, final_params, best_epoch: int, best_validation) -> dict[str, Any]:
    """One run's figures: test scores with its best validation epoch's parameters, and with its last's."""
    test = score(best_params, "test")
    figures = {
        "best_epoch": best_epoch,
        "tasks": test["tasks"],
        "validation_tasks": best_validation["tasks"],
        "final_epoch_tasks": score(final_params, "test")["tasks"],
    }
    if "mean_gate_weights" in test:
        figures["mean_gate_weights"] = test["mean_gate_weights"]
    return figures


def _is_list(value) -> bool:
    return isinstance(value, list)
