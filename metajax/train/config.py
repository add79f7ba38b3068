"""Configuration of a few-shot meta-learning run: the learner, the dataset and the model by their
registered names, each with its own options, and the run's sizes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from metajax.options import checked_fields, option
from metajax.registry import FEW_SHOT_DATASETS, META_LEARNERS, MODELS
from metajax.train.sweeps import check_sweep, sweepable_fields

# The run's sizes: set by the user, else by the learner's preset for the dataset, else the dataset's default.
SIZES = ("ways", "shots", "train_shots", "query_shots", "meta_batch", "meta_iters", "eval_tasks", "eval_chunk",
         "log_every")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class MetaLearningConfig:
    """Everything that defines a few-shot meta-learning run; ``None`` fields take the preset.

    ``algorithm``, ``dataset`` and ``model`` name entries of ``metajax.registry``'s
    ``META_LEARNERS``, ``FEW_SHOT_DATASETS`` and ``MODELS``; ``algorithm_options``,
    ``dataset_options`` and ``model_options`` set fields of the entry's own
    hyperparameter dataclass. What is left unset takes the learner's preset
    for the dataset (its entry's ``presets``: the paper's settings), then the
    dataset's defaults (MAML's sizes), then the dataclasses' defaults.
    ``seeds`` runs (and, with a ``sweep`` of the learner's real-valued options,
    that many per point) train as one vmapped program (``metajax.train.sweeps``).
    """

    # Version 2: options per learner, dataset and model, and learners' own state types; workdirs of
    # version 1 cannot be resumed (their checkpoints hold other pytrees).
    RUN_FORMAT: ClassVar[int] = 2

    algorithm: str = option("reptile", "the meta-learner (metajax list shows them)")
    algorithm_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str | None = option(
        None,
        "the tasks: a registered dataset, or folder:PATH / npz:PATH for your own (default: sinusoid, which needs no "
        "files; omniglot for learners that need classes)",
    )
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: str | None = option(
        None, "the network (default: the dataset's: conv4 for omniglot, a 40 x 40 MLP for sinusoid)"
    )
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str | None = option(
        None,
        "folder with the dataset's files (Omniglot's images_background.npz and images_evaluation.npz); without "
        "it Omniglot comes from TensorFlow Datasets (needs a network the first time)",
    )
    ways: int | None = option(None, "classes per task (N)", minimum=1)
    shots: int | None = option(None, "support examples per class (K)", minimum=1)
    train_shots: int | None = option(
        None, "support examples per class in meta-training tasks (default: --shots; Reptile on omniglot: 10)",
        minimum=1,
    )  # fmt: skip
    query_shots: int | None = option(None, "query examples per class", minimum=1)
    meta_batch: int | None = option(None, "tasks per meta-step", minimum=1)
    meta_iters: int | None = option(None, "meta-steps of training", minimum=1)
    eval_tasks: int | None = option(None, "test tasks for the accuracy and its 95% CI", minimum=1)
    eval_chunk: int | None = option(None, "test tasks per compiled, vmapped call", minimum=1)
    also_eval_shots: tuple[int, ...] = option(
        (),
        "also score the trained weights at these support shots (e.g. 5 for a 1-shot run); rerun a finished "
        "workdir with it to score it again",
    )
    transductive: bool = option(False, "share batch-norm statistics across the query set")
    seed: int = option(0, "the run's seed (with --seeds N, runs take seeds seed .. seed + N - 1)")
    seeds: int = option(1, "independent runs, trained together (vmapped)", minimum=1)
    sweep: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    log_every: int | None = option(None, "meta-steps per logged (and compiled) chunk", minimum=1)

    def resolved(self) -> MetaLearningConfig:
        """This config with every ``None`` replaced by the preset and every option filled in, checked
        (a bad value raises a one-line ``ValueError``)."""
        config = checked_fields(self)
        learner = META_LEARNERS.get(config.algorithm)
        needs_classes = bool(learner.trait("needs_classes"))
        with_classes = [entry.name for entry in FEW_SHOT_DATASETS if entry.trait("classes")]
        if config.dataset is None:  # The first registered dataset this learner can run.
            config = dataclasses.replace(
                config, dataset=next(e.name for e in FEW_SHOT_DATASETS if e.trait("classes") or not needs_classes)
            )
        dataset = FEW_SHOT_DATASETS.get(config.dataset)
        if needs_classes and not dataset.trait("classes"):
            raise ValueError(
                f"{learner.name} is a classifier, and {dataset.name} regression has no classes "
                f"(use --dataset {' or '.join(with_classes)})"
            )
        _, dataset_options = FEW_SHOT_DATASETS.resolve(config.dataset, config.dataset_options)  # Maybe NAME:PATH.

        preset = dict(learner.trait("presets", {}).get(dataset.name, {}))
        sizes = {**dataset.trait("defaults"), **{name: preset.pop(name) for name in SIZES if name in preset}}
        filled = {
            name: getattr(config, name) if getattr(config, name) is not None else sizes.get(name) for name in SIZES
        }
        if filled["train_shots"] is None:
            filled["train_shots"] = filled["shots"]
        _, algorithm_options = META_LEARNERS.resolve(learner.name, {**preset, **config.algorithm_options})

        default_model, default_model_options = dataset.trait("model")
        model_name = config.model or default_model
        model_defaults = default_model_options if model_name == default_model else {}
        model, model_options = MODELS.resolve(model_name, {**model_defaults, **config.model_options})

        sweepable = sweepable_fields(config, learner.options(algorithm_options))
        config = dataclasses.replace(
            config,
            **filled,
            sweep=check_sweep(config.sweep, sweepable),
            algorithm=learner.name,
            algorithm_options=algorithm_options,
            dataset=dataset.name,
            dataset_options=dataset_options,
            model=model.name,
            model_options=model_options,
        )
        config.check()
        return config

    def check(self) -> None:
        """Checks of a resolved config that cross fields."""
        dataset = FEW_SHOT_DATASETS.get(self.dataset)
        if self.eval_tasks < 2:
            raise ValueError(f"eval-tasks must be at least 2 for a confidence interval, got {self.eval_tasks}")
        if not dataset.trait("classes") and self.ways != 1:
            raise ValueError(f"{self.dataset} regression has no classes: ways must be 1, got {self.ways}")
        if dataset.trait("classes") and self.ways < 2:
            raise ValueError(f"ways must be at least 2 for classification, got {self.ways}")
        per_class = dataset.trait("examples_per_class")
        if per_class is None:
            return
        trains_on_queries = META_LEARNERS.get(self.algorithm).trait("trains_on_queries", True)
        checks = [
            ("shots + query-shots", self.shots + self.query_shots),
            ("train-shots" + (" + query-shots" if trains_on_queries else ""),
             self.train_shots + (self.query_shots if trains_on_queries else 0)),
        ]  # fmt: skip
        checks += [("also-eval-shots + query-shots", shots + self.query_shots) for shots in self.also_eval_shots]
        for name, needed in checks:
            if needed > per_class:
                raise ValueError(f"{name} = {needed}, but {self.dataset} has only {per_class} examples per class")
