"""Configuration of a multi-task run, with per-dataset presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from metajax.data.census_income import TASKS as CENSUS_TASKS
from metajax.registry import MULTITASK_WEIGHTINGS

MULTITASK_DATASETS = ("synthetic", "census")
MULTITASK_MODELS = ("mmoe", "omoe", "shared-bottom", "cgc", "ple")


@dataclasses.dataclass(frozen=True)
class MultiTaskConfig:
    """Everything that defines a multi-task run; ``None`` fields take the dataset's preset.

    Presets follow keras-mmoe (drawbridge/keras-mmoe): experts of one ReLU
    layer (16 units on the synthetic data, 4 on census), 8 experts, towers of
    8 ReLU units, Adam. The shared-bottom's bottom defaults to
    ``experts * expert_units`` units, about the same number of parameters as
    the mixtures. CGC/PLE give each task ``task_experts`` experts beside
    ``experts`` shared ones. Experts (and the shared bottom) have
    ``expert_layers`` ReLU layers, towers ``tower_layers`` hidden ones.
    ``weighting`` names an entry of ``metajax.registry.MULTITASK_WEIGHTINGS``
    (``metajax list``), ``weighting_options`` fields of its own options.
    """

    # Version 2: weightings by registered name with their own options and states (PCGrad among them).
    RUN_FORMAT: ClassVar[int] = 2

    dataset: str = "synthetic"
    data_dir: str | None = None
    model: str = "mmoe"
    correlation: float = 0.5
    experts: int = 8
    expert_units: int | None = None
    expert_layers: int = 1
    tower_units: int = 8
    tower_layers: int = 1
    bottom_units: int | None = None
    task_experts: int = 2
    levels: int = 2
    census_tasks: tuple[str, ...] = ("income", "never_married")
    weighting: str = "equal"
    weighting_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0

    def resolved(self) -> MultiTaskConfig:
        """This config with every ``None`` replaced by the dataset's preset, checked."""
        if self.dataset not in MULTITASK_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(MULTITASK_DATASETS)}, got {self.dataset!r}")
        filled = dataclasses.asdict(self)
        for name, value in PRESETS[self.dataset].items():
            if filled[name] is None:
                filled[name] = value
        if filled["bottom_units"] is None:
            filled["bottom_units"] = filled["experts"] * filled["expert_units"]
        filled["census_tasks"] = tuple(filled["census_tasks"])
        weighting, filled["weighting_options"] = MULTITASK_WEIGHTINGS.resolve(self.weighting, self.weighting_options)
        filled["weighting"] = weighting.name
        config = MultiTaskConfig(**filled)
        config.check()
        return config

    def check(self) -> None:
        if self.model not in MULTITASK_MODELS:
            raise ValueError(f"model must be one of {', '.join(MULTITASK_MODELS)}, got {self.model!r}")
        sizes = ("experts", "expert_units", "expert_layers", "tower_units", "tower_layers", "bottom_units")
        for name in (*sizes, "task_experts", "levels", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch-size must be a positive integer, got {self.batch_size!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning-rate must be > 0, got {self.learning_rate}")
        if not -1.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [-1, 1], got {self.correlation}")
        unknown = [task for task in self.census_tasks if task not in CENSUS_TASKS]
        if unknown or len(set(self.census_tasks)) != len(self.census_tasks) or not self.census_tasks:
            raise ValueError(
                f"census-tasks must be distinct names from {', '.join(CENSUS_TASKS)}, got {list(self.census_tasks)}"
            )
        if self.dataset == "census" and self.data_dir is None:
            raise ValueError(
                "census needs --data-dir: a folder with census-income.test.gz (TFDS has no census-income "
                "dataset; see ../shared/data/README.md)"
            )

    @property
    def num_tasks(self) -> int:
        return 2 if self.dataset == "synthetic" else len(self.census_tasks)


PRESETS = {
    # keras-mmoe's synthetic demo uses Adam 1e-4 for 100 epochs of batch 32;
    # the default here is a short demo (the benchmark runs the full schedule).
    "synthetic": {"expert_units": 16, "learning_rate": 1e-3, "epochs": 10, "batch_size": 32},
    "census": {"expert_units": 4, "learning_rate": 1e-3, "epochs": 10, "batch_size": 256},
}
