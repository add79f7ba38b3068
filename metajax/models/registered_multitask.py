"""The multi-task models the command can build, in ``metajax.registry.MULTITASK_MODELS``.

An entry's ``build(options, *, num_tasks) -> nn.Module`` maps ``[batch, features]``
to a ``MultiTaskOutput`` (one prediction per task, and gate weights for the
mixtures); the modules declare their shared parameters
(``metajax.models.interfaces.SharedParameters``). The option defaults are
keras-mmoe's synthetic-data settings (drawbridge/keras-mmoe): experts of one
ReLU layer of 16 units, 8 experts, towers of 8 ReLU units; a dataset's entry
may preset other sizes (census: experts of 4 units).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from metajax.models.mixture_of_experts import MMoE, OMoE
from metajax.models.progressive_layered_extraction import CGC, PLE
from metajax.models.shared_bottom import SharedBottom
from metajax.options import option
from metajax.registry import MULTITASK_MODELS


@dataclasses.dataclass(frozen=True)
class TowerOptions:
    """Every multi-task model ends in one tower per task."""

    tower_units: int = option(8, "units of each task tower's hidden ReLU layers", minimum=1)
    tower_layers: int = option(1, "hidden layers per task tower", minimum=1)

    def towers(self) -> dict[str, Any]:
        return {"tower_hidden": (self.tower_units,) * self.tower_layers}


@dataclasses.dataclass(frozen=True)
class ExpertOptions(TowerOptions):
    """The mixtures: experts, a gate per task (one for all in OMoE), towers."""

    experts: int = option(8, "experts (the shared experts of cgc / ple)", minimum=1)
    expert_units: int = option(16, "units of each expert's ReLU layers", minimum=1)
    expert_layers: int = option(1, "ReLU layers per expert", minimum=1)

    def expert_widths(self) -> tuple[int, ...]:
        return (self.expert_units,) * self.expert_layers


@dataclasses.dataclass(frozen=True)
class CGCOptions(ExpertOptions):
    task_experts: int = option(2, "experts owned by each task, beside the shared ones (cgc / ple)", minimum=1)


@dataclasses.dataclass(frozen=True)
class PLEOptions(CGCOptions):
    levels: int = option(2, "extraction levels of ple", minimum=1)


@dataclasses.dataclass(frozen=True)
class SharedBottomOptions(TowerOptions):
    bottom_units: int = option(
        128, "units of the shared bottom's ReLU layers (8 x 16: about the parameters of the mixtures' experts)",
        minimum=1,
    )  # fmt: skip
    bottom_layers: int = option(1, "ReLU layers of the shared bottom", minimum=1)


@MULTITASK_MODELS.register(
    "mmoe",
    hyperparams=ExpertOptions,
    description="Multi-gate Mixture-of-Experts (Ma et al. 2018): shared experts, one softmax gate per task.",
)
def build_mmoe(options: ExpertOptions, *, num_tasks: int) -> nn.Module:
    return MMoE(
        num_tasks=num_tasks, num_experts=options.experts, expert_widths=options.expert_widths(), **options.towers()
    )


@MULTITASK_MODELS.register(
    "omoe",
    hyperparams=ExpertOptions,
    description="One-gate Mixture-of-Experts (the MMoE paper's baseline): one gate shared by every task.",
)
def build_omoe(options: ExpertOptions, *, num_tasks: int) -> nn.Module:
    return OMoE(
        num_tasks=num_tasks, num_experts=options.experts, expert_widths=options.expert_widths(), **options.towers()
    )


@MULTITASK_MODELS.register(
    "shared-bottom",
    hyperparams=SharedBottomOptions,
    description="Shared-bottom (Caruana 1997): one shared ReLU bottom under a tower per task.",
)
def build_shared_bottom(options: SharedBottomOptions, *, num_tasks: int) -> nn.Module:
    return SharedBottom(num_tasks, bottom_widths=(options.bottom_units,) * options.bottom_layers, **options.towers())


@MULTITASK_MODELS.register(
    "cgc",
    hyperparams=CGCOptions,
    description="Customized Gate Control (Tang et al. 2020): PLE's one level of task-owned and shared experts.",
)
def build_cgc(options: CGCOptions, *, num_tasks: int) -> nn.Module:
    return CGC(
        num_tasks=num_tasks,
        task_experts=options.task_experts,
        shared_experts=options.experts,
        expert_widths=options.expert_widths(),
        **options.towers(),
    )


@MULTITASK_MODELS.register(
    "ple",
    hyperparams=PLEOptions,
    description="Progressive Layered Extraction (Tang et al., RecSys 2020): stacked levels of CGC.",
)
def build_ple(options: PLEOptions, *, num_tasks: int) -> nn.Module:
    return PLE(
        num_tasks=num_tasks,
        task_experts=options.task_experts,
        shared_experts=options.experts,
        expert_widths=options.expert_widths(),
        num_levels=options.levels,
        **options.towers(),
    )
