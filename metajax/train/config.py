"""Configuration of a few-shot meta-learning run, with the paper's presets."""

from __future__ import annotations

import dataclasses
from typing import Literal

DATASETS = ("sinusoid", "omniglot")
INNER_OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class ReptileConfig:
    """Everything that defines a Reptile run; ``None`` fields take the dataset preset.

    The Omniglot preset is the Reptile paper's (arXiv 1803.02999, appendix, and
    its ``run_omniglot.py`` commands): Adam with beta1 = 0 and learning rate
    1e-3, 5 inner steps of 10 examples, meta-batch 5, meta step size 1.0
    annealed to 0 over 100k iterations, 50 evaluation steps of 5 examples.
    """

    dataset: Literal["sinusoid", "omniglot"] = "sinusoid"
    data_dir: str | None = None
    ways: int | None = None
    shots: int | None = None
    train_shots: int | None = None
    query_shots: int | None = None
    meta_batch: int | None = None
    inner_steps: int | None = None
    inner_batch: int | None = None
    eval_inner_steps: int | None = None
    eval_inner_batch: int | None = None
    inner_optimizer: Literal["adam", "sgd"] | None = None
    inner_lr: float | None = None
    meta_step_size: float | None = None
    meta_step_size_final: float | None = None
    meta_iters: int | None = None
    eval_tasks: int | None = None
    eval_chunk: int | None = None
    transductive: bool = False
    reset_inner_optimizer: bool = False
    seed: int = 0
    log_every: int | None = None
    conv_impl: Literal["slices", "patches", "lax"] = "slices"

    def resolved(self) -> ReptileConfig:
        """This config with every ``None`` replaced by the dataset's preset, checked."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        preset = PRESETS[self.dataset]
        filled = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in preset.items():
            if filled[name] is None:
                filled[name] = value
        if filled["train_shots"] is None:
            filled["train_shots"] = filled["shots"]
        config = ReptileConfig(**filled)
        config.check()
        return config

    def check(self) -> None:
        positive = [
            "ways", "shots", "train_shots", "meta_batch", "inner_steps", "inner_batch", "eval_inner_steps",
            "eval_inner_batch", "meta_iters", "eval_tasks", "eval_chunk", "log_every", "query_shots",
        ]  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.eval_tasks < 2:
            raise ValueError(f"eval-tasks must be at least 2 for a confidence interval, got {self.eval_tasks}")
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(
                f"inner-optimizer must be one of {', '.join(INNER_OPTIMIZERS)}, got {self.inner_optimizer!r}"
            )
        if not self.inner_lr > 0:
            raise ValueError(f"inner-lr must be > 0, got {self.inner_lr}")
        if self.dataset == "sinusoid" and self.ways != 1:
            raise ValueError(f"sinusoid regression has no classes: ways must be 1, got {self.ways}")


PRESETS: dict[str, dict] = {
    "omniglot": dict(
        ways=5, shots=1, query_shots=1, meta_batch=5, inner_steps=5, inner_batch=10, eval_inner_steps=50,
        eval_inner_batch=5, inner_optimizer="adam", inner_lr=1e-3, meta_step_size=1.0, meta_step_size_final=0.0,
        meta_iters=100_000, eval_tasks=1000, eval_chunk=100, log_every=100,
    ),
    # The Reptile paper's sinusoid demo (inner SGD 0.02, meta step size 0.1), sized to
    # finish in well under a minute on a laptop CPU.
    "sinusoid": dict(
        ways=1, shots=10, query_shots=50, meta_batch=5, inner_steps=5, inner_batch=10, eval_inner_steps=32,
        eval_inner_batch=10, inner_optimizer="sgd", inner_lr=0.02, meta_step_size=0.1, meta_step_size_final=0.0,
        meta_iters=30_000, eval_tasks=1000, eval_chunk=500, log_every=1000,
    ),
}  # fmt: skip
