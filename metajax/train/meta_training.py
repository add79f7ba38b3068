"""Turns a meta-learner into a run: data, outer loop, evaluation, results."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.data import few_shot_sampler, load_omniglot, sinusoid_sampler
from metajax.data.omniglot import EXAMPLES_PER_CLASS
from metajax.meta import anil, maml, mean_squared_error, meta_sgd, protonets, reptile, softmax_cross_entropy
from metajax.models import MLP, Conv4
from metajax.train.checkpoints import RunCheckpoints
from metajax.train.config import MetaLearningConfig
from metajax.train.errors import TrainingDiverged
from metajax.train.evaluation import evaluate_tasks, mean_and_ci95, sample_and_evaluate
from metajax.train.interruption import StopSignals
from metajax.train.metrics_log import MetricsLog
from metajax.train.run_info import progress_bar, report, run_metadata, write_summary
from metajax.train.sharding import device_mesh, is_primary_process, place_replicated, shard_leading_axis, to_host

SINUSOID_HIDDEN = (40, 40)  # MAML's and Reptile's sinusoid regressor.


def _check_against_data(config: MetaLearningConfig) -> None:
    """Fails before any heavy work when the data cannot supply the tasks asked for."""
    if config.dataset != "omniglot":
        return
    checks = [("shots + query-shots", config.shots + config.query_shots), ("train-shots", config.train_shots or 0)]
    checks += [("also-eval-shots + query-shots", shots + config.query_shots) for shots in config.also_eval_shots]
    for name, needed in checks:
        if needed > EXAMPLES_PER_CLASS:
            raise ValueError(f"{name} = {needed}, but Omniglot has only {EXAMPLES_PER_CLASS} examples per class")


def _make_learner(config: MetaLearningConfig, apply_fn, loss_fn, transductive: bool):
    """The configured algorithm as a ``MetaLearner``."""
    if config.algorithm == "reptile":
        inner_optimizer = {
            "adam": optax.adam(config.inner_lr, b1=0.0),  # The paper's beta1 = 0.
            "sgd": optax.sgd(config.inner_lr),
        }[config.inner_optimizer]
        return reptile(
            apply_fn,
            loss_fn,
            inner_optimizer=inner_optimizer,
            inner_steps=config.inner_steps,
            inner_batch=config.inner_batch,
            meta_step_size=config.meta_step_size,
            meta_step_size_final=config.meta_step_size_final,
            meta_iters=config.meta_iters,
            eval_inner_steps=config.eval_inner_steps,
            eval_inner_batch=config.eval_inner_batch,
            transductive=transductive,
            reset_inner_optimizer=config.reset_inner_optimizer,
        )
    outer_optimizer = optax.adam(config.meta_lr)
    if config.algorithm == "protonets":
        return protonets(apply_fn, ways=config.ways, outer_optimizer=outer_optimizer, transductive=transductive)
    factory = {"maml": maml, "fomaml": maml, "anil": anil, "meta-sgd": meta_sgd}[config.algorithm]
    return factory(
        apply_fn,
        loss_fn,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        outer_optimizer=outer_optimizer,
        first_order=config.first_order or config.algorithm == "fomaml",
        second_order_steps=config.second_order_steps,
        eval_inner_steps=config.eval_inner_steps,
        transductive=transductive,
    )


def build(config: MetaLearningConfig):
    """The model, an example input, the learner, and samplers ``sampler(bank) -> sample`` per split.

    The test sampler takes the support shots as an optional second argument
    (default: the config's), for scoring one trained run at several shot counts.

    The learner comes as ``learner(transductive) -> MetaLearner`` so that one run
    can be scored in both evaluation modes. Reptile meta-trains on support sets
    alone; the other learners need a query set in every training task.
    """
    train_shots = config.train_shots if config.algorithm == "reptile" else config.shots
    train_query_shots = 0 if config.algorithm == "reptile" else config.query_shots
    if config.dataset == "omniglot":
        # ProtoNets embeds: the same network without its linear head.
        model = Conv4(num_classes=None if config.algorithm == "protonets" else config.ways, conv_impl=config.conv_impl)
        loss_fn = softmax_cross_entropy
        example = jnp.zeros((1, 28, 28, 1))
        train_sampler = partial(few_shot_sampler, ways=config.ways, shots=train_shots, query_shots=train_query_shots)
        test_sampler = lambda bank, shots=config.shots: few_shot_sampler(  # noqa: E731
            bank, ways=config.ways, shots=shots, query_shots=config.query_shots
        )
    else:
        model = MLP(SINUSOID_HIDDEN, 1)
        loss_fn = mean_squared_error
        example = jnp.zeros((1, 1))
        train_sampler = lambda bank: sinusoid_sampler(train_shots, train_query_shots)  # noqa: E731
        test_sampler = lambda bank, shots=config.shots: sinusoid_sampler(shots, config.query_shots)  # noqa: E731

    def learner(transductive: bool):
        return _make_learner(config, model.apply, loss_fn, transductive)

    return model, example, learner, train_sampler, test_sampler


def _headline_loss(record: dict[str, float]) -> str:
    """The training loss to show: the meta-loss where there is one, else Reptile's adapted inner loss."""
    return "query_loss" if "query_loss" in record else "inner_loss_last"


def _mode_name(transductive: bool) -> str:
    """The key under which an evaluation mode's scores are reported."""
    return "transductive" if transductive else "non_transductive"


def load_banks(config: MetaLearningConfig) -> tuple[jax.Array, jax.Array]:
    if config.dataset == "omniglot":
        banks = load_omniglot(config.data_dir, split=config.split)
        return jnp.asarray(banks.train), jnp.asarray(banks.test)
    # Sinusoid tasks are generated from the key alone; the bank is a placeholder.
    return jnp.zeros(()), jnp.zeros(())


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
    ``workdir/summary.json`` and, for sinusoid, ``workdir/sinusoid_fits.png``.
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
    config = config.resolved()
    _check_against_data(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    model, example, make_learner, train_sampler, test_sampler = build(config)
    learner = make_learner(config.transductive)
    train_bank, test_bank = load_banks(config)
    if config.dataset == "omniglot":  # Validates ways against the classes present.
        train_sampler(train_bank)
        for shots in (config.shots, *config.also_eval_shots):
            test_sampler(test_bank, shots)
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint-every must be a positive integer, got {checkpoint_every}")
    mesh = device_mesh(devices)
    primary = is_primary_process()  # The one process of several hosts that writes files.
    if dry_run:  # Everything above validated the arguments and the data.
        return {"dry_run": True, **run_metadata(config)}
    checkpoints = RunCheckpoints(workdir, config)

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

    # What the summary needs beyond the state, carried across a resumption.
    progress = {"train_seconds": 0.0, "steady_seconds": 0.0, "steady_steps": 0, "last_record": None}
    restored = checkpoints.restore(state)
    if restored is not None:
        state, progress = restored
        report(f"resuming from the checkpoint at step {int(state.step)} of {config.meta_iters} in {workdir}")
    state = place_replicated(state, mesh)  # Where train_chunk returns it: one compilation, not two.
    log = MetricsLog(workdir, step_field="step", resume_after=None if restored is None else int(state.step))
    first_chunk, started = True, time.perf_counter() - progress["train_seconds"]
    bar = progress_bar(
        show=show_progress,
        total=config.meta_iters,
        initial=int(state.step),
        desc="meta-training",
        unit="it",
    )
    # About 20 printed lines per run, whatever its length; metrics.jsonl has every chunk.
    print_every = config.log_every * max(1, round(config.meta_iters / config.log_every / 20))
    last_saved, chunks = int(state.step), 0  # chunks: the points where a stop signal can save, counted.
    with StopSignals() as stop:  # SIGTERM, Ctrl-C: save, then stop.
        while int(state.step) < config.meta_iters:
            num_steps = min(config.log_every, config.meta_iters - int(state.step))
            chunk_start = time.perf_counter()
            state, metrics = train_chunk(state, train_bank, num_steps)
            metrics = to_host(metrics)
            elapsed = time.perf_counter() - chunk_start
            if not first_chunk:  # The first chunk of a process includes compilation.
                progress["steady_seconds"] += elapsed
                progress["steady_steps"] += num_steps
            first_chunk = False
            for name, values in metrics.items():
                if not np.all(np.isfinite(values)):
                    bad_step = int(state.step) - num_steps + int(np.argmin(np.isfinite(values)))
                    log.close()
                    checkpoints.close()
                    raise TrainingDiverged(
                        f"meta-training {name} became {values[~np.isfinite(values)][0]} at step {bad_step}; "
                        f"{checkpoints.kept_message()}"
                    )
            # Means over the chunk, except schedules, reported where the chunk ends.
            record = {"step": int(state.step)}
            record.update(
                {
                    name: float(values[-1] if name == "meta_step_size" else values.mean())
                    for name, values in metrics.items()
                }
            )
            record["tasks_per_second"] = num_steps * config.meta_batch / elapsed
            log.write(record)
            if record["step"] % print_every == 0 or record["step"] == config.meta_iters:
                shown = "  ".join(
                    f"{name} {value:.4f}" for name, value in record.items() if name not in ("step", "tasks_per_second")
                )
                report(f"step {record['step']}/{config.meta_iters}  {shown}  tasks/s {record['tasks_per_second']:.1f}")
            bar.update(num_steps)
            bar.set_postfix(loss=f"{record[_headline_loss(record)]:.4f}", tasks_s=f"{record['tasks_per_second']:.0f}")
            progress["train_seconds"] = time.perf_counter() - started
            progress["last_record"] = record
            step = int(state.step)
            stopping = stop.should_stop(chunks)
            chunks += 1
            if step // checkpoint_every > last_saved // checkpoint_every or step == config.meta_iters or stopping:
                checkpoints.save(step, state, progress)
                last_saved = step
            if stopping:
                bar.close()
                log.close()
                checkpoints.close()
                raise stop.interrupted(f"at step {step} of {config.meta_iters}", checkpoints.directory)
    bar.close()
    log.close()
    checkpoints.close()
    record, train_seconds = progress["last_record"], progress["train_seconds"]
    steady_seconds, steady_steps = progress["steady_seconds"], progress["steady_steps"]
    if steady_steps == 0:  # A single chunk: report it, compilation included.
        steady_seconds, steady_steps = train_seconds, config.meta_iters

    # Omniglot runs are scored in both batch-norm modes (the paper reports both);
    # the configured one is the headline. Regression has no batch norm. Every
    # shot count is scored on the same trained weights.
    modes = [config.transductive, not config.transductive] if config.dataset == "omniglot" else [config.transductive]
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
                    f"{config.eval_tasks} test tasks, so adaptation diverged; try fewer --eval-inner-steps or a "
                    "smaller --inner-lr"
                )

    summary: dict[str, Any] = {
        "algorithm": config.algorithm,
        **run_metadata(config),
        "meta_iters_done": int(state.step),
        "meta_tasks_per_second": steady_steps * config.meta_batch / steady_seconds,
        "train_seconds": train_seconds,
        "final_training_loss": record[_headline_loss(record)],
    }
    if config.dataset == "omniglot":
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
        summary["plot"] = str(workdir / "sinusoid_fits.png")
        if primary:  # Host copies of the weights: the plot's computations stay on this process.
            _plot_sinusoid_fits(model, learner, to_host(state), config, Path(summary["plot"]))
    write_summary(workdir, summary)
    return summary


def _plot_sinusoid_fits(model, learner, state, config: MetaLearningConfig, path: Path) -> Path:
    """Draws a few test tasks: the truth, the support points, before and after adaptation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metajax.data.sinusoid import INPUT_RANGE, sample_sinusoid_parameters, sinusoid_task

    # Jitted: op by op, the adaptation compiled each of its small operations (seconds for a plot).
    sample = jax.jit(sample_sinusoid_parameters, static_argnums=(1, 2, 3))
    tasks, amplitudes, phases = sample(jax.random.key(config.seed + 1), 4, config.shots, 0)
    grid = jnp.linspace(*INPUT_RANGE, 200)[:, None]

    @jax.jit
    def curves(state, support_x, support_y, key, amplitude, phase):
        adapted = learner.adapt(state, support_x, support_y, key=key)
        return sinusoid_task(amplitude, phase, grid), model.apply(state.params, grid), model.apply(adapted, grid)

    figure, axes = plt.subplots(1, 4, figsize=(16, 3.5), sharey=True)
    for index, axis in enumerate(axes):
        task, initial, adapted = curves(
            state, tasks.support_x[index], tasks.support_y[index], jax.random.key(index), amplitudes[index],
            phases[index],
        )  # fmt: skip
        axis.plot(grid, task, "k-", label="task")
        axis.plot(grid, initial, "b:", label="meta-learned init")
        axis.plot(grid, adapted, "r--", label=f"after {config.eval_inner_steps} steps")
        axis.plot(tasks.support_x[index], tasks.support_y[index], "ko", label=f"{config.shots} support points")
        axis.set_xlabel("x")
    axes[0].legend(loc="lower left", fontsize=8)
    figure.suptitle(f"{config.algorithm} on sinusoid regression after {config.meta_iters} meta-iterations")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
