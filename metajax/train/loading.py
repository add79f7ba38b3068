"""Trained runs, loaded back from their workdirs: ``load_run`` and ``evaluate_run``.

A workdir holds what a run needs to be rebuilt: its config (``run_config.json``,
with the run format it was written in) and its checkpoints. ``load_run`` builds
the run's data, model and algorithm as its runner does, and restores the latest
checkpoint into the state that runner would have trained; ``evaluate_run``
scores that state again, with the runner's own evaluation functions, on the
run's test tasks or on others (more tasks, other shots or ways, another dataset).
Nothing is trained and nothing in the workdir is written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.options import flag
from metajax.registry import META_LEARNERS
from metajax.train import continual_training, meta_training, multitask_training
from metajax.train.checkpoints import RUN_FORMAT_FIELD, RunCheckpoints
from metajax.train.config import MetaLearningConfig
from metajax.train.continual_config import ContinualConfig
from metajax.train.multitask_config import MultiTaskConfig
from metajax.train.sharding import device_mesh, to_host
from metajax.train.sweeps import RunGrid, mean_std, run_grid

META_LEARNING, MULTI_TASK, CONTINUAL = "meta-learning", "multi-task", "continual"

# Each family's config class, and the field that only its config has (how a workdir's family is told).
FAMILY_CONFIGS: dict[str, tuple[Any, str]] = {
    META_LEARNING: (MetaLearningConfig, "algorithm"),
    MULTI_TASK: (MultiTaskConfig, "weighting"),
    CONTINUAL: (ContinualConfig, "strategy"),
}

# The config fields a trained run may be scored again with other values of: they choose the test
# tasks or the data, not what training learned. ``metajax evaluate``'s flags are made from them.
EVALUATION_FIELDS = {
    META_LEARNING: ("dataset", "data_dir", "ways", "shots", "query_shots", "eval_tasks", "eval_chunk",
                    "also_eval_shots"),
    MULTI_TASK: ("dataset", "data_dir", "data_seed"),
    CONTINUAL: ("data_dir",),
}  # fmt: skip


class LoadedRun(NamedTuple):
    """A trained run, rebuilt from its workdir by ``load_run``.

    Attributes:
      family: ``"meta-learning"``, ``"multi-task"`` or ``"continual"``.
      config: the run's resolved config (``MetaLearningConfig``, ``MultiTaskConfig`` or ``ContinualConfig``).
      model: the flax module as the runner builds it; ``model.apply(params, x)`` is its forward pass.
      algorithm: what trained the state, built as the runner builds it: a ``MetaLearner`` (``adapt``,
        ``evaluate``), a ``MultiTaskTrainer`` (with the configured weighting; ``predict``) or a
        ``ContinualLearner`` (``accuracy``). For a sweep loaded whole (``run=None``), the one of the
        config's own hyperparameter values; pick a run to get that run's.
      state: the trained state of the latest checkpoint: a ``MetaState``, a ``MultiTaskState`` (the last
        epoch's) or a ``ContinualState``. A run of several seeds or sweep points loaded whole has a leading
        run axis on every array (``runs`` of them).
      params: the parameters the run's headline figures come from: ``state.params``, except for multi-task
        runs, where they are the best validation epoch's.
      data: the run's data as its runner loads it: a ``FewShotData``, a ``MultiTaskDataset`` or a ``Stream``.
      record: the checkpoint's record of training (what the summary needs beyond the state).
      step: the checkpoint's step: meta-steps, epochs or experiences trained.
      runs: how many runs ``state`` holds (1: no run axis).
      run: the run picked with ``load_run(..., run=)``, or ``None``.
      workdir: the run's workdir.
    """

    family: str
    config: Any
    model: Any
    algorithm: Any
    state: Any
    params: Any
    data: Any
    record: dict[str, Any]
    step: int
    runs: int
    run: int | None
    workdir: Path


def load_run(workdir: str | Path, *, run: int | None = None) -> LoadedRun:
    """The trained run in ``workdir``: its config, data, model, algorithm and the latest checkpoint's state.

    Example::

        import metajax

        run = metajax.load_run("runs/maml")
        tasks = run.data.sampler(run.data.test, ways=run.config.ways, shots=run.config.shots,
                                 query_shots=run.config.query_shots)(jax.random.key(0), 1)
        adapted = run.algorithm.adapt(run.state, tasks.support_x[0], tasks.support_y[0], key=jax.random.key(1))
        logits = run.model.apply(adapted, tasks.query_x[0])

    Args:
      workdir: the ``--workdir`` of a metajax run (finished, or with at least one checkpoint).
      run: for a run of several seeds or sweep points, the one to load (0 to runs - 1, in
        ``summary.json``'s ``runs`` order); by default all of them, along a leading axis of the state.

    Raises:
      ValueError: in one line naming the folder and what is wrong (not a run's workdir, no checkpoint yet,
        a run format this version cannot read, no such run).
    """
    workdir = Path(workdir)
    family, config = _read_config(workdir)
    checkpoints_dir = workdir / "checkpoints"
    if not checkpoints_dir.is_dir() or not any(p.name.isdigit() for p in checkpoints_dir.iterdir()):
        raise ValueError(
            f"{workdir} has no checkpoint yet (no {checkpoints_dir.name}/ with a saved step): the run saves one "
            "every --checkpoint-every units and at its end"
        )
    grid = run_grid(config.sweep, config.seeds)
    if run is not None and not 0 <= run < grid.size:
        raise ValueError(f"run must be between 0 and {grid.size - 1} for {workdir}, which holds {grid.size} run(s)")
    parts = _BUILDERS[family](config, grid)
    checkpoints = RunCheckpoints(workdir, config, read_only=True)
    try:
        restored = checkpoints.restore(parts.like)
        step = checkpoints.restored_step
    finally:
        checkpoints.close()
    if restored is None:  # A checkpoint folder without a step orbax reads.
        raise ValueError(f"{workdir} has no checkpoint yet (none in {checkpoints_dir})")
    assert step is not None  # Set by the restore that returned a checkpoint.
    carry, record = jax.tree.map(jnp.asarray, restored[0]), restored[1]
    state, params = parts.state_and_params(carry)
    if family == CONTINUAL and grid.size == 1:  # The continual runner keeps a run axis even for one run.
        state, params = _pick(state, 0), _pick(params, 0)
    values: dict[str, Any] = {}
    if run is not None and grid.size > 1:
        state, params = _pick(state, run), _pick(params, run)
        values = grid.points[run // grid.seeds]
    return LoadedRun(
        family=family,
        config=config,
        model=parts.model,
        algorithm=parts.algorithm(values),
        state=state,
        params=params,
        data=parts.data,
        record=record,
        step=step,
        runs=grid.size if run is None else 1,
        run=run,
        workdir=workdir,
    )


def evaluate_run(loaded: LoadedRun, *, show_progress: bool = False, **changes: Any) -> dict[str, Any]:
    """Scores a loaded run's state again, without training, with the runner's own evaluation.

    With no ``changes``, the figures are those the run's ``summary.json`` reports (the same test tasks,
    drawn from the same keys). ``changes`` set other values of the config fields in
    ``EVALUATION_FIELDS[loaded.family]``: for meta-learning the test tasks (``ways``, ``shots``,
    ``query_shots``, ``eval_tasks``, ``also_eval_shots``) or their data (``dataset``, ``data_dir``); for
    multi-task the data (``dataset``, ``data_dir``, ``data_seed``), scored on its test split; for continual
    where the data lives (``data_dir``), scored on every experience's test set.

    Returns:
      ``{"family", "workdir", "checkpoint_step", "run", "changed", "config", **figures}``, the figures named
      as in ``summary.json``: meta-learning ``test_accuracy`` (and its CI, per mode, per shots) or
      ``test_mse``; multi-task ``tasks`` (with the best validation epoch's parameters) and
      ``final_epoch_tasks``; continual ``final_accuracy`` (per experience) and ``final_average_accuracy``.

    Raises:
      ValueError: a field that cannot change for this family, a value the config refuses, or data the
        trained model cannot take (one line).
    """
    changes = {name: value for name, value in changes.items() if value is not None}
    allowed = EVALUATION_FIELDS[loaded.family]
    for name in changes:
        if name not in allowed:
            raise ValueError(
                f"{flag(name)} cannot change when scoring a {loaded.family} run again "
                f"(these can: {', '.join(map(flag, allowed))})"
            )
    config = loaded.config
    if "dataset" in changes and changes["dataset"] != config.dataset:  # The old dataset's options do not apply.
        config = dataclasses.replace(config, dataset_options={})
    config = dataclasses.replace(config, **changes).resolved()
    figures = _EVALUATORS[loaded.family](loaded, config, show_progress)
    return {
        "family": loaded.family,
        "workdir": str(loaded.workdir),
        "checkpoint_step": loaded.step,
        "run": loaded.run,
        "changed": changes,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        **figures,
    }


def _read_config(workdir: Path):
    """``(family, resolved config)`` of the run in ``workdir``, or a one-line ``ValueError``."""
    if not workdir.is_dir():
        raise ValueError(f"{workdir} is not a folder: give the --workdir of a metajax run")
    path = workdir / "run_config.json"
    if not path.exists():
        raise ValueError(f"{workdir} is not a metajax run's workdir: it has no {path.name}")
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path} is not a metajax run config (not a JSON object)")
    run_format = stored.pop(RUN_FORMAT_FIELD, 1)
    family = next((name for name, (_, field) in FAMILY_CONFIGS.items() if field in stored), None)
    if family is None:
        raise ValueError(f"{path} is not a metajax run config (it names no algorithm, weighting or strategy)")
    config_class = FAMILY_CONFIGS[family][0]
    if run_format != config_class.RUN_FORMAT:
        raise ValueError(
            f"{workdir} holds a {family} run in run format {run_format}; this metajax version reads format "
            f"{config_class.RUN_FORMAT} (its configs and checkpoints hold other fields): load it with the version "
            "that trained it"
        )
    unknown = sorted(set(stored) - {field.name for field in dataclasses.fields(config_class)})
    if unknown:
        raise ValueError(
            f"{path} has fields this metajax version does not know ({', '.join(unknown)}): load it with the "
            "version that trained it"
        )
    return family, config_class(**stored).resolved()


def _pick(tree, run: int):
    """Run ``run`` of a tree with a leading run axis."""
    return jax.tree.map(lambda a: a[run], tree)


class _Parts(NamedTuple):
    """What ``load_run`` needs of a family: its data, model, the shape of its checkpoint, its algorithm."""

    data: Any
    model: Any
    like: Any  # The checkpointed carry's shapes and types (``jax.ShapeDtypeStruct``s).
    state_and_params: Any  # carry -> (state, params)
    algorithm: Any  # run's swept values -> the algorithm


def _meta_parts(config: MetaLearningConfig, grid: RunGrid) -> _Parts:
    data = meta_training.load_data(config)
    model, example, make_learner, _, _ = meta_training.build(config, data)
    init_key, _, _ = meta_training.run_keys(config, grid)
    like = jax.eval_shape(lambda: meta_training.initial_state(config, model, example, make_learner, grid, init_key))
    return _Parts(
        data, model, like, lambda state: (state, state.params), lambda values: make_learner(config.transductive, values)
    )


def _multitask_parts(config: MultiTaskConfig, grid: RunGrid) -> _Parts:
    dataset = multitask_training.load_dataset(config)
    model = multitask_training.build_model(config, len(dataset.task_names))
    init_key, _ = multitask_training.run_keys(config, grid)
    state = jax.eval_shape(lambda: multitask_training.initial_state(config, model, dataset, grid, init_key))
    return _Parts(
        dataset,
        model,
        {"state": state, "best_params": state.params},
        lambda carry: (carry["state"], carry["best_params"]),
        lambda values: multitask_training.build_trainer(config, model, dataset, values=values),
    )


def _continual_parts(config: ContinualConfig, grid: RunGrid) -> _Parts:
    stream = continual_training.build_stream(config)
    model = continual_training.build_model(config, stream)
    like = jax.eval_shape(lambda: continual_training.initial_states(config, model, stream, grid)[0])
    return _Parts(
        stream,
        model,
        like,
        lambda state: (state, state.params),
        lambda values: continual_training.build_learner(config, model, stream, values),
    )


_BUILDERS: dict[str, Callable[..., Any]] = {
    META_LEARNING: _meta_parts,
    MULTI_TASK: _multitask_parts,
    CONTINUAL: _continual_parts,
}


def _grid_of(loaded: LoadedRun) -> tuple[RunGrid, int | None]:
    """The runs ``loaded.state`` holds, as a grid, and the index of a picked run in the trained grid."""
    grid = run_grid(loaded.config.sweep, loaded.config.seeds)
    if loaded.run is None or grid.size == 1:
        return grid, None
    return RunGrid((grid.points[loaded.run // grid.seeds],), 1), loaded.run


def _same(loaded: LoadedRun, config, fields: tuple[str, ...]) -> bool:
    return all(getattr(loaded.config, name) == getattr(config, name) for name in fields)


def _dataset_words(config) -> str:
    """The dataset of ``config`` in words, with its options (an ``npz`` dataset's path)."""
    options = ", ".join(f"{name}={value}" for name, value in config.dataset_options.items())
    return f"{config.dataset} ({options})" if options else config.dataset


def _evaluate_meta(loaded: LoadedRun, config: MetaLearningConfig, show_progress: bool) -> dict[str, Any]:
    trained = loaded.config
    data = loaded.data if _same(loaded, config, ("dataset", "dataset_options", "data_dir")) else None
    if data is None:
        data = meta_training.load_data(config)
        if tuple(data.example_shape) != tuple(loaded.data.example_shape):
            raise ValueError(
                f"the examples of {_dataset_words(config)} have shape {tuple(data.example_shape)}, but the run's "
                f"model was trained on examples of shape {tuple(loaded.data.example_shape)}"
            )
    if not META_LEARNERS.get(trained.algorithm).trait("embeds") and config.ways > trained.ways:
        raise ValueError(
            f"ways {config.ways}: the run's model has {trained.ways} outputs, so it scores tasks of at most "
            f"{trained.ways} ways"
        )
    _, _, make_learner, _, test_sampler = meta_training.build(config, data, num_outputs=trained.ways)
    for shots in (config.shots, *config.also_eval_shots):
        test_sampler(data.test, shots)  # Checks the ways and shots against the test classes, in one line.
    grid, picked = _grid_of(loaded)
    _, _, eval_key = meta_training.run_keys(trained, run_grid(trained.sweep, trained.seeds))
    if picked is not None:
        eval_key = eval_key[picked]
    scores = meta_training.score_test_tasks(
        config, loaded.state, make_learner, test_sampler, data.test, eval_key=eval_key, grid=grid,
        mesh=device_mesh(), show_progress=show_progress,
    )  # fmt: skip
    return meta_training.evaluation_figures(scores, config, grid)


def _evaluate_multitask(loaded: LoadedRun, config: MultiTaskConfig, show_progress: bool) -> dict[str, Any]:
    del show_progress  # One pass over the test split: nothing to show.
    fields = ("dataset", "dataset_options", "data_dir", "data_seed")
    dataset = loaded.data if _same(loaded, config, fields) else multitask_training.load_dataset(config)
    trained = loaded.data
    if (tuple(dataset.task_names), dataset.test.x.shape[1:]) != (tuple(trained.task_names), trained.test.x.shape[1:]):
        raise ValueError(
            f"{_dataset_words(config)} has tasks {', '.join(dataset.task_names)} of {dataset.test.x.shape[1]} "
            f"features, but the run's model was trained on {', '.join(trained.task_names)} of "
            f"{trained.test.x.shape[1]}"
        )
    grid, picked = _grid_of(loaded)
    record = loaded.record
    if picked is not None:  # The picked run's best epoch.
        record = {name: record[name][picked] for name in ("best_epoch", "best_validation")}
    score = multitask_training.split_scorer(loaded.model, dataset)
    return multitask_training.evaluation_figures(score, loaded.params, loaded.state.params, record, grid)


def _evaluate_continual(loaded: LoadedRun, config: ContinualConfig, show_progress: bool) -> dict[str, Any]:
    del show_progress  # One compiled call: nothing to show.
    stream = loaded.data if _same(loaded, config, ("data_dir",)) else continual_training.build_stream(config)
    trained = loaded.data
    if (stream.num_outputs, stream.test_x.shape[0], stream.test_x.shape[2:]) != (
        trained.num_outputs, trained.test_x.shape[0], trained.test_x.shape[2:]
    ):  # fmt: skip
        raise ValueError(f"the data in {config.data_dir} is not the stream the run was trained on")
    grid, _ = _grid_of(loaded)
    states = loaded.state
    values = grid.values()
    if loaded.runs == 1:  # The runner's run axis, taken off by load_run.
        states = jax.tree.map(lambda a: a[None], states)
    accuracy = continual_training.runs_accuracy(loaded.config, loaded.model, stream)
    final = to_host(accuracy(states, values, *continual_training.experience_test_sets(stream)))  # [runs, exps]
    return {
        "final_accuracy": final.mean(axis=0).tolist(),
        "final_accuracy_per_run": final.tolist(),
        "final_average_accuracy": mean_std(final.mean(axis=1)),
    }


_EVALUATORS: dict[str, Callable[..., dict]] = {
    META_LEARNING: _evaluate_meta,
    MULTI_TASK: _evaluate_multitask,
    CONTINUAL: _evaluate_continual,
}
