"""Turns a continual-learning strategy into a run: stream, seeds, accuracy matrix, metrics, plot."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.continual import (
    Experience,
    StrategyContext,
    TrainMode,
    backward_transfer,
    continual_learner,
    forgetting,
    forward_transfer,
)
from metajax.data.continual_streams import Stream
from metajax.models.interfaces import RunningStatistics
from metajax.registry import CONTINUAL_BENCHMARKS, CONTINUAL_STRATEGIES, MODELS
from metajax.train.continual_config import ContinualConfig
from metajax.train.engine import Loop, Unit, dry_run_summary, start_run, train_loop, write_summary
from metajax.train.run_info import run_metadata
from metajax.train.sharding import device_mesh, is_primary_process, place_leading_axis, shard_leading_axis, to_host
from metajax.train.sweeps import RunGrid, by_point, mean_std, run_grid, traced_build, with_values


def build_stream(config: ContinualConfig) -> Stream:
    """The stream ``config.benchmark`` names (``config`` resolved)."""
    entry = CONTINUAL_BENCHMARKS.get(config.benchmark)
    return entry.build(
        entry.options(config.benchmark_options),
        data_dir=config.data_dir,
        scenario=config.scenario,
        experiences=config.experiences,
        seed=config.seed,
    )


def build_model(config: ContinualConfig, stream: Stream):
    """The flax module ``config.model`` names, with one output per the stream's outputs."""
    entry = MODELS.get(config.model)
    return entry.build(
        entry.options(config.model_options), num_outputs=stream.num_outputs, example_shape=stream.example_shape
    )


def build_strategy(config: ContinualConfig, model, stream: Stream, values: Mapping[str, Any] | None = None):
    """The strategy ``config.strategy`` names, built from its options (those in ``values`` replaced, possibly
    by tracers: a sweep's), for ``model``."""
    entry = CONTINUAL_STRATEGIES.get(config.strategy)
    context = StrategyContext(
        model=model,
        apply_fn=model.apply,
        example_shape=stream.example_shape,
        num_outputs=stream.num_outputs,
        stream_examples=stream.num_experiences * stream.train_x.shape[1],
    )
    return entry.build(with_values(entry.options(config.strategy_options), values or {}), context)


def train_mode(model) -> TrainMode | None:
    """How ``model`` trains when its training forward pass differs from ``model.apply`` (batch norm's
    running statistics, declared by ``RunningStatistics``), else ``None``."""
    if isinstance(model, RunningStatistics):
        return TrainMode(model.train_apply, model.running_statistics)
    return None


def build_learner(config: ContinualConfig, model, stream: Stream, values: Mapping[str, Any] | None = None):
    """The continual learner of the configured strategy and optimizer; ``values``: a run's swept
    hyperparameters (``learning_rate`` or the strategy's), traced inside a vmapped program."""
    values = values or {}
    build = lambda: continual_learner(  # noqa: E731
        model.apply,
        build_strategy(config, model, stream, values),
        getattr(optax, config.optimizer)(values.get("learning_rate", config.learning_rate)),  # adam or sgd
        epochs=config.epochs,
        batch_size=config.batch_size,
        reset_optimizer=config.reset_optimizer,
        train_mode=train_mode(model),
    )
    return traced_build(build, list(values))


def _experiences(stream: Stream, joint: bool) -> list[Experience]:
    heads = jnp.asarray(stream.logit_mask)
    if joint:  # One experience of every example, each scored with its own experience's head.
        n = stream.train_x.shape[1]
        return [
            Experience(
                jnp.asarray(stream.train_x.reshape(-1, *stream.example_shape)),
                jnp.asarray(stream.train_y.reshape(-1)),
                jnp.repeat(heads, n, axis=0),
                jnp.asarray(0),
            )
        ]
    return [
        Experience(jnp.asarray(stream.train_x[e]), jnp.asarray(stream.train_y[e]), heads[e], jnp.asarray(e))
        for e in range(stream.num_experiences)
    ]


def vmap_runs(fn: Callable, in_axes: tuple[int | None, ...]) -> Callable:
    """``jax.vmap(fn, in_axes)`` over the run (seed) axis, except that a single run is squeezed out.

    Why: XLA:CPU runs a size-1 vmapped step as batched matmuls, 1.4x slower
    than the plain step for the 2 x 400 MLP at batch 10 (0.307 against 0.223
    ms per step, measured on the build machine); a lone run should cost what
    ``learner.train_experience`` costs.
    """
    batched = jax.vmap(fn, in_axes=in_axes)

    def run(*args):
        run_sizes = {
            jnp.shape(leaf)[0]
            for arg, axis in zip(args, in_axes, strict=True)
            if axis == 0
            for leaf in jax.tree.leaves(arg)
        }
        if run_sizes != {1}:
            return batched(*args)
        lone = (
            jax.tree.map(lambda a: a[0], arg) if axis == 0 else arg for arg, axis in zip(args, in_axes, strict=True)
        )
        return jax.tree.map(lambda a: a[None], fn(*lone))

    return run


