"""Default settings of the continual-learning example: class-incremental Split MNIST's protocol
(van de Ven & Tolias 2019, https://arxiv.org/abs/1904.07734) on a generated stand-in for MNIST.

Each field is an ``option``: its default, the help line of its ``--flag``, and the values it accepts.
"""

import dataclasses

from metajax.options import option


@dataclasses.dataclass(frozen=True)
class Config:
    # Without files: ten Gaussian classes in 64 dimensions, split as Split MNIST is (five experiences of two).
    data_dir: str = option("", "folder with mnist.npz, for Split MNIST (default: generated classes)")
    train_per_class: int = option(500, "training examples of each generated class", minimum=1)
    strategies: tuple[str, ...] = option(("naive", "ewc", "replay"), "strategies to compare: naive, ewc, replay")
    ewc_lambda: float = option(1_000.0, "EWC's penalty strength", minimum=0)
    buffer_size: int = option(500, "examples replay keeps", minimum=1)
    # A 2 x 400 ReLU MLP, one head over all ten classes, Adam 1e-3 on batches of 128.
    hidden: tuple[int, ...] = option((400, 400), "widths of the MLP's hidden ReLU layers")
    learning_rate: float = option(1e-3, "Adam's learning rate", above=0)
    batch_size: int = option(128, "examples per step", minimum=1)
    epochs: int = option(5, "passes over each experience", minimum=1)
    seeds: int = option(3, "independent runs of each strategy, trained together as one vmapped program", minimum=1)
    seed: int = option(0, "the first run's seed (and the generated data's)")


def get_config() -> Config:
    return Config()
