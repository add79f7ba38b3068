"""The few-shot datasets the command can meta-train on, in ``metajax.registry.FEW_SHOT_DATASETS``.

An entry's ``build(options, *, data_dir) -> FewShotData``; its traits, read before any data is loaded:

* ``classes``: tasks are N-way classification (else regression, with ``ways = 1``);
* ``examples_per_class``: the most support + query examples a class can give (``None``: unbounded);
* ``defaults``: the run's sizes when neither the user nor the learner's preset sets them (``ways``,
  ``shots``, ``query_shots``, ``meta_batch``, ``meta_iters``, ``eval_tasks``, ``eval_chunk``,
  ``log_every``);
* ``model``: ``(name, options)`` of the ``MODELS`` entry a run builds unless told another;
* ``argument``: the option that ``--dataset NAME:VALUE`` sets (``folder:PATH``, ``npz:PATH``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.data.few_shot import few_shot_sampler
from metajax.data.omniglot import EXAMPLES_PER_CLASS, load_omniglot
from metajax.data.sinusoid import INPUT_RANGE, sample_sinusoid_parameters, sinusoid_sampler, sinusoid_task
from metajax.data.tasks import TaskBatch
from metajax.data.user_data import UserClassesOptions, check_few_shot_sizes, few_shot_banks, read_classes
from metajax.meta.base import mean_squared_error, softmax_cross_entropy
from metajax.options import option
from metajax.registry import FEW_SHOT_DATASETS

CLASS_SPLITS = ("background", "random")


class FewShotData(NamedTuple):
    """A loaded few-shot dataset.

    Attributes:
      train, test: what the samplers draw meta-training and test tasks from (class banks on device).
      sampler: ``sampler(bank, *, ways, shots, query_shots) -> sample(key, num_tasks) -> TaskBatch``;
        raises ``ValueError`` when the bank cannot supply such tasks.
      loss_fn: ``loss_fn(predictions, targets) -> scalar``.
      example_shape: one example's shape (``(28, 28, 1)``).
      plot: ``plot(apply_fn, learner, state, *, shots, seed, path, title)`` drawing a few adapted test
        tasks to a PNG, or ``None``.
    """

    train: Any
    test: Any
    sampler: Callable[..., Callable[[jax.Array, int], TaskBatch]]
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array]
    example_shape: tuple[int, ...]
    plot: Callable[..., Path] | None = None


@FEW_SHOT_DATASETS.register(
    "sinusoid",
    description="Sinusoid regression (Finn et al. 2017): generated tasks, needs no files.",
    classes=False,
    examples_per_class=None,
    # MAML's sinusoid experiment (K = 10, meta-batch 25), 10k rather than 70k iterations: about a minute.
    defaults=dict(
        ways=1, shots=10, query_shots=10, meta_batch=25, meta_iters=10_000, eval_tasks=1000, eval_chunk=500,
        log_every=500,
    ),
    model=("mlp", {"hidden": (40, 40)}),  # MAML's and Reptile's sinusoid regressor.
)  # fmt: skip
def build_sinusoid(options: None, *, data_dir: str | None) -> FewShotData:
    """The ``sinusoid`` dataset: regression tasks drawn from a key alone (``options``, ``data_dir`` unused)."""
    placeholder = jnp.zeros(())  # Tasks come from the key alone.
    return FewShotData(
        train=placeholder,
        test=placeholder,
        sampler=lambda bank, *, ways, shots, query_shots: sinusoid_sampler(shots, query_shots),
        loss_fn=mean_squared_error,
        example_shape=(1,),
        plot=plot_sinusoid_fits,
    )


@dataclasses.dataclass(frozen=True)
class OmniglotOptions:
    split: str = option(
        "background",
        "Omniglot's classes: background alphabets to train, evaluation alphabets to test, or 1200 / 423 "
        "characters drawn at random, as the Reptile and MAML papers do (an easier test)",
        choices=CLASS_SPLITS,
    )


@FEW_SHOT_DATASETS.register(
    "omniglot",
    hyperparams=OmniglotOptions,
    description="Omniglot characters, N-way K-shot (from --data-dir's npz files, or TensorFlow Datasets).",
    classes=True,
    examples_per_class=EXAMPLES_PER_CLASS,
    # MAML's Omniglot preset (section 5.2): meta-batch 32, 60k iterations; 5 queries per class.
    defaults=dict(
        ways=5, shots=1, query_shots=5, meta_batch=32, meta_iters=60_000, eval_tasks=1000, eval_chunk=100,
        log_every=100,
    ),
    model=("conv4", {}),
)  # fmt: skip
def build_omniglot(options: OmniglotOptions, *, data_dir: str | None) -> FewShotData:
    """The ``omniglot`` dataset: N-way K-shot episodes from the class banks in ``data_dir`` (or TFDS)."""
    banks = load_omniglot(data_dir, split=options.split)
    return FewShotData(
        train=jnp.asarray(banks.train),
        test=jnp.asarray(banks.test),
        sampler=lambda bank, *, ways, shots, query_shots: few_shot_sampler(
            bank, ways=ways, shots=shots, query_shots=query_shots
        ),
        loss_fn=softmax_cross_entropy,
        example_shape=tuple(banks.train.shape[2:]),
    )


@dataclasses.dataclass(frozen=True)
class FewShotUserOptions(UserClassesOptions):
    test_classes: float = option(
        0.25, "share of your classes held out for meta-test tasks (a draw of seed 0: the same every run)", above=0
    )

    def __post_init__(self):
        if not 0 < self.test_classes < 1:
            raise ValueError(f"test-classes must be between 0 and 1, got {self.test_classes}")


# Omniglot's task sizes, for a first run on your own classes; 10k meta-steps.
USER_DEFAULTS = dict(
    ways=5, shots=1, query_shots=5, meta_batch=32, meta_iters=10_000, eval_tasks=1000, eval_chunk=100, log_every=100
)


def build_user_classes(kind: str, options: FewShotUserOptions) -> FewShotData:
    """Few-shot tasks of a user's classes (``metajax.data.user_data``): a seeded share of them for meta-test."""
    data = read_classes(kind, options)
    banks = few_shot_banks(data, test_classes=options.test_classes)

    def sampler(bank, *, ways, shots, query_shots):
        check_few_shot_sizes(data, banks, bank.shape, ways=ways, shots=shots, query_shots=query_shots)
        return few_shot_sampler(bank, ways=ways, shots=shots, query_shots=query_shots)

    return FewShotData(
        train=jnp.asarray(banks.train),
        test=jnp.asarray(banks.test),
        sampler=sampler,
        loss_fn=softmax_cross_entropy,
        example_shape=tuple(banks.train.shape[2:]),
    )