def initial_states(config: ContinualConfig, model, stream: Stream, grid: RunGrid):
    """``(states, train_keys)``: every run's initial learner state and training key, along a leading run axis."""

    @jax.jit  # One compilation; run op by op, initializing compiled each of its many small operations.
    def initial_runs(example, values):
        # The same seeds at every sweep point: the points differ by their values alone.
        seed_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(config.seed), i))(grid.seed_indices())
        init_keys, train_keys = jax.vmap(lambda k: jax.random.split(k))(seed_keys).transpose(1, 0)
        params = jax.vmap(model.init, in_axes=(0, None))(init_keys, example)
        return jax.vmap(lambda p, v: build_learner(config, model, stream, v).init(p))(params, values), train_keys

    return initial_runs(jnp.asarray(stream.train_x[0, :1]), grid.values())


def experience_test_sets(stream: Stream) -> tuple[jax.Array, ...]:
    """Every experience's test set as the learners' ``accuracy`` takes it: ``(x, y, mask, logit_mask)``."""
    return tuple(jnp.asarray(a) for a in (stream.test_x, stream.test_y, stream.test_mask, stream.logit_mask))


def runs_accuracy(config: ContinualConfig, model, stream: Stream):
    """``accuracy(states, values, *test_sets) -> [runs, experiences]``, jitted: every run's accuracy on every
    experience's test set (``values``: the runs' swept hyperparameters, ``grid.values()``)."""

    @jax.jit
    def accuracy_of_runs(states, values, *test):
        return vmap_runs(
            lambda state, values, *test: build_learner(config, model, stream, values).accuracy(state, *test),
            (0, 0, None, None, None, None),
        )(states, values, *test)

    return accuracy_of_runs


