"""Configuration of a few-shot meta-learning run, with the papers' presets."""

from __future__ import annotations

import dataclasses
from typing import Literal

DATASETS = ("sinusoid", "omniglot")
INNER_OPTIMIZERS = ("adam", "sgd")
CLASS_SPLITS = ("background", "random")
ALGORITHMS = ("reptile", "maml", "fomaml", "anil", "meta-sgd", "protonets")

# The fields each algorithm reads beyond the common ones; setting another
# algorithm's field is an error rather than silently ignored.
_REPTILE_ONLY = (
    "train_shots", "inner_batch", "eval_inner_batch", "inner_optimizer", "meta_step_size", "meta_step_size_final",
    "reset_inner_optimizer",
)  # fmt: skip
_GRADIENT_ONLY = ("meta_lr", "first_order", "second_order_steps")
_INNER_LOOP = ("inner_steps", "eval_inner_steps", "inner_lr")


def _foreign_fields(algorithm: str) -> tuple[str, ...]:
    """The fields ``algorithm`` does not read."""
    if algorithm == "reptile":
        return _GRADIENT_ONLY
    if algorithm == "protonets":
        return _REPTILE_ONLY + _INNER_LOOP + ("first_order", "second_order_steps")
    if algorithm == "fomaml":  # First order by definition.
        return _REPTILE_ONLY + ("first_order", "second_order_steps")
    return _REPTILE_ONLY


