"""Runs: what turns an algorithm into a run (data, the outer loop, checkpoints, evaluation, results).

The public face of a run, for scripts and benchmarks: each family's config and
``train_*`` function (what the command calls), the parts a run is built from,
and the helpers of evaluation, devices and records.
"""

from metajax.train.config import MetaLearningConfig
from metajax.train.continual_config import ContinualConfig
from metajax.train.continual_training import build_model as build_continual_model
from metajax.train.continual_training import build_strategy, build_stream, vmap_runs
from metajax.train.continual_training import train_and_evaluate as train_continual
from metajax.train.errors import RunInterrupted, TrainingDiverged
from metajax.train.evaluation import evaluate_tasks, mean_and_ci95, sample_and_evaluate
from metajax.train.loading import LoadedRun, evaluate_run, load_run
from metajax.train.meta_training import build as build_meta_learning
from metajax.train.meta_training import load_data as load_few_shot_data
from metajax.train.meta_training import train_and_evaluate
from metajax.train.meta_training import train_and_evaluate as train_meta_learning
from metajax.train.multitask_config import MultiTaskConfig
from metajax.train.multitask_training import build_model as build_multitask_model
from metajax.train.multitask_training import load_dataset as load_multitask_dataset
from metajax.train.multitask_training import train_and_evaluate as train_multitask
from metajax.train.run_info import provenance
from metajax.train.sharding import device_mesh, place_leading_axis, place_replicated, shard_leading_axis

__all__ = [
    # Configs and runs, one per family (train_and_evaluate: meta-learning's, its historical name).
    "MetaLearningConfig", "MultiTaskConfig", "ContinualConfig",
    "train_meta_learning", "train_multitask", "train_continual", "train_and_evaluate",
    # The parts a run is built from.
    "load_few_shot_data", "build_meta_learning", "load_multitask_dataset", "build_multitask_model",
    "build_stream", "build_continual_model", "build_strategy", "vmap_runs",
    # Trained runs, loaded back from their workdirs and scored again.
    "load_run", "LoadedRun", "evaluate_run",
    # Evaluation, devices, records, errors.
    "evaluate_tasks", "mean_and_ci95", "sample_and_evaluate",
    "device_mesh", "place_leading_axis", "place_replicated", "shard_leading_axis",
    "provenance", "RunInterrupted", "TrainingDiverged",
]  # fmt: skip