def train_and_evaluate(
    config: ContinualConfig,
    workdir: str | Path,
    *,
    show_progress: bool = True,
    checkpoint_every: int = 1,
    dry_run: bool = False,
    devices: int | None = None,
) -> dict[str, Any]:
    """Trains ``config.seeds`` runs together (vmapped over the seed axis) through the stream.

    After each experience every run is scored on every experience's test set,
    filling the accuracy matrix. Writes ``workdir/metrics.jsonl`` (one line per
    experience), ``workdir/summary.json`` and ``workdir/accuracy_matrix.png``.
    The state of every run (weights, optimizer, strategy state such as replay
    buffers and Fisher information) and the accuracy rows so far are saved in
    ``workdir/checkpoints`` every ``checkpoint_every`` experiences; rerun with
    the same workdir and config, a run resumes from its latest checkpoint.
    The runs are split over ``devices`` local devices (default: every accelerator, one CPU);
    ``dry_run`` validates the arguments and the data, then returns without
    training.
    """
    config, workdir = start_run(config, workdir, checkpoint_every)
    stream = build_stream(config)
    model = build_model(config, stream)
    joint = bool(CONTINUAL_STRATEGIES.get(config.strategy).trait("trains_jointly"))
    experiences = _experiences(stream, joint)
    if any(e.x.shape[0] < config.batch_size for e in experiences):
        raise ValueError(f"batch-size {config.batch_size} is larger than an experience ({experiences[0].x.shape[0]})")
    build_learner(config, model, stream)  # Its errors before any compilation.
    grid = run_grid(config.sweep, config.seeds)  # Runs: sweep points x seeds, point-major.
    run_values = grid.values()  # {name: [runs]}; empty without a sweep.
    test = experience_test_sets(stream)
    mesh = device_mesh(devices)
    # The run axis laid out as train_experience returns it, so neither it nor
    # accuracy compiles a second time for a new input sharding.
    state, train_keys = place_leading_axis(initial_states(config, model, stream, grid), mesh)
    run_values = place_leading_axis(run_values, mesh)
    # No buffer donation: strategy states may hold the very arrays of the params (SI's, LwF's anchors at init).

    def train_runs(states, experience, run_keys, index, values):  # The run axis over devices: runs are independent.
        states, run_keys, values = shard_leading_axis((states, run_keys, values), mesh)
        # Each experience's keys derived inside the program: op by op, the derivation compiled on its own
        # inside every run's first experience (0.04-0.06 s, measured on the build machine's CPU).
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, index))(run_keys)

        def train_one(state, key, values):
            return build_learner(config, model, stream, values).train_experience(state, experience, key=key)

        return vmap_runs(train_one, (0, 0, 0))(states, step_keys, values)

    accuracy_of_runs = runs_accuracy(config, model, stream)

    train_experience = jax.jit(train_runs)

    def accuracy(states, *test):
        return accuracy_of_runs(states, run_values, *test)

    initial_accuracy = to_host(accuracy(state, *test))  # [runs, experiences], for FWT

    if dry_run:  # Everything above validated the arguments and the data.
        return dry_run_summary(config)

    def train(state, progress, index):
        experience = experiences[index]
        state, metrics = train_experience(state, experience, train_keys, np.uint32(index), run_values)
        losses = to_host(metrics["loss"])
        if not np.all(np.isfinite(losses)):
            return Unit(state, 1, diverged=f"training loss became {losses} in experience {index}")
        row = to_host(accuracy(state, *test))  # [seeds, experiences]
        progress.update(experiences=index + 1, rows=[*progress["rows"], row.tolist()])
        record = {"experience": index, "loss": losses.tolist(), "accuracy": row.tolist()}
        return Unit(state, 1, record=record, postfix={"seen_accuracy": f"{row[:, : index + 1].mean():.3f}"})

    loop = Loop(
        total=len(experiences),
        done=lambda state, progress: progress["experiences"],
        position=lambda done: f"after experience {done} of {len(experiences)}",
        log_field="experience",
        log_position=lambda done: done - 1,  # Records are numbered by experience, from 0.
        description=f"{config.strategy} on {config.benchmark}",
        bar_unit="exp",
    )
    # Experiences done, accuracy rows so far and time trained, carried across a resumption.
    progress: dict[str, Any] = {"experiences": 0, "rows": [], "train_seconds": 0.0}
    state, progress = train_loop(
        workdir,
        config,
        state,
        progress,
        loop,
        train,
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        place=lambda state: place_leading_axis(state, mesh),
    )
    train_seconds = progress["train_seconds"]
    rows = [np.asarray(row, dtype=np.float32) for row in progress["rows"]]  # As computed: float32.

    matrices = np.stack(rows, axis=1)  # [runs, rows, experiences]
    final = matrices[:, -1].mean(axis=1)
    summary: dict[str, Any] = {
        "strategy": config.strategy,
        **run_metadata(config),
        "final_average_accuracy": mean_std(final),
        "accuracy_matrix": matrices.mean(axis=0).tolist(),
        "accuracy_matrix_per_seed": matrices.tolist(),
        "train_seconds": train_seconds,
        "train_examples": int(sum(e.x.shape[0] for e in experiences)) * config.epochs,
    }
    if joint:
        # One training phase: there is nothing to forget or transfer.
        summary.update(forgetting=None, bwt=None, fwt=None)
    else:
        summary["forgetting"] = mean_std([forgetting(m) for m in matrices])
        summary["bwt"] = mean_std([backward_transfer(m) for m in matrices])
        summary["fwt"] = mean_std([forward_transfer(m, b) for m, b in zip(matrices, initial_accuracy, strict=True)])
    if config.sweep:  # Each point's figures over its seeds, and each run's.
        per_run = {"final_average_accuracy": final}
        if not joint:
            per_run["forgetting"] = [forgetting(m) for m in matrices]
        summary["sweep"] = by_point(grid, per_run)
        summary["runs"] = [
            {**grid.describe(run), "final_average_accuracy": float(final[run])} for run in range(grid.size)
        ]
    title = f"{config.strategy}, {config.benchmark} {config.scenario}"
    summary["plot"] = str(workdir / "accuracy_matrix.png")
    if is_primary_process():  # Of several hosts, one draws.
        plot_accuracy_matrix(matrices.mean(axis=0), title, Path(summary["plot"]))
    write_summary(workdir, summary)
    return summary


def plot_accuracy_matrix(matrix: np.ndarray, title: str, path: Path) -> Path:
    """A heat map of R[i, j], accuracy on experience j after training through experience i."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = matrix.shape
    figure, axis = plt.subplots(figsize=(1.0 + 0.6 * cols, 1.0 + 0.6 * rows))
    image = axis.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i in range(rows):
        for j in range(cols):
            axis.text(j, i, f"{100 * matrix[i, j]:.0f}", ha="center", va="center", color="w", fontsize=7)
    axis.set_xlabel("tested on experience")
    axis.set_ylabel("trained through experience" if rows > 1 else "joint training")
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
