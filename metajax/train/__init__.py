"""Runs: the outer loop, evaluation, results."""

from metajax.train.config import MetaLearningConfig as MetaLearningConfig
from metajax.train.errors import TrainingDiverged as TrainingDiverged
from metajax.train.evaluation import mean_and_ci95 as mean_and_ci95
from metajax.train.meta_training import train_and_evaluate as train_and_evaluate
