"""The ``metajax`` command: parse, build a config, run, print and write results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metajax.data.errors import DataError
from metajax.options import add_config_flags, add_flags, flag, positive_int
from metajax.registry import (
    CONTINUAL_BENCHMARKS,
    CONTINUAL_STRATEGIES,
    FEW_SHOT_DATASETS,
    META_LEARNERS,
    MODELS,
    MULTITASK_DATASETS,
    MULTITASK_MODELS,
    MULTITASK_WEIGHTINGS,
    listing,
    load_plugins,
)
from metajax.train import continual_training, meta_training, multitask_training
from metajax.train.config import MetaLearningConfig
from metajax.train.continual_config import ContinualConfig
from metajax.train.errors import RunInterrupted, TrainingDiverged
from metajax.train.multitask_config import MultiTaskConfig
from metajax.train.sweeps import parse_sweep


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (exit code 2), like the errors of a run."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run_options(parser, *, unit: str, default_every: int) -> None:
    """Options every subcommand shares: resumption, NaN checking, validation only."""
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=default_every,
        help=f"{unit} between checkpoints in WORKDIR/checkpoints (default {default_every}); rerunning with the same "
        "--workdir resumes from the latest",
    )
    parser.add_argument(
        "--debug-nans", action="store_true", help="JAX's own NaN checking (slow): fail at the first NaN"
    )
    parser.add_argument("--dry-run", action="store_true", help="validate the arguments and the data, then exit")
    parser.add_argument(
        "--devices",
        type=positive_int,
        help="local devices to split the work over (default: every accelerator; one device on a CPU)",
    )


def _add_generated_options(
    parser, config_class, methods: dict, *, workdir: str, unit: str, default_every: int, skip: tuple[str, ...] = ()
) -> dict[str, set[str]]:
    """A run command's flags: the run's own from ``config_class``, one group per kind of method it picks
    (``{group: (entries or a registry, title)}``, each entry's own options), ``--sweep``, and the options
    every command shares; returns which parsed names go into each group (``strategy_options``...)."""
    config_names = add_config_flags(parser, config_class, skip=skip)
    groups = {group: add_flags(parser, entries, title=title) for group, (entries, title) in methods.items()}
    _refuse_clashes(config_names, groups)
    _add_sweep_option(parser)
    parser.add_argument("--workdir", default=workdir, help="where metrics.jsonl, summary.json and the plots go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_run_options(parser, unit=unit, default_every=default_every)
    return groups


def _readers(registry) -> tuple:
    """A registry's flag group: its options, each naming the entries that read it."""
    noun = registry.kind.split()[-1]
    return registry, f"{noun} options (each names the {_plural(noun)} that read it)"


def _plural(noun: str) -> str:
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def _add_meta_parser(subparsers, learner) -> dict[str, set[str]]:
    """One subcommand per registered meta-learner, offering only the options that learner reads (its own,
    generated from its hyperparameter dataclass, and the run's from ``MetaLearningConfig``); returns which
    parsed names go into ``algorithm_options``, ``dataset_options`` and ``model_options``."""
    parser = subparsers.add_parser(
        learner.name,
        aliases=list(learner.aliases),
        help=f"meta-train {learner.name} and evaluate it on held-out tasks",
        description=(
            f"{learner.description} Options left out take the preset of the algorithm and dataset: the paper's "
            "settings for omniglot, a one-minute demo for sinusoid (which needs no files). Datasets: "
            f"{', '.join(FEW_SHOT_DATASETS.names())}. Models: {', '.join(MODELS.names())}."
        ),
    )
    methods = {
        "algorithm_options": ([learner], f"{learner.name}'s options"),
        "dataset_options": _readers(FEW_SHOT_DATASETS),
        "model_options": _readers(MODELS),
    }
    return _add_generated_options(
        parser, MetaLearningConfig, methods, workdir=f"runs/{learner.name}", unit="meta-steps", default_every=1000,
        skip=("algorithm",),
    )  # fmt: skip


def _refuse_clashes(config_names: set[str], groups: dict[str, set[str]]) -> None:
    """A plugin's option named like another's: two flags cannot share a name."""
    seen, clashes = set(config_names), set()
    for names in groups.values():
        clashes |= seen & names
        seen |= names
    if clashes:
        raise ValueError(f"options registered twice under one name: {', '.join(sorted(clashes))}")


def _add_multitask_parser(subparsers) -> dict[str, set[str]]:
    """``metajax multitask`` (alias ``mmoe``), its flags generated from ``MultiTaskConfig`` and the registered
    datasets, models and weightings; returns which parsed names go into each one's options."""
    names = {
        kind: ", ".join(registry.names())
        for kind, registry in (("datasets", MULTITASK_DATASETS), ("models", MULTITASK_MODELS))
    }
    parser = subparsers.add_parser(
        "multitask",
        aliases=["mmoe"],
        help="train a multi-task model (MMoE and its baselines) and score every task",
        description=(
            "Multi-task learning (Ma et al. 2018). With no arguments: MMoE on the paper's synthetic pair of "
            f"correlated regression tasks, which needs no files. Datasets: {names['datasets']}. Models: "
            f"{names['models']}. Weightings: {', '.join(MULTITASK_WEIGHTINGS.names())}."
        ),
    )
    methods = {group: _readers(registry) for group, registry in (
        ("dataset_options", MULTITASK_DATASETS), ("model_options", MULTITASK_MODELS),
        ("weighting_options", MULTITASK_WEIGHTINGS),
    )}  # fmt: skip
    return _add_generated_options(parser, MultiTaskConfig, methods, workdir="runs/mmoe", unit="epochs", default_every=1)


def _add_continual_parser(subparsers) -> dict[str, set[str]]:
    """``metajax continual``, its flags generated from ``ContinualConfig`` and the registered strategies and
    models; returns which parsed names go into ``strategy_options`` and ``model_options``."""
    names = {registry.option: ", ".join(registry.names()) for registry in (CONTINUAL_STRATEGIES, MODELS)}
    names["benchmark"] = ", ".join(CONTINUAL_BENCHMARKS.names())
    parser = subparsers.add_parser(
        "continual",
        help="train through a stream of experiences with a continual-learning strategy",
        description=(
            "Continual learning. With no arguments: naive fine-tuning on split-gaussian, generated data "
            "that needs no files. MNIST benchmarks read --data-dir/mnist.npz, or TensorFlow Datasets "
            f"(needs a network the first time). Benchmarks: {names['benchmark']}. Strategies: {names['strategy']}. "
            f"Models: {names['model']}."
        ),
    )
    methods = {
        "benchmark_options": _readers(CONTINUAL_BENCHMARKS),
        "strategy_options": _readers(CONTINUAL_STRATEGIES),
        "model_options": _readers(MODELS),
    }
    groups = _add_generated_options(
        parser, ContinualConfig, methods, workdir="runs/continual", unit="experiences", default_every=1
    )
    # The other families' word for it: --dataset folder:PATH picks your own data in every command.
    parser.add_argument("--dataset", dest="benchmark", default=argparse.SUPPRESS, help="the same as --benchmark")
    return groups


def _add_sweep_option(parser) -> None:
    parser.add_argument(
        "--sweep",
        type=parse_sweep,
        action="append",
        metavar="NAME=V1,V2,...",
        help="train one run per value of a real-valued hyperparameter (e.g. learning-rate=1e-3,1e-2), each with "
        "--seeds seeds, all as one vmapped program; several --sweep flags make a grid",
    )


def _print_continual_table(summary: dict) -> None:
    config = summary["config"]
    matrix = np.asarray(summary["accuracy_matrix"])
    print(f"{config['strategy']} on {config['benchmark']} ({config['scenario']}), {config['seeds']} seed(s)")
    print("accuracy matrix (%), row = after training through experience i, column = tested on experience j:")
    for i, row in enumerate(matrix):
        print(f"  {i:>2}  " + " ".join(f"{100 * a:5.1f}" for a in row))

    def fmt(entry):  # A {"mean", "std"} fraction as percent, or n/a (joint training has no forgetting).
        return "n/a" if entry is None else f"{100 * entry['mean']:.2f} +- {100 * entry['std']:.2f}"

    for name, key in (("final average accuracy %", "final_average_accuracy"), ("forgetting %", "forgetting")):
        print(f"{name:<26}{fmt(summary[key])}")
    print(f"{'BWT / FWT %':<26}{fmt(summary['bwt'])} / {fmt(summary['fwt'])}")
    print(f"{'train seconds':<26}{summary['train_seconds']:.1f}")
    _print_sweep(summary, "final_average_accuracy", "final average accuracy %", percent=True)


def _print_sweep(summary: dict, field: str, words: str, *, percent: bool) -> None:
    """One line per sweep point: its values and the mean +- std over its seeds of ``field``."""
    scale = 100 if percent else 1
    for point in summary.get("sweep", []):
        values = ", ".join(f"{name.replace('_', '-')}={value:g}" for name, value in point["values"].items())
        figure = point[field]
        digits = 2 if percent else 4
        print(f"  {values}: {words} {scale * figure['mean']:.{digits}f} +- {scale * figure['std']:.{digits}f}")


def _print_mmoe_table(summary: dict) -> None:
    config = summary["config"]
    runs = summary.get("runs")
    best = summary["best_epoch"] if runs is None else ", ".join(str(run["best_epoch"]) for run in runs)
    rows = [
        ("dataset", config["dataset"]),
        ("model", config["model"]),
        ("epochs (best validation)", f"{config['epochs']} ({best})"),
        ("examples/s", f"{summary['examples_per_second']:.0f}"),
        ("train seconds", f"{summary['train_seconds']:.1f}"),
    ]
    for task, scores in summary["tasks"].items():
        metric = "auc" if "auc" in scores else "mse"
        if runs is None:
            rows.append((f"test {metric}, {task}", f"{scores[metric]:.4f}"))
        else:
            spread = summary["tasks_std_over_runs"][task][metric]
            rows.append((f"test {metric}, {task}, mean of {len(runs)} runs", f"{scores[metric]:.4f} +- {spread:.4f}"))
    for task, weights in summary.get("mean_gate_weights", {}).items():
        rows.append((f"mean gate weights, {task}", " ".join(f"{w:.2f}" for w in weights)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for field in summary.get("sweep", [{}])[0]:
        if field != "values":
            _print_sweep(summary, field, f"test {field}", percent=False)


def _print_meta_table(summary: dict) -> None:
    config = summary["config"]
    if "test_accuracy" in summary:
        task = f"{config['ways']}-way {config['shots']}-shot"
    else:
        task = f"{config['shots']}-shot regression"
    rows = [
        ("algorithm", config["algorithm"]),
        ("dataset", config["dataset"]),
        ("task", task),
        ("meta-iterations", summary["meta_iters_done"]),
        ("meta-training tasks/s", f"{summary['meta_tasks_per_second']:.1f}"),
        ("train seconds", f"{summary['train_seconds']:.1f}"),
    ]
    if "runs" in summary:  # Several runs: the mean and spread over them, and each sweep point's.
        headline, words, scale = (
            ("test_accuracy", "test accuracy %", 100) if "test_accuracy" in summary else ("test_mse", "test MSE", 1)
        )
        mode = ("transductive, " if config["transductive"] else "non-transductive, ") if scale == 100 else ""
        digits = 2 if scale == 100 else 4
        spread = (
            f"{scale * summary[headline]:.{digits}f} +- {scale * summary[headline + '_std_over_runs']:.{digits}f} (std)"
        )
        rows.append((f"{words}, {mode}mean of {len(summary['runs'])} runs", spread))
        for name, value in rows:
            print(f"{name:<{max(len(n) for n, _ in rows)}}  {value}")
        _print_sweep(summary, headline, words, percent=scale == 100)
        return
    if "test_accuracy" in summary:
        # The configured mode first: it is the headline test_accuracy.
        modes = ("transductive", "non_transductive")
        by_shots = summary.get("test_accuracy_by_shots") or {
            str(config["shots"]): {key[len("test_accuracy_") :]: value for key, value in summary.items()}
        }
        for shots, scores in by_shots.items():
            for mode in modes if config["transductive"] else modes[::-1]:
                accuracy = f"{100 * scores[mode]:.2f} +- {100 * scores[f'{mode}_ci95']:.2f} %"
                name = f"test accuracy {shots}-shot, {mode.replace('_', '-')} ({config['eval_tasks']} tasks)"
                rows.append((name, accuracy))
    else:
        rows.append(
            (f"test MSE ({config['eval_tasks']} tasks)", f"{summary['test_mse']:.4f} +- {summary['test_mse_ci95']:.4f}")
        )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _add_evaluate_parser(subparsers) -> None:
    """``metajax evaluate WORKDIR``: a trained run scored again without training; its flags are made from the
    config fields each family lets change (``metajax.train.loading.EVALUATION_FIELDS``)."""
    from metajax.train.loading import EVALUATION_FIELDS, FAMILY_CONFIGS

    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run again, on its test tasks or on others, without training",
        description=(
            "Loads WORKDIR's config and latest checkpoint and scores the trained state with the run's own "
            "evaluation: unchanged, the figures of its summary.json; with the options below, other test tasks "
            "or data. Meta-learning: test tasks; multi-task: the test split; continual: every experience's test "
            "set. Nothing in WORKDIR is written."
        ),
    )
    parser.add_argument("workdir", help="the --workdir of a trained metajax run")
    parser.add_argument(
        "--run", type=int, help="of a run of several seeds or sweep points, score this one alone (0 to runs - 1)"
    )
    parser.add_argument("--output", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON, not as a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    families = "; ".join(f"{family}: {', '.join('--' + flag(n) for n in names)}" for family, names in
                         EVALUATION_FIELDS.items())  # fmt: skip
    group = parser.add_argument_group(
        "what to score instead", f"each defaults to the run's own value; a run takes those of its family ({families})"
    )
    added: set[str] = set()
    for family, names in EVALUATION_FIELDS.items():  # A flag two families share is added once.
        config_class = FAMILY_CONFIGS[family][0]
        skip = [field.name for field in dataclasses.fields(config_class) if field.name not in set(names) - added]
        added |= add_config_flags(group, config_class, skip=skip)


def _evaluate(args: argparse.Namespace) -> int:
    """``metajax evaluate``: loads the run, scores it, prints (and writes) the figures."""
    from metajax.train.loading import EVALUATION_FIELDS, evaluate_run, load_run

    changes = {name: getattr(args, name) for names in EVALUATION_FIELDS.values() for name in names
               if hasattr(args, name)}  # fmt: skip
    try:
        result = evaluate_run(load_run(args.workdir, run=args.run), show_progress=not args.no_progress, **changes)
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    except (ValueError, DataError, TrainingDiverged) as error:
        print(f"metajax evaluate: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"metajax evaluate: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_evaluation(result)
    if args.output:
        print(f"wrote {args.output}")
    return 0


def _print_evaluation(result: dict) -> None:
    """``metajax evaluate``'s table: what was scored, then one line per figure."""
    config = result["config"]
    where = f"{result['family']} run in {result['workdir']}, checkpoint at step {result['checkpoint_step']}"
    if result["run"] is not None:
        where += f", run {result['run']}"
    print(where)
    if result["changed"]:
        print("scored with " + ", ".join(f"--{flag(name)} {value}" for name, value in result["changed"].items()))
    rows: list[tuple[str, str]] = []
    if result["family"] == "meta-learning":
        classification = "test_accuracy" in result
        headline, scale, unit = ("test_accuracy", 100, " %") if classification else ("test_mse", 1, "")
        digits = 2 if classification else 4
        tasks = f"{config['ways']}-way " if classification else ""
        if "runs" in result:
            spread = result[f"{headline}_std_over_runs"]
            rows.append((f"{headline.replace('_', ' ')}, mean of {len(result['runs'])} runs (std)",
                         f"{scale * result[headline]:.{digits}f} +- {scale * spread:.{digits}f}{unit}"))  # fmt: skip
        elif classification:
            modes = ("transductive", "non_transductive")
            by_shots = result.get("test_accuracy_by_shots") or {
                str(config["shots"]): {mode: result[f"test_accuracy_{mode}"] for mode in modes}
                | {f"{mode}_ci95": result[f"test_accuracy_{mode}_ci95"] for mode in modes}
            }
            for shots, scores in by_shots.items():
                for mode in modes if config["transductive"] else modes[::-1]:
                    rows.append((f"test accuracy {tasks}{shots}-shot, {mode.replace('_', '-')}",
                                 f"{100 * scores[mode]:.2f} +- {100 * scores[f'{mode}_ci95']:.2f} %"))  # fmt: skip
        else:
            by_shots = result.get("test_mse_by_shots") or {
                str(config["shots"]): {"mse": result["test_mse"], "mse_ci95": result["test_mse_ci95"]}
            }
            for shots, scores in by_shots.items():
                rows.append((f"test MSE {shots}-shot", f"{scores['mse']:.4f} +- {scores['mse_ci95']:.4f}"))
        rows.append(("test tasks", str(config["eval_tasks"])))
    elif result["family"] == "multi-task":
        for figures, words in (("tasks", "best validation epoch"), ("final_epoch_tasks", "last epoch")):
            for task, scores in result.get(figures, {}).items():
                metric = "auc" if "auc" in scores else "mse"
                rows.append((f"test {metric}, {task} ({words})", f"{scores[metric]:.4f}"))
        if "runs" in result:
            rows.append(("runs (figures: their mean)", str(len(result["runs"]))))
    else:
        for experience, accuracy in enumerate(result["final_accuracy"]):
            rows.append((f"test accuracy, experience {experience}", f"{100 * accuracy:.2f} %"))
        average = result["final_average_accuracy"]
        rows.append(("average accuracy", f"{100 * average['mean']:.2f} +- {100 * average['std']:.2f} %"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _start_distributed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Joins a multi-host run (``jax.distributed``) before any JAX computation, if asked to."""
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if not any(given):
        return
    if not all(given):
        parser.error("--coordinator, --num-processes and --process-id go together")
    if not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be between 0 and {args.num_processes - 1}, got {args.process_id}")
    import jax

    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)


def _unusable_workdir(workdir: str) -> str | None:
    """Why ``--workdir`` cannot hold a run (it is a file, cannot be created, is not writable), or None."""
    path = Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"--workdir {workdir} is a file, not a folder"
    except OSError as error:
        return f"--workdir {workdir} cannot be created: {error.strerror}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"--workdir {workdir} is not writable"
    return None


def _version_line() -> str:
    """metajax's version and those of the parts its results depend on, for bug reports and run records."""
    from importlib.metadata import PackageNotFoundError, version

    from metajax import __version__

    parts = [f"metajax {__version__}"]
    for package in ("jax", "jaxlib", "flax", "optax"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


def _print_listing(as_json: bool) -> None:
    """``metajax list``: every registered entry by family and kind, with its description."""
    families = listing()
    if as_json:
        print(json.dumps(families, indent=2))
        return
    for family, kinds in families.items():
        print(f"{family}:")
        for kind, rows in kinds.items():
            print(f"  {_plural(kind)}:")
            width = max((len(row["name"]) for row in rows), default=0)
            for row in rows:
                aliases = f" (also: {', '.join(row['aliases'])})" if row.get("aliases") else ""
                print(f"    {row['name']:<{width}}  {row['description']}{aliases}")


def _plugins_from(argv: Sequence[str]) -> list[str]:
    """The ``--plugin`` modules of a command line, read before the full parser is built (their
    registrations add choices and flags to it)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--plugin", action="append", default=[])
    known, _ = early.parse_known_args(argv)
    return known.plugin


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``metajax`` command on ``argv`` (default: ``sys.argv[1:]``) and returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        load_plugins(_plugins_from(argv))
    except ValueError as error:
        print(f"metajax: error: {error}", file=sys.stderr)
        return 2
    parser = _OneLineErrorParser(
        prog="metajax", description="Meta-learning, multi-task and continual learning in pure JAX."
    )
    parser.add_argument("--version", action="version", version=_version_line())
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module of your own first: the strategies, models and benchmarks it registers become "
        "choices of the command (installed packages' metajax.plugins entry points are imported always)",
    )
    distributed = parser.add_argument_group(
        "several hosts", "run one process per host, each with the same command and its own --process-id"
    )
    distributed.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, for jax.distributed")
    distributed.add_argument("--num-processes", type=positive_int, help="processes in the run (with --coordinator)")
    distributed.add_argument("--process-id", type=int, help="this process's index, 0 to num-processes - 1")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrorParser)
    groups_of: dict[str, dict[str, set[str]]] = {}  # Each command's option groups.
    try:
        for learner in META_LEARNERS:
            groups_of[learner.name] = _add_meta_parser(subparsers, learner)
            groups_of.update(dict.fromkeys(learner.aliases, groups_of[learner.name]))
        groups_of["multitask"] = _add_multitask_parser(subparsers)
        groups_of["continual"] = _add_continual_parser(subparsers)
    except ValueError as error:  # Two registered options under one flag.
        print(f"metajax: error: {error}", file=sys.stderr)
        return 2
    list_parser = subparsers.add_parser(
        "list", help="every registered algorithm, model and dataset, by family, with its description"
    )
    list_parser.add_argument("--json", action="store_true", help="as JSON")
    plot_parser = subparsers.add_parser(
        "plot", help="draw a run's learning curves (and accuracy matrix or gate weights) to PNG files"
    )
    plot_parser.add_argument("workdir", help="the --workdir of a metajax run")
    _add_evaluate_parser(subparsers)
    args = parser.parse_args(argv)
    _start_distributed(parser, args)
    if args.command == "list":
        _print_listing(args.json)
        return 0
    if args.command == "plot":
        from metajax.train.plots import plot_run

        try:
            written = plot_run(args.workdir)
        except ValueError as error:
            print(f"metajax plot: error: {error}", file=sys.stderr)
            return 2
        for path in written:
            print(f"wrote {path}")
        return 0
    if args.command == "evaluate":
        return _evaluate(args)

    unusable = _unusable_workdir(args.workdir)
    if unusable:  # Before any data is loaded or anything compiled.
        print(f"metajax {args.command}: error: {unusable}", file=sys.stderr)
        return 2
    options = vars(args).copy()
    for name in ("command", "workdir", "no_progress", "checkpoint_every", "debug_nans", "dry_run", "devices",
                 "coordinator", "num_processes", "process_id", "plugin"):  # fmt: skip
        options.pop(name)
    if "sweep" in options:  # [(name, values), ...] from repeated flags; none given: no sweep.
        sweeps = options.pop("sweep") or []
        if len({name for name, _ in sweeps}) != len(sweeps):
            parser.error("--sweep names one hyperparameter once")
        options["sweep"] = dict(sweeps)
    command = "multitask" if args.command == "mmoe" else args.command  # The alias runs the same.
    for group, names in groups_of[command].items():  # Each method's options go to it; the rest are the run's.
        options[group] = {name: options.pop(name) for name in names if name in options}
    if args.debug_nans:
        import jax

        jax.config.update("jax_debug_nans", True)
    families: dict[str, tuple[Any, Callable[..., dict], Callable[[dict], None]]] = {
        "multitask": (MultiTaskConfig, multitask_training.train_and_evaluate, _print_mmoe_table),
        "continual": (ContinualConfig, continual_training.train_and_evaluate, _print_continual_table),
    }
    if command in META_LEARNERS:
        options["algorithm"] = command
        families[command] = (MetaLearningConfig, meta_training.train_and_evaluate, _print_meta_table)
    config_class, runner, print_table = families[command]
    try:
        summary = runner(
            config_class(**options),
            args.workdir,
            show_progress=not args.no_progress,
            checkpoint_every=args.checkpoint_every,
            dry_run=args.dry_run,
            devices=args.devices,
        )
    except (ValueError, DataError, TrainingDiverged, FloatingPointError) as error:
        # FloatingPointError: what --debug-nans raises at the first NaN.
        message = " ".join(str(error).split())  # One line, whatever the error's own layout.
        print(f"metajax {args.command}: error: {message}", file=sys.stderr)
        return 2
    except RunInterrupted as stopped:  # SIGTERM or Ctrl-C during training, after a checkpoint.
        print(f"metajax {args.command}: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except OSError as error:  # A disk that fills up, a file that cannot be written: one line, naming it.
        print(f"metajax {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C twice, or outside training (loading data, scoring).
        print(
            f"metajax {args.command}: interrupted; rerunning the same command resumes from the last checkpoint saved",
            file=sys.stderr,
        )
        return 128 + signal.SIGINT
    if args.process_id:  # Process 0 of several prints the results; the others computed the same.
        return 0
    if args.dry_run:
        print(f"metajax {args.command}: arguments and data are valid; resolved config:")
        print(json.dumps(summary["config"], indent=2))
        return 0
    print_table(summary)
    print(f"wrote {args.workdir}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