@dataclasses.dataclass(frozen=True)
class MetaLearningConfig:
    """Everything that defines a few-shot meta-learning run; ``None`` fields take the preset.

    Presets depend on the algorithm and the dataset (``PRESETS``). Reptile's
    Omniglot preset is the Reptile paper's (arXiv 1803.02999, appendix, and
    its ``run_omniglot.py`` commands): Adam with beta1 = 0 and learning rate
    1e-3, 5 inner steps of 10 examples, meta-batch 5, meta step size 1.0
    annealed to 0 over 100k iterations, 50 evaluation steps of 5 examples,
    and training tasks of 10 examples per class whatever ``shots`` the
    evaluation uses (its commands' ``--train-shots 10``; with 1-shot training
    tasks an inner batch of 10 would cycle through 5 examples).
    MAML's (arXiv 1703.03400, section 5.2): one inner step of size 0.4 in
    training, three at test time, meta-batch 32, Adam 1e-3, 60k iterations;
    ANIL, Meta-SGD and first-order MAML share it. ProtoNets (arXiv 1703.05175):
    Adam 1e-3, meta-batch 32 so its steps see as many tasks as MAML's.
    """

    algorithm: Literal["reptile", "maml", "fomaml", "anil", "meta-sgd", "protonets"] = "reptile"
    dataset: Literal["sinusoid", "omniglot"] = "sinusoid"
    data_dir: str | None = None
    split: Literal["background", "random"] = "background"
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
    also_eval_shots: tuple[int, ...] = ()
    transductive: bool = False
    reset_inner_optimizer: bool = False
    meta_lr: float | None = None
    first_order: bool = False
    second_order_steps: int | None = None
    seed: int = 0
    log_every: int | None = None
    conv_impl: Literal["slices", "patches", "lax"] = "slices"

    def resolved(self) -> MetaLearningConfig:
        """This config with every ``None`` replaced by the preset, checked."""
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        for name in _foreign_fields(self.algorithm):
            if getattr(self, name) not in (None, False):
                raise ValueError(f"{name.replace('_', '-')} does not apply to {self.algorithm}")
        if self.algorithm == "protonets" and self.dataset == "sinusoid":
            raise ValueError(
                "protonets classifies by distance to class prototypes; sinusoid regression has no classes "
                "(use --dataset omniglot)"
            )
        family = self.algorithm if self.algorithm in ("reptile", "protonets") else "maml"
        filled = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        preset = dict(PRESETS[family][self.dataset])
        if self.algorithm == "meta-sgd":
            # Meta-SGD learns rates for the number of steps it trains with and
            # tests with that many (one in the paper); more steps of the
            # learned rates can diverge.
            preset["eval_inner_steps"] = filled["inner_steps"] or preset["inner_steps"]
        for name, value in preset.items():
            if filled[name] is None:
                filled[name] = value
        if family == "reptile" and filled["train_shots"] is None:
            filled["train_shots"] = filled["shots"]
        config = MetaLearningConfig(**filled)
        config.check()
        return config

    def check(self) -> None:
        positive = ["ways", "shots", "meta_batch", "meta_iters", "eval_tasks", "eval_chunk", "log_every", "query_shots"]
        if self.algorithm != "protonets":
            positive += ["inner_steps", "eval_inner_steps"]
        if self.algorithm == "reptile":
            positive += ["train_shots", "inner_batch", "eval_inner_batch"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.eval_tasks < 2:
            raise ValueError(f"eval-tasks must be at least 2 for a confidence interval, got {self.eval_tasks}")
        if self.algorithm == "reptile" and self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(
                f"inner-optimizer must be one of {', '.join(INNER_OPTIMIZERS)}, got {self.inner_optimizer!r}"
            )
        if self.algorithm != "protonets" and not self.inner_lr > 0:
            raise ValueError(f"inner-lr must be > 0, got {self.inner_lr}")
        if self.algorithm != "reptile" and not self.meta_lr > 0:
            raise ValueError(f"meta-lr must be > 0, got {self.meta_lr}")
        if self.second_order_steps is not None and not 0 <= self.second_order_steps <= self.inner_steps:
            raise ValueError(
                f"second-order-steps must be between 0 and inner-steps = {self.inner_steps}, "
                f"got {self.second_order_steps}"
            )
        if self.split not in CLASS_SPLITS:
            raise ValueError(f"split must be one of {', '.join(CLASS_SPLITS)}, got {self.split!r}")
        if self.dataset == "sinusoid" and self.split != "background":
            raise ValueError("split applies to omniglot's classes; sinusoid tasks have none")
        for shots in self.also_eval_shots:
            if not isinstance(shots, int) or shots < 1:
                raise ValueError(f"also-eval-shots must be positive integers, got {shots!r}")
        if self.dataset == "sinusoid" and self.ways != 1:
            raise ValueError(f"sinusoid regression has no classes: ways must be 1, got {self.ways}")
        if self.dataset == "omniglot" and self.ways < 2:
            raise ValueError(f"ways must be at least 2 for classification, got {self.ways}")


REPTILE_PRESETS: dict[str, dict] = {
    "omniglot": dict(
        ways=5, shots=1, train_shots=10, query_shots=1, meta_batch=5, inner_steps=5, inner_batch=10,
        eval_inner_steps=50, eval_inner_batch=5, inner_optimizer="adam", inner_lr=1e-3, meta_step_size=1.0,
        meta_step_size_final=0.0, meta_iters=100_000, eval_tasks=1000, eval_chunk=100, log_every=100,
    ),
    # The Reptile paper's sinusoid demo (inner SGD 0.02, meta step size 0.1), sized to
    # finish in well under a minute on a laptop CPU.
    "sinusoid": dict(
        ways=1, shots=10, query_shots=50, meta_batch=5, inner_steps=5, inner_batch=10, eval_inner_steps=32,
        eval_inner_batch=10, inner_optimizer="sgd", inner_lr=0.02, meta_step_size=0.1, meta_step_size_final=0.0,
        meta_iters=30_000, eval_tasks=1000, eval_chunk=500, log_every=1000,
    ),
}  # fmt: skip

MAML_PRESETS: dict[str, dict] = {
    "omniglot": dict(
        ways=5, shots=1, query_shots=5, meta_batch=32, inner_steps=1, eval_inner_steps=3, inner_lr=0.4,
        meta_lr=1e-3, meta_iters=60_000, eval_tasks=1000, eval_chunk=100, log_every=100,
    ),
    # MAML's sinusoid experiment (K = 10, one step of 0.01, meta-batch 25, Adam
    # 1e-3), with 10k instead of 70k iterations so the demo takes about a minute.
    "sinusoid": dict(
        ways=1, shots=10, query_shots=10, meta_batch=25, inner_steps=1, eval_inner_steps=10, inner_lr=0.01,
        meta_lr=1e-3, meta_iters=10_000, eval_tasks=1000, eval_chunk=500, log_every=500,
    ),
}  # fmt: skip

PROTONETS_PRESETS: dict[str, dict] = {
    "omniglot": dict(
        ways=5, shots=1, query_shots=5, meta_batch=32, meta_lr=1e-3, meta_iters=60_000, eval_tasks=1000,
        eval_chunk=100, log_every=100,
    ),
}  # fmt: skip

PRESETS: dict[str, dict[str, dict]] = {"reptile": REPTILE_PRESETS, "maml": MAML_PRESETS, "protonets": PROTONETS_PRESETS}
