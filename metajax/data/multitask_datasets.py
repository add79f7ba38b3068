"""The multi-task datasets the command can train on, in ``metajax.registry.MULTITASK_DATASETS``.

An entry's ``build(options, *, data_dir, seed) -> MultiTaskDataset``; its traits, read before any data
is loaded:

* ``defaults``: the run's ``learning_rate``, ``epochs`` and ``batch_size`` when the user sets none;
* ``model_presets``: model options for this data (census: experts of 4 units), applied to the
  chosen model where it reads them and the user did not set them;
* ``argument``: the option that ``--dataset NAME:VALUE`` sets (``npz:PATH``).
"""

from __future__ import annotations

import dataclasses

import jax

from metajax.data.census_income import TASKS as CENSUS_TASKS
from metajax.data.census_income import load_census_income
from metajax.data.correlated_regression import correlated_regression_dataset
from metajax.data.multitask import MultiTaskDataset
from metajax.data.user_data import given_path, read_multitask_npz
from metajax.options import option
from metajax.registry import MULTITASK_DATASETS


@dataclasses.dataclass(frozen=True)
class SyntheticOptions:
    correlation: float = option(0.5, "correlation p between the two synthetic tasks' linear parts, in [-1, 1]")

    def __post_init__(self):
        if not -1.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [-1, 1], got {self.correlation}")


@MULTITASK_DATASETS.register(
    "synthetic",
    hyperparams=SyntheticOptions,
    description="The MMoE paper's pair of regression tasks with a set correlation (generated, needs no files).",
    # keras-mmoe's synthetic demo uses Adam 1e-4 for 100 epochs of batch 32; the default here is a short
    # demo (benchmarks/mmoe_synthetic.py runs the full schedule).
    defaults={"learning_rate": 1e-3, "epochs": 10, "batch_size": 32},
    model_presets={},
)
def build_synthetic(options: SyntheticOptions, *, data_dir: str | None, seed: int) -> MultiTaskDataset:
    """The ``synthetic`` dataset: the MMoE paper's two regression tasks of ``options.correlation``."""
    # The data seed is kept apart from the training seed's uses.
    return correlated_regression_dataset(jax.random.key(seed + 1_000_003), correlation=options.correlation)


@dataclasses.dataclass(frozen=True)
class CensusOptions:
    census_tasks: tuple[str, ...] = option(
        ("income", "never_married"), f"comma-separated census tasks from {', '.join(CENSUS_TASKS)}"
    )

    def __post_init__(self):
        tasks = tuple(self.census_tasks)
        if not tasks or any(task not in CENSUS_TASKS for task in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"census-tasks must be distinct names from {', '.join(CENSUS_TASKS)}, got {list(tasks)}")


@MULTITASK_DATASETS.register(
    "census",
    hyperparams=CensusOptions,
    description="UCI Census-Income (KDD), binary tasks as in the MMoE paper (from --data-dir's census-income.test.gz).",
    defaults={"learning_rate": 1e-3, "epochs": 10, "batch_size": 256},
    # keras-mmoe's census demo: experts of 4 units; the shared bottom as wide as 8 of them.
    model_presets={"expert_units": 4, "bottom_units": 32},
)
def build_census(options: CensusOptions, *, data_dir: str | None, seed: int) -> MultiTaskDataset:
    """The ``census`` dataset: census-income's binary tasks ``options.census_tasks`` from ``data_dir``'s files."""
    if data_dir is None:
        raise ValueError(
            "census needs --data-dir: a folder with census-income.test.gz (TFDS has no census-income "
            "dataset; see ../shared/data/README.md)"
        )
    return load_census_income(data_dir, tasks=options.census_tasks, seed=seed)


@dataclasses.dataclass(frozen=True)
class TableOptions:
    path: str | None = option(
        None, "the .npz of features x [examples, features] and targets y [examples, tasks] (npz:PATH)"
    )


@MULTITASK_DATASETS.register(
    "npz",
    hyperparams=TableOptions,
    description="Your own table: an .npz of features x and one target column per task y (--dataset npz:PATH).",
    defaults={"learning_rate": 1e-3, "epochs": 10, "batch_size": 32},
    model_presets={},
    argument="path",
)
def build_npz(options: TableOptions, *, data_dir: str | None, seed: int) -> MultiTaskDataset:
    """The ``npz`` dataset: the multi-task table in the ``.npz`` at ``options.path``."""
    return read_multitask_npz(given_path("npz", options.path), seed=seed)
