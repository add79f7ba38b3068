"""Default settings of the multi-task example: MMoE on the MMoE paper's synthetic task pair (Ma et al. 2018,
section 3.2), at the sizes of keras-mmoe's synthetic demo.

Each field is an ``option``: its default, the help line of its ``--flag``, and the values it accepts.
"""

import dataclasses

from metajax.options import option


@dataclasses.dataclass(frozen=True)
class Config:
    # The paper sweeps the correlation over 0.5, 0.9 and 1.0: MMoE's lead grows as the tasks drift apart.
    correlation: float = option(0.5, "correlation of the two tasks' linear parts", minimum=-1, maximum=1)
    train_rows: int = option(10_000, "training rows", minimum=1)
    eval_rows: int = option(1_000, "rows of the validation split, and of the test split", minimum=1)
    num_features: int = option(100, "Gaussian input features", minimum=2)
    experts: int = option(8, "shared experts", minimum=1)
    expert_units: int = option(16, "units of each expert's one ReLU layer", minimum=1)
    tower_units: int = option(8, "units of each task tower's ReLU layer", minimum=1)
    batch_size: int = option(32, "rows per step", minimum=1)
    epochs: int = option(100, "passes over the training rows", minimum=1)
    # keras-mmoe trains with Adam 1e-4; 1e-3 gets as far in fewer epochs here.
    learning_rate: float = option(1e-3, "Adam's learning rate, for the model and for the task weights", above=0)
    log_every: int = option(10, "epochs between printed lines", minimum=1)
    seed: int = option(0, "seed of the data, the initialization and the shuffling")


def get_config() -> Config:
    return Config()
