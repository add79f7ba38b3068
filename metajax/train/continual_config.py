"""Configuration of a continual-learning run: the benchmark, the strategy and the model by their
registered names, each with its own options, and the training loop's settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from metajax.options import checked_fields, option
from metajax.registry import CONTINUAL_BENCHMARKS, CONTINUAL_STRATEGIES, MODELS
from metajax.train.sweeps import check_sweep, sweepable_fields

CONTINUAL_OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class ContinualConfig:
    """Everything that defines a continual-learning run.

    ``benchmark``, ``strategy`` and ``model`` name entries of
    ``metajax.registry``'s ``CONTINUAL_BENCHMARKS``, ``CONTINUAL_STRATEGIES``
    and ``MODELS`` (``folder:PATH`` and ``npz:PATH``: your own data);
    ``benchmark_options``, ``strategy_options`` and ``model_options`` set fields of
    the entry's own hyperparameter dataclass (the rest keep its defaults, the
    paper's preset). ``scenario=None`` takes the benchmark's first (class-IL
    for split benchmarks, domain-IL for Permuted MNIST). The optimizer (Adam,
    or plain SGD as in ContinualAI's baselines) keeps its state across
    experiences unless ``reset_optimizer``. ``sweep`` maps real-valued
    hyperparameters (``learning_rate`` or the strategy's own) to values: every
    combination trains ``seeds`` runs, all vmapped together
    (``metajax.train.sweeps``).
    """

    # Version 2: options per strategy and model, and states of the strategies' own types; workdirs of
    # version 1 cannot be resumed (their checkpoints hold other pytrees).
    RUN_FORMAT: ClassVar[int] = 2

    benchmark: str = option(
        "split-gaussian", "the stream of experiences (metajax list shows them; folder:PATH or npz:PATH: your own data)"
    )
    benchmark_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    scenario: str | None = option(None, "task-il, domain-il or class-il (default: the benchmark's usual one)")
    strategy: str = option("naive", "the continual-learning strategy (metajax list shows them)")
    strategy_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: str = option("mlp", "the network (metajax list shows them)")
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str | None = option(
        None,
        "folder with mnist.npz (Omniglot's npz files for split-omniglot, cifar10.npz for split-cifar10, "
        "cifar-100-python for split-cifar100, tiny-imagenet-200 for split-tinyimagenet); without it the data "
        "comes from TensorFlow Datasets",
    )
    experiences: int = option(
        10, "experiences of permuted-mnist / split-omniglot / split-cifar100 / split-tinyimagenet", minimum=1
    )
    optimizer: str = option("adam", "plain SGD as in ContinualAI's baselines, or Adam", choices=CONTINUAL_OPTIMIZERS)
    learning_rate: float = option(1e-3, "the optimizer's learning rate", above=0)
    reset_optimizer: bool = option(
        False, "start every experience from a fresh optimizer state (by default it carries over, as in Avalanche 0.6)"
    )
    epochs: int = option(1, "epochs per experience", minimum=1)
    batch_size: int = option(128, "examples per step", minimum=1)
    seeds: int = option(1, "independent runs, trained together (vmapped)", minimum=1)
    seed: int = option(0, "the first run's seed")
    sweep: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    def resolved(self) -> ContinualConfig:
        """This config with the scenario and every option filled in, checked (a bad value raises a one-line
        ``ValueError``)."""
        config = checked_fields(self)
        benchmark, benchmark_options = CONTINUAL_BENCHMARKS.resolve(config.benchmark, config.benchmark_options)
        scenarios = benchmark.trait("scenarios")
        scenario = scenarios[0] if config.scenario is None else config.scenario
        if scenario not in scenarios:
            raise ValueError(
                f"benchmark {benchmark.name} cannot run scenario {scenario!r}; it supports {', '.join(scenarios)}"
            )
        strategy, strategy_options = CONTINUAL_STRATEGIES.resolve(config.strategy, config.strategy_options)
        model, model_options = MODELS.resolve(config.model, config.model_options)
        sweepable = sweepable_fields(config, strategy.options(strategy_options))
        return dataclasses.replace(
            config,
            benchmark=benchmark.name,
            benchmark_options=benchmark_options,
            scenario=scenario,
            strategy=strategy.name,
            strategy_options=strategy_options,
            model=model.name,
            model_options=model_options,
            sweep=check_sweep(config.sweep, sweepable),
        )
