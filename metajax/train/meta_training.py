"""Turns a meta-learner into a run: data, outer loop, evaluation, results."""

from __future__ import annotations

import time
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


def load_data(config: MetaLearningConfig):
    """The dataset ``config.dataset`` names, loaded (``config`` resolved): a ``FewShotData``."""
    entry = FEW_SHOT_DATASETS.get(config.dataset)
    return entry.build(entry.options(config.dataset_options), data_dir=config.data_dir)


def build(config: MetaLearningConfig, data):
    """The model, an example input, the learner, and samplers ``sampler(bank) -> sample`` per split.

    The test sampler takes the support shots as an optional second argument
    (default: the config's), for scoring one trained run at several shot counts.

    The learner comes as ``learner(transductive) -> MetaLearner`` so that one run
    can be scored in both evaluation modes. Learners registered with
    ``trains_on_queries=False`` (Reptile) meta-train on support sets alone.
    """
    learner_entry = META_LEARNERS.get(config.algorithm)
    model_entry = MODELS.get(config.model)
    model = model_entry.build(
        model_entry.options(config.model_options),
        num_outputs=None if learner_entry.trait("embeds") else config.ways,
        example_shape=data.example_shape,
    )
    example = jnp.zeros((1, *data.example_shape))
    train_query_shots = config.query_shots if learner_entry.trait("trains_on_queries", True) else 0
    train_sampler = partial(data.sampler, ways=config.ways, shots=config.train_shots, query_shots=train_query_shots)

    def test_sampler(bank, shots=config.shots):
        return data.sampler(bank, ways=config.ways, shots=shots, query_shots=config.query_shots)

    options = learner_entry.options(config.algorithm_options)

    def learner(transductive: bool):
        context = MetaContext(
            apply_fn=model.apply,
            loss_fn=data.loss_fn,
            model=model,
            ways=config.ways,
            meta_iters=config.meta_iters,
            transductive=transductive,
        )
        return learner_entry.build(options, context)

    return model, example, learner, train_sampler, test_sampler


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
    learner = make_learner(config.transductive)
    train_bank, test_bank = data.train, data.test
    train_sampler(train_bank)  # Validates the ways and shots against the classes present.
    for shots in (config.shots, *config.also_eval_shots):
        test_sampler(test_bank, shots)
    mesh = device_mesh(devices)
    primary = is_primary_process()  # The one process of several hosts that writes files.
    if dry_run:  # Everything above validated the arguments and the data.
        return dry_run_summary(config)

    key = jax.random.key(config.seed)
    init_key, train_key, eval_key = jax.random.split(key, 3)
    # Jitted: one compilation, where initializing op by op compiled each of its many small operations.
    state = jax.jit(lambda key, x: learner.init(model.init(key, x)))(init_key, example)

    @partial(jax.jit, static_argnames="num_steps", donate_argnums=0)
    def train_chunk(state, bank, num_steps):
        sample = train_sampler(bank)

        def one_step(state, step_key):
            task_key, adapt_key = jax.random.split(step_key)
            tasks = shard_leading_axis(sample(task_key, config.meta_batch), mesh)  # The meta-batch over devices.
            return learner.step(state, tasks, key=adapt_key)

        # Keys depend on the step number alone, so chunking does not change results.
        steps = state.step + jnp.arange(num_steps)
        return jax.lax.scan(one_step, state, jax.vmap(jax.random.fold_in, (None, 0))(train_key, steps))

    training_loss = learner_entry.trait("training_loss", "query_loss")  # The step metric shown as the loss.
    schedules = learner_entry.trait("schedules", ())  # Reported where a chunk ends, not as its mean.
    # About 20 printed lines per run, whatever its length; metrics.jsonl has every chunk.
    print_every = config.log_every * max(1, round(config.meta_iters / config.log_every / 20))
    clock = SteadyClock("steady_seconds", "steady_steps")

    def train(state, progress, done):
        num_steps = min(config.log_every, config.meta_iters - done)
        chunk_start = time.perf_counter()
        state, metrics = train_chunk(state, train_bank, num_steps)
        metrics = to_host(metrics)
        elapsed = time.perf_counter() - chunk_start
        clock.tick(progress, elapsed, num_steps)
        for name, values in metrics.items():
            if not np.all(np.isfinite(values)):
                bad_step = done + int(np.argmin(np.isfinite(values)))
                return Unit(
                    state,
                    num_steps,
                    diverged=f"meta-training {name} became {values[~np.isfinite(values)][0]} at step {bad_step}",
                )
        record = {"step": done + num_steps}  # Means over the chunk, except schedules.
        record.update(
            {name: float(values[-1] if name in schedules else values.mean()) for name, values in metrics.items()}
        )
        record["tasks_per_second"] = num_steps * config.meta_batch / elapsed
        if record["step"] % print_every == 0 or record["step"] == config.meta_iters:
            shown = "  ".join(
                f"{name} {value:.4f}" for name, value in record.items() if name not in ("step", "tasks_per_second")
            )
            report(f"step {record['step']}/{config.meta_iters}  {shown}  tasks/s {record['tasks_per_second']:.1f}")
        progress["last_record"] = record
        postfix = {"loss": f"{record[training_loss]:.4f}", "tasks_s": f"{record['tasks_per_second']:.0f}"}
        return Unit(state, num_steps, record=record, postfix=postfix)

    loop = Loop(
        total=config.meta_iters,
        done=lambda state, progress: int(state.step),
        position=lambda step: f"at step {step} of {config.meta_iters}",
        log_field="step",
        description="meta-training",
        bar_unit="it",
    )
    # What the summary needs beyond the state, carried across a resumption.
    progress = {"train_seconds": 0.0, "steady_seconds": 0.0, "steady_steps": 0, "last_record": None}
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

    # Classification runs are scored in both batch-norm modes (the papers report both);
    # the configured one is the headline. Regression has no batch norm. Every
    # shot count is scored on the same trained weights.
    modes = [config.transductive, not config.transductive] if classification else [config.transductive]
    scores: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    for shots in dict.fromkeys((config.shots, *config.also_eval_shots)):
        scores[shots] = {}
        for transductive in modes:
            evaluate_chunk = jax.jit(
                sample_and_evaluate(
                    make_learner(transductive).evaluate,
                    test_sampler(test_bank, shots),
                    config.eval_chunk,
                    place=lambda tasks: shard_leading_axis(tasks, mesh),
                )
            )
            mode = _mode_name(transductive)
            eval_bar = progress_bar(
                show=show_progress,
                total=config.eval_tasks,
                desc=f"evaluating {shots}-shot ({mode})",
                unit="task",
            )
            # The same key in every mode: the same test classes and inner mini-batches.
            scores[shots][mode] = evaluate_tasks(
                lambda k, evaluate_chunk=evaluate_chunk: evaluate_chunk(state, k),
                key=eval_key,
                num_tasks=config.eval_tasks,
                chunk_size=config.eval_chunk,
                progress=eval_bar.update,
            )
            eval_bar.close()
    headline = scores[config.shots][_mode_name(config.transductive)]
    for shots, shot_scores in scores.items():
        for mode, mode_scores in shot_scores.items():
            diverged = int(np.sum(~np.isfinite(mode_scores["loss"])))
            if diverged:
                where = f"{shots}-shot{', ' + mode.replace('_', '-') if len(shot_scores) > 1 else ''}"
                raise TrainingDiverged(
                    f"evaluation ({where}): the query loss is not finite on {diverged} of "
                    f"{config.eval_tasks} test tasks, so adaptation diverged (an inner step size, or a count of "
                    "evaluation inner steps, too large?)"
                )

    summary: dict[str, Any] = {
        "algorithm": config.algorithm,
        **run_metadata(config),
        "meta_iters_done": int(state.step),
        "meta_tasks_per_second": clock.rate(progress, config.meta_iters) * config.meta_batch,
        "train_seconds": train_seconds,
        "final_training_loss": record[training_loss],
    }
    if classification:
        summary["test_accuracy"], summary["test_accuracy_ci95"] = mean_and_ci95(headline["accuracy"])
        for mode, mode_scores in scores[config.shots].items():
            summary[f"test_accuracy_{mode}"], summary[f"test_accuracy_{mode}_ci95"] = mean_and_ci95(
                mode_scores["accuracy"]
            )
        if config.also_eval_shots:
            summary["test_accuracy_by_shots"] = {str(shots): {} for shots in scores}
            for shots, shot_scores in scores.items():
                for mode, mode_scores in shot_scores.items():
                    accuracy, ci95 = mean_and_ci95(mode_scores["accuracy"])
                    summary["test_accuracy_by_shots"][str(shots)].update({mode: accuracy, f"{mode}_ci95": ci95})
    else:
        summary["test_mse"], summary["test_mse_ci95"] = mean_and_ci95(headline["loss"])
        if config.also_eval_shots:
            summary["test_mse_by_shots"] = {}
            for shots, shot_scores in scores.items():
                mse, ci95 = mean_and_ci95(shot_scores[_mode_name(config.transductive)]["loss"])
                summary["test_mse_by_shots"][str(shots)] = {"mse": mse, "mse_ci95": ci95}
        if data.plot is not None:
            summary["plot"] = str(workdir / f"{config.dataset}_fits.png")
            if primary:  # Host copies of the weights: the plot's computations stay on this process.
                title = f"{config.algorithm} on {config.dataset} after {config.meta_iters} meta-iterations"
                data.plot(
                    model.apply, learner, to_host(state), shots=config.shots, seed=config.seed,
                    path=Path(summary["plot"]), title=title,
                )  # fmt: skip
    write_summary(workdir, summary)
    return summary