@FEW_SHOT_DATASETS.register(
    "folder",
    hyperparams=FewShotUserOptions,
    description="Your own images: a folder of class subfolders (--dataset folder:PATH); classes become tasks' classes.",
    classes=True,
    examples_per_class=None,  # Known once the folder is read: the sampler checks it, naming the folder.
    defaults=USER_DEFAULTS,
    model=("conv4", {}),
    argument="path",
)
def build_folder(options: FewShotUserOptions, *, data_dir: str | None) -> FewShotData:
    """The ``folder`` dataset: few-shot tasks from the class subfolders at ``options.path``."""
    return build_user_classes("folder", options)


@FEW_SHOT_DATASETS.register(
    "npz",
    hyperparams=FewShotUserOptions,
    description="Your own examples: an .npz of x (images or vectors) and y (class labels) (--dataset npz:PATH).",
    classes=True,
    examples_per_class=None,
    defaults=USER_DEFAULTS,
    model=("conv4", {}),
    argument="path",
)
def build_npz(options: FewShotUserOptions, *, data_dir: str | None) -> FewShotData:
    """The ``npz`` dataset: few-shot tasks from the classes of the ``.npz`` at ``options.path``."""
    return build_user_classes("npz", options)


def plot_sinusoid_fits(apply_fn, learner, state, *, shots: int, seed: int, path: Path, title: str) -> Path:
    """Draws four test tasks: the truth, the support points, the meta-learned start and the adapted fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Jitted: op by op, the adaptation compiled each of its small operations (seconds for a plot).
    sample = jax.jit(sample_sinusoid_parameters, static_argnums=(1, 2, 3))
    tasks, amplitudes, phases = sample(jax.random.key(seed + 1), 4, shots, 0)
    grid = jnp.linspace(*INPUT_RANGE, 200)[:, None]

    @jax.jit
    def curves(state, support_x, support_y, key, amplitude, phase):
        adapted = learner.adapt(state, support_x, support_y, key=key)
        return sinusoid_task(amplitude, phase, grid), apply_fn(state.params, grid), apply_fn(adapted, grid)

    figure, axes = plt.subplots(1, 4, figsize=(16, 3.5), sharey=True)
    for index, axis in enumerate(axes):
        task, initial, adapted = curves(
            state, tasks.support_x[index], tasks.support_y[index], jax.random.key(index), amplitudes[index],
            phases[index],
        )  # fmt: skip
        axis.plot(grid, task, "k-", label="task")
        axis.plot(grid, initial, "b:", label="meta-learned init")
        axis.plot(grid, adapted, "r--", label="adapted")
        axis.plot(tasks.support_x[index], tasks.support_y[index], "ko", label=f"{shots} support points")
        axis.set_xlabel("x")
    axes[0].legend(loc="lower left", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
