"""Multi-task learning: trainers, losses, loss weightings, gradient surgery and metrics."""

from metajax.multitask.losses import binary_cross_entropy as binary_cross_entropy
from metajax.multitask.losses import mean_squared_error as mean_squared_error
from metajax.multitask.metrics import roc_auc as roc_auc
from metajax.multitask.pcgrad import pcgrad as pcgrad
from metajax.multitask.pcgrad import project_conflicting as project_conflicting
from metajax.multitask.trainer import MultiTaskState as MultiTaskState
from metajax.multitask.trainer import MultiTaskTrainer as MultiTaskTrainer
from metajax.multitask.trainer import multitask_trainer as multitask_trainer
from metajax.multitask.weighting import LossWeighting as LossWeighting
from metajax.multitask.weighting import equal_weighting as equal_weighting
from metajax.multitask.weighting import gradnorm as gradnorm
from metajax.multitask.weighting import uncertainty_weighting as uncertainty_weighting
