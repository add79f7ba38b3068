"""Configuration of a multi-task run: the dataset, the model and the weighting by their registered names,
each with its own options, and the run's settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from metajax.options import checked_fields, option, options_read_by
from metajax.registry import MULTITASK_DATASETS, MULTITASK_MODELS, MULTITASK_WEIGHTINGS
from metajax.train.sweeps import check_sweep, sweepable_fields

# The run's settings: set by the user, else by the dataset's preset.
PRESET_FIELDS = ("learning_rate", "epochs", "batch_size")


@dataclasses.dataclass(frozen=True)
class MultiTaskConfig:
    """Everything that defines a multi-task run; ``None`` fields take the dataset's preset.

    ``dataset``, ``model`` and ``weighting`` name entries of ``metajax.registry``'s
    ``MULTITASK_DATASETS``, ``MULTITASK_MODELS`` and ``MULTITASK_WEIGHTINGS``
    (``metajax list``); ``dataset_options``, ``model_options`` and
    ``weighting_options`` set fields of the entry's own hyperparameter
    dataclass. Model options left unset take the dataset's preset where it has
    one (census: experts of 4 units, as keras-mmoe), else the model's defaults
    (keras-mmoe's synthetic settings). The optimizer is Adam. ``seeds`` runs
    (and, with a ``sweep`` of ``learning_rate`` or the weighting's real-valued
    options, that many per point) train on the data of ``data_seed`` as one vmapped
    program, each keeping its own best epoch (``metajax.train.sweeps``).
    """

    # Version 3: datasets and models by registered name with their own options (version 2: weightings).
    RUN_FORMAT: ClassVar[int] = 3

    dataset: str = option(
        "synthetic", "the tasks (default: the MMoE paper's synthetic pair, which needs no files; npz:PATH: your own)"
    )
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str | None = option(None, "folder with census-income.test.gz (and census-income.data.gz if you have it)")
    model: str = option("mmoe", "the multi-task model (metajax list shows them)")
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weighting: str = option(
        "equal", "how the task losses, or the per-task gradients, combine (metajax list describes them)"
    )
    weighting_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    learning_rate: float | None = option(None, "Adam's learning rate (default: the dataset's preset)", above=0)
    epochs: int | None = option(None, "epochs of training (default: the dataset's preset)", minimum=1)
    batch_size: int | None = option(None, "examples per step (default: the dataset's preset)", minimum=1)
    seed: int = option(0, "the run's seed (with --seeds N, runs take seeds seed .. seed + N - 1)")
    data_seed: int | None = option(None, "seed of the synthetic data and of the census split (default: --seed)")
    seeds: int = option(1, "independent runs on the same data, trained together (vmapped)", minimum=1)
    sweep: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    def resolved(self) -> MultiTaskConfig:
        """This config with every ``None`` replaced by the dataset's preset and every option filled in,
        checked (a bad value raises a one-line ``ValueError``)."""
        config = checked_fields(self)
        dataset, dataset_options = MULTITASK_DATASETS.resolve(config.dataset, config.dataset_options)
        model_entry = MULTITASK_MODELS.get(config.model)
        presets = options_read_by(MULTITASK_MODELS, model_entry.name, dataset.trait("model_presets", {}))
        model, model_options = MULTITASK_MODELS.resolve(model_entry.name, {**presets, **config.model_options})
        weighting, weighting_options = MULTITASK_WEIGHTINGS.resolve(config.weighting, config.weighting_options)
        defaults = dataset.trait("defaults", {})
        filled = {name: getattr(config, name) if getattr(config, name) is not None else defaults[name]
                  for name in PRESET_FIELDS}  # fmt: skip
        filled["data_seed"] = config.seed if config.data_seed is None else config.data_seed
        config = checked_fields(dataclasses.replace(config, **filled))  # The preset's floats are floats.
        sweepable = sweepable_fields(config, weighting.options(weighting_options))
        return dataclasses.replace(
            config,
            sweep=check_sweep(config.sweep, sweepable),
            dataset=dataset.name,
            dataset_options=dataset_options,
            model=model.name,
            model_options=model_options,
            weighting=weighting.name,
            weighting_options=weighting_options,
        )
