"""Default settings of the meta-learning example: MAML's sinusoid experiment (Finn et al. 2017, section 5.1).

Each field is an ``option``: its default, the help line of its ``--flag``, and the values it accepts.
"""

import dataclasses

from metajax.options import option


@dataclasses.dataclass(frozen=True)
class Config:
    # The paper: 10-shot regression, meta-batches of 25 tasks, 70,000 meta-steps of Adam 1e-3.
    shots: int = option(10, "points of each task's curve to adapt on (K)", minimum=1)
    query_shots: int = option(10, "points each training task is scored on after adapting", minimum=1)
    meta_batch: int = option(25, "tasks per meta-step", minimum=1)
    steps: int = option(70_000, "meta-steps", minimum=1)
    meta_lr: float = option(1e-3, "the outer Adam's learning rate", above=0)
    # One inner step of 0.01, in training and at test time. The paper also fine-tunes with ten steps at
    # test time; from the sharp initialization MAML learns, ten steps of 0.01 diverge on the odd task (one
    # of these 600 test tasks at seed 0), which turns the mean test MSE into NaN: try --eval-inner-steps 10.
    inner_lr: float = option(0.01, "the inner gradient step size", above=0)
    inner_steps: int = option(1, "inner steps in meta-training", minimum=1)
    eval_inner_steps: int = option(1, "inner steps when adapting to a test task", minimum=1)
    hidden: tuple[int, ...] = option((40, 40), "widths of the ReLU network's hidden layers")
    # A fixed set of test tasks, each scored on many points of its curve, so the test MSE covers it all.
    eval_tasks: int = option(600, "test tasks", minimum=1)
    eval_query_shots: int = option(100, "points each test task is scored on", minimum=1)
    log_every: int = option(5_000, "meta-steps between printed losses", minimum=1)
    seed: int = option(0, "seed of the initialization, the training tasks and the test tasks")


def get_config() -> Config:
    return Config()
