"""Configuration of a continual-learning run."""

from __future__ import annotations

import dataclasses

from metajax.continual.replay import BUFFER_UPDATES

CONTINUAL_BENCHMARKS = ("split-gaussian", "split-mnist", "permuted-mnist", "split-omniglot")
CONTINUAL_STRATEGIES = ("naive", "joint", "replay", "agem", "ewc", "online-ewc", "si", "lwf", "replay-ewc")
BUFFER_POLICIES = ("reservoir", "class-balanced")
CONTINUAL_OPTIMIZERS = ("adam", "sgd")
SCENARIOS_BY_BENCHMARK = {
    "split-gaussian": ("class-il", "task-il", "domain-il"),
    "split-mnist": ("class-il", "task-il", "domain-il"),
    "permuted-mnist": ("domain-il", "task-il"),
    "split-omniglot": ("class-il", "task-il", "domain-il"),
}


@dataclasses.dataclass(frozen=True)
class ContinualConfig:
    """Everything that defines a continual-learning run.

    ``scenario=None`` takes the benchmark's first (class-IL for split
    benchmarks, domain-IL for Permuted MNIST). The model is an MLP with
    ``hidden`` ReLU layers (2 x 400, as in van de Ven & Tolias and Avalanche's
    baselines). ``split-gaussian`` is generated data that needs no files: ten
    Gaussian classes in 64 dimensions, split like Split MNIST.
    ``split-omniglot`` takes ``experiences`` groups of 10 characters of
    Omniglot's evaluation set (``data_dir`` is then the Omniglot folder).
    Replay extends each training batch by ``replay_batch`` buffer examples
    (``None``: as many as the batch has).
    The optimizer (Adam, or plain SGD as in ContinualAI's baselines) keeps its
    state across experiences unless ``reset_optimizer``.
    """

    benchmark: str = "split-gaussian"
    scenario: str | None = None
    strategy: str = "naive"
    data_dir: str | None = None
    experiences: int = 10
    buffer_size: int = 1000
    buffer_policy: str = "reservoir"
    buffer_update: str = "experience"
    replay_batch: int | None = None
    ewc_lambda: float = 100.0
    ewc_decay: float = 1.0
    fisher_samples: int = 1024
    si_c: float = 1.0
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0
    hidden: tuple[int, ...] = (400, 400)
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    reset_optimizer: bool = False
    epochs: int = 1
    batch_size: int = 128
    seeds: int = 1
    seed: int = 0

    def resolved(self) -> ContinualConfig:
        if self.benchmark not in CONTINUAL_BENCHMARKS:
            raise ValueError(f"benchmark must be one of {', '.join(CONTINUAL_BENCHMARKS)}, got {self.benchmark!r}")
        config = (
            self
            if self.scenario is not None
            else dataclasses.replace(self, scenario=SCENARIOS_BY_BENCHMARK[self.benchmark][0])
        )
        config = dataclasses.replace(config, hidden=tuple(config.hidden))
        config.check()
        return config

    def check(self) -> None:
        allowed = SCENARIOS_BY_BENCHMARK[self.benchmark]
        if self.scenario not in allowed:
            raise ValueError(
                f"benchmark {self.benchmark} cannot run scenario {self.scenario!r}; it supports {', '.join(allowed)}"
            )
        if self.strategy not in CONTINUAL_STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(CONTINUAL_STRATEGIES)}, got {self.strategy!r}")
        if self.optimizer not in CONTINUAL_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(CONTINUAL_OPTIMIZERS)}, got {self.optimizer!r}")
        if self.buffer_update not in BUFFER_UPDATES:
            raise ValueError(f"buffer-update must be one of {', '.join(BUFFER_UPDATES)}, got {self.buffer_update!r}")
        if self.buffer_policy not in BUFFER_POLICIES:
            raise ValueError(f"buffer-policy must be one of {', '.join(BUFFER_POLICIES)}, got {self.buffer_policy!r}")
        counts = ("buffer_size", "fisher_samples", "epochs", "batch_size", "seeds", "experiences")
        for name in counts + (("replay_batch",) if self.replay_batch is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.hidden or any(not isinstance(w, int) or w < 1 for w in self.hidden):
            raise ValueError(f"hidden must be positive layer widths, got {self.hidden!r}")
        for name in ("ewc_lambda", "si_c", "lwf_alpha"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.lwf_temperature > 0 or not 0 <= self.ewc_decay <= 1:
            raise ValueError(
                "learning-rate and lwf-temperature must be > 0 and ewc-decay in [0, 1], got "
                f"{self.learning_rate}, {self.lwf_temperature}, {self.ewc_decay}"
            )
