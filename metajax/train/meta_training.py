"""Turns a meta-learner into a run: data, outer loop, evaluation, results."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metajax.meta import MetaContext
from metajax.registry import FEW_SHOT_DATASETS, META_LEARNERS, MODELS
from metajax.train.config import MetaLearningConfig
from metajax.train.engine import Loop, SteadyClock, Unit, dry_run_summary, start_run, train_loop, write_summary
from metajax.train.errors import TrainingDiverged
from metajax.train.evaluation import evaluate_tasks, mean_and_ci95, sample_and_evaluate
from metajax.train.run_info import progress_bar, report, run_metadata
from metajax.train.sharding import device_mesh, is_primary_process, place_replicated, shard_leading_axis, to_host
from metajax.train.sweeps import RunGrid, by_point, run_grid, traced_build, with_values


def load_data(config: MetaLearningConfig):
    """The dataset ``config.dataset`` names, loaded (``config`` resolved): a ``FewShotData``."""
    entry = FEW_SHOT_DATASETS.get(config.dataset)
    return entry.build(entry.options(config.dataset_options), data_dir=config.data_dir)


def build(config: MetaLearningConfig, data, *, num_outputs: int | None = None):
    """The model, an example input, the learner, and samplers ``sampler(bank) -> sample`` per split.

    ``num_outputs``: the classifier's outputs (default: ``config.ways``); a trained run's, to score it on
    tasks of fewer ways (``metajax.train.loading``).

    The test sampler takes the support shots as an optional second argument
    (default: the config's), for scoring one trained run at several shot counts.

    The learner comes as ``learner(transductive, values=None) -> MetaLearner`` so that one run
    can be scored in both evaluation modes (``values``: a run's swept hyperparameters). Learners registered with
    ``trains_on_queries=False`` (Reptile) meta-train on support sets alone.
    """
    learner_entry = META_LEARNERS.get(config.algorithm)
    model_entry = MODELS.get(config.model)
    model = model_entry.build(
        model_entry.options(config.model_options),
        num_outputs=None if learner_entry.trait("embeds") else num_outputs or config.ways,
        example_shape=data.example_shape,
    )
    example = jnp.zeros((1, *data.example_shape))
    train_query_shots = config.query_shots if learner_entry.trait("trains_on_queries", True) else 0
    train_sampler = partial(data.sampler, ways=config.ways, shots=config.train_shots, query_shots=train_query_shots)

    def test_sampler(bank, shots=config.shots):
        return data.sampler(bank, ways=config.ways, shots=shots, query_shots=config.query_shots)

    options = learner_entry.options(config.algorithm_options)

    def learner(transductive: bool, values: Mapping[str, Any] | None = None):
        context = MetaContext(
            apply_fn=model.apply,
            loss_fn=data.loss_fn,
            model=model,
            ways=config.ways,
            meta_iters=config.meta_iters,
            transductive=transductive,
        )
        values = values or {}  # A run's swept hyperparameters, traced inside a vmapped program.
        return traced_build(lambda: learner_entry.build(with_values(options, values), context), list(values))

    return model, example, learner, train_sampler, test_sampler


def _over_runs(fn, in_axes, several: bool):
    """``fn`` vmapped over the run axis of the arguments ``in_axes`` marks 0, when there are several runs."""
    return jax.vmap(fn, in_axes=in_axes) if several else fn


def run_keys(config: MetaLearningConfig, grid: RunGrid) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The runs' initialization, training and evaluation keys (``[runs]`` key arrays when there are several):
    run r's are those of a lone run of seed ``seed + its seed index``."""
    several = grid.size > 1
    seeds = grid.seed_indices() + config.seed if several else np.asarray(config.seed)
    keys = _over_runs(lambda seed: jax.random.split(jax.random.key(seed), 3), (0,), several)(jnp.asarray(seeds))
    return keys[..., 0], keys[..., 1], keys[..., 2]


def initial_state(config: MetaLearningConfig, model, example, make_learner, grid: RunGrid, init_key):
    """The runs' initial learner state, with a leading run axis when there are several (``build``'s parts)."""
    init = _over_runs(
        lambda key, x, values: make_learner(config.transductive, values).init(model.init(key, x)),
        (0, None, 0),
        grid.size > 1,
    )
    # Jitted: one compilation, where initializing op by op compiled each of its many small operations.
    return jax.jit(init)(init_key, example, grid.values(squeeze_lone=True))


def _mode_name(transductive: bool) -> str:
    """The key under which an evaluation mode's scores are reported."""
    return "transductive" if transductive else "non_transductive"


def train_and_evaluate(
    config: MetaLearningConfig,
    workdir: str | Path,
    *,
    show_progress: bool = True,
    checkpoint_every: int = 1000,
    dry_run: bool = False,
    devices: int | None = None,
) -> dict[str, Any]:
    """Meta-trains the configured learner, evaluates it on ``eval_tasks`` test tasks, writes results.

    Writes ``workdir/metrics.jsonl`` (one line per logging interval),
    ``workdir/summary.json`` and, for datasets that draw one (sinusoid), ``workdir/DATASET_fits.png``.
    Saves the training state in ``workdir/checkpoints`` at the first logging
    interval past every ``checkpoint_every`` meta-steps and at the end; run
    again with the same workdir and config, it resumes from the latest one
    and ends with the same results as a run never interrupted. The tasks of
    each meta-batch and of each evaluation chunk are split over ``devices``
    local devices (default: every accelerator, one CPU); ``dry_run`` validates the arguments and the
    data, then returns without training.

    Returns:
      The summary dictionary written to ``summary.json``.
    """
    config, workdir = start_run(config, workdir, checkpoint_every)
    learner_entry = META_LEARNERS.get(config.algorithm)
    classification = FEW_SHOT_DATASETS.get(config.dataset).trait("classes")
    data = load_data(config)
    model, example, make_learner, train_sampler, test_sampler = build(config, data)
    make_learner(config.transductive)  # Its errors before any compilation.
    train_bank, test_bank = data.train, data.test
    train_sampler(train_bank)  # Validates the ways and shots against the classes present.
    for shots in (config.shots, *config.also_eval_shots):
        test_sampler(test_bank, shots)
    mesh = device_mesh(devices)
    primary = is_primary_process()  # The one process of several hosts that writes files.
    if dry_run:  # Everything above validated the arguments and the data.
        return dry_run_summary(config)

    grid = run_grid(config.sweep, config.seeds)  # Runs: sweep points x seeds, point-major.
    several = grid.size > 1  # Then every array of the state has a leading run axis.
    run_values = grid.values(squeeze_lone=True)

    def over_runs(fn, in_axes):
        return _over_runs(fn, in_axes, several)

    init_key, train_key, eval_key = run_keys(config, grid)
    state = initial_state(config, model, example, make_learner, grid, init_key)

    def run_chunk(state, bank, train_key, values, num_steps):
        learner = make_learner(config.transductive, values)
        sample = train_sampler(bank)

        def one_step(state, step_key):
            task_key, adapt_key = jax.random.split(step_key)
            tasks = shard_leading_axis(sample(task_key, config.meta_batch), mesh)  # The meta-batch over devices.
            return learner.step(state, tasks, key=adapt_key)

        # Keys depend on the step number alone, so chunking does not change results.
        steps = state.step + jnp.arange(num_steps)
        return jax.lax.scan(one_step, state, jax.vmap(jax.random.fold_in, (None, 0))(train_key, steps))

    @partial(jax.jit, static_argnames="num_steps", donate_argnums=0)
    def train_chunk(state, bank, train_key, values, num_steps):
        chunk = over_runs(lambda state, key, values: run_chunk(state, bank, key, values, num_steps), (0, 0, 0))
        return chunk(state, train_key, values)

    training_loss = learner_entry.trait("training_loss", "query_loss")  # The step metric shown as the loss.
    schedules = learner_entry.trait("schedules", ())  # Reported where a chunk ends, not as its mean.
    # About 20 printed lines per run, whatever its length; metrics.jsonl has every chunk.
    print_every = config.log_every * max(1, round(config.meta_iters / config.log_every / 20))
    clock = SteadyClock("steady_seconds", "steady_steps")

    def train(state, progress, done):
        num_steps = min(config.log_every, config.meta_iters - done)
        chunk_start = time.perf_counter()
        state, metrics = train_chunk(state, train_bank, train_key, run_values, num_steps)
        metrics = to_host(metrics)  # {name: [steps]}, or [runs, steps]
        elapsed = time.perf_counter() - chunk_start
        clock.tick(progress, elapsed, num_steps)
        for name, values in metrics.items():
            if not np.all(np.isfinite(values)):
                bad_step = done + int(np.argmin(np.isfinite(values).all(axis=0) if several else np.isfinite(values)))
                in_run = f" in run {int(np.argmin(np.isfinite(values).all(axis=-1)))}" if several else ""
                return Unit(
                    state,
                    num_steps,
                    diverged=f"meta-training {name} became {values[~np.isfinite(values)][0]} at step {bad_step}"
                    f"{in_run}",
                )

        def summed(name, values):  # Means over the chunk, except schedules; one per run.
            value = values[..., -1] if name in schedules else values.mean(axis=-1)
            return value.tolist() if several else float(value)

        record: dict[str, Any] = {"step": done + num_steps}
        record.update({name: summed(name, values) for name, values in metrics.items()})
        record["tasks_per_second"] = num_steps * config.meta_batch * grid.size / elapsed
        if record["step"] % print_every == 0 or record["step"] == config.meta_iters:
            shown = "  ".join(
                f"{name} {np.mean(value):.4f}"  # The mean over runs, when several.
                for name, value in record.items()
                if name not in ("step", "tasks_per_second")
            )
            report(f"step {record['step']}/{config.meta_iters}  {shown}  tasks/s {record['tasks_per_second']:.1f}")
        progress["last_record"] = record
        postfix = {"loss": f"{np.mean(record[training_loss]):.4f}", "tasks_s": f"{record['tasks_per_second']:.0f}"}
        return Unit(state, num_steps, record=record, postfix=postfix)

    loop = Loop(
        total=config.meta_iters,
        done=lambda state, progress: int(np.asarray(state.step).reshape(-1)[0]),  # Every run's step is the same.
        position=lambda step: f"at step {step} of {config.meta_iters}",
        log_field="step",
        description="meta-training",
        bar_unit="it",
    )
    # What the summary needs beyond the state, carried across a resumption.
    progress: dict[str, Any] = {"train_seconds": 0.0, "steady_seconds": 0.0, "steady_steps": 0, "last_record": None}
    state, progress = train_loop(
        workdir,
        config,
        state,
        progress,
        loop,
        train,
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        place=lambda state: place_replicated(state, mesh),  # Where train_chunk returns it: one compilation.
    )
    record, train_seconds = progress["last_record"], progress["train_seconds"]

    scores = score_test_tasks(
        config, state, make_learner, test_sampler, test_bank, eval_key=eval_key, grid=grid, mesh=mesh,
        show_progress=show_progress,
    )  # fmt: skip

    summary: dict[str, Any] = {
        "algorithm": config.algorithm,
        **run_metadata(config),
        "meta_iters_done": loop.done(state, progress),
        "meta_tasks_per_second": clock.rate(progress, config.meta_iters) * config.meta_batch * grid.size,
        "train_seconds": train_seconds,
        "final_training_loss": record[training_loss],
    }
    summary.update(evaluation_figures(scores, config, grid))
    if several:  # Each run's own training loss beside its figures.
        summary["runs"] = [
            {**grid.describe(run), "final_training_loss": record[training_loss][run], **figures}
            for run, figures in enumerate(summary["runs"])
        ]
    if not classification and data.plot is not None:
        summary["plot"] = str(workdir / f"{config.dataset}_fits.png")
        if primary:  # Host copies of the weights: the plot's computations stay on this process.
            title = f"{config.algorithm} on {config.dataset} after {config.meta_iters} meta-iterations"
            if several:
                title += " (run 0)"
            first = jax.tree.map(lambda a: a[0], to_host(state)) if several else to_host(state)
            data.plot(
                model.apply, make_learner(config.transductive, grid.points[0]), first, shots=config.shots,
                seed=config.seed, path=Path(summary["plot"]), title=title,
            )  # fmt: skip
    write_summary(workdir, summary)
    return summary


def score_test_tasks(
    config: MetaLearningConfig,
    state,
    make_learner,
    test_sampler,
    test_bank,
    *,
    eval_key,
    grid: RunGrid,
    mesh=None,
    show_progress: bool = False,
) -> dict[int, dict[str, dict[str, np.ndarray]]]:
    """The trained runs' per-task test scores ``{shots: {mode: {metric: [(runs,) tasks]}}}`` (``build``'s parts,
    ``run_keys``' evaluation key): ``config.eval_tasks`` tasks at ``config.shots`` and each of
    ``also_eval_shots``; raises ``TrainingDiverged`` where adaptation diverged on a task."""
    classification = FEW_SHOT_DATASETS.get(config.dataset).trait("classes")
    run_values = grid.values(squeeze_lone=True)

    def over_runs(fn, in_axes):
        return _over_runs(fn, in_axes, grid.size > 1)

    # Classification runs are scored in both batch-norm modes (the papers report both);
    # the configured one is the headline. Regression has no batch norm. Every
    # shot count is scored on the same trained weights.
    modes = [config.transductive, not config.transductive] if classification else [config.transductive]
    scores: dict[int, dict[str, dict[str, np.ndarray]]] = {}  # {shots: {mode: {metric: [(runs,) tasks]}}}
    for shots in dict.fromkeys((config.shots, *config.also_eval_shots)):
        scores[shots] = {}
        for transductive in modes:

            def evaluate_run(state, key, values, transductive=transductive, shots=shots):
                return sample_and_evaluate(
                    make_learner(transductive, values).evaluate,
                    test_sampler(test_bank, shots),
                    config.eval_chunk,
                    place=lambda tasks: shard_leading_axis(tasks, mesh),
                )(state, key)

            evaluate_chunk = jax.jit(over_runs(evaluate_run, (0, 0, 0)))
            mode = _mode_name(transductive)
            eval_bar = progress_bar(
                show=show_progress,
                total=config.eval_tasks,
                desc=f"evaluating {shots}-shot ({mode})",
                unit="task",
            )
            # The same key in every mode: the same test classes and inner mini-batches.
            scores[shots][mode] = evaluate_tasks(
                partial(_evaluate_with, evaluate_chunk, state, run_values),
                key=eval_key,
                num_tasks=config.eval_tasks,
                chunk_size=config.eval_chunk,
                progress=eval_bar.update,
            )
            eval_bar.close()
    for shots, shot_scores in scores.items():
        for mode, mode_scores in shot_scores.items():
            diverged = int(np.sum(~np.isfinite(mode_scores["loss"])))
            if diverged:
                where = f"{shots}-shot{', ' + mode.replace('_', '-') if len(shot_scores) > 1 else ''}"
                raise TrainingDiverged(
                    f"evaluation ({where}): the query loss is not finite on {diverged} of "
                    f"{config.eval_tasks * grid.size} test tasks, so adaptation diverged (an inner step size, or a "
                    "count of evaluation inner steps, too large?)"
                )
    return scores


def evaluation_figures(scores, config: MetaLearningConfig, grid: RunGrid) -> dict[str, Any]:
    """The summary's test figures from ``score_test_tasks``' scores: a lone run's, or each run's (``runs``),
    their mean and spread, and each sweep point's."""
    classification = FEW_SHOT_DATASETS.get(config.dataset).trait("classes")
    if grid.size == 1:
        return _test_figures(scores, config, classification)
    per_run = [
        _test_figures(jax.tree.map(lambda a, r=run: a[r], scores), config, classification) for run in range(grid.size)
    ]
    headline = "test_accuracy" if classification else "test_mse"
    figures: dict[str, Any] = {"runs": [{**grid.describe(run), **f} for run, f in enumerate(per_run)]}
    figures[headline] = float(np.mean([f[headline] for f in per_run]))
    figures[f"{headline}_std_over_runs"] = float(np.std([f[headline] for f in per_run]))
    if config.sweep:
        figures["sweep"] = by_point(grid, {headline: [f[headline] for f in per_run]})
    return figures


def _test_figures(scores, config: MetaLearningConfig, classification: bool) -> dict[str, Any]:
    """One run's test figures from its per-task scores ``{shots: {mode: {metric: [tasks]}}}``: the
    headline with its 95% CI, each evaluation mode's, and each shot count's."""
    figures: dict[str, Any] = {}
    headline = scores[config.shots][_mode_name(config.transductive)]
    if classification:
        figures["test_accuracy"], figures["test_accuracy_ci95"] = mean_and_ci95(headline["accuracy"])
        for mode, mode_scores in scores[config.shots].items():
            figures[f"test_accuracy_{mode}"], figures[f"test_accuracy_{mode}_ci95"] = mean_and_ci95(
                mode_scores["accuracy"]
            )
        if config.also_eval_shots:
            figures["test_accuracy_by_shots"] = {str(shots): {} for shots in scores}
            for shots, shot_scores in scores.items():
                for mode, mode_scores in shot_scores.items():
                    accuracy, ci95 = mean_and_ci95(mode_scores["accuracy"])
                    figures["test_accuracy_by_shots"][str(shots)].update({mode: accuracy, f"{mode}_ci95": ci95})
    else:
        figures["test_mse"], figures["test_mse_ci95"] = mean_and_ci95(headline["loss"])
        if config.also_eval_shots:
            figures["test_mse_by_shots"] = {}
            for shots, shot_scores in scores.items():
                mse, ci95 = mean_and_ci95(shot_scores[_mode_name(config.transductive)]["loss"])
                figures["test_mse_by_shots"][str(shots)] = {"mse": mse, "mse_ci95": ci95}
    return figures


def _evaluate_with(evaluate_chunk, state, run_values, key):
    """``evaluate_chunk(state, key, run_values)``, the key last for ``evaluate_tasks``."""
    return evaluate_chunk(state, key, run_values)
