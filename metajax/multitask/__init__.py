"""Multi-task learning: trainer, task losses, weightings of losses and of per-task gradients, metrics.

Importing this package registers every built-in weighting in ``metajax.registry.MULTITASK_WEIGHTINGS``.
"""

from metajax.multitask.dynamic_weight_average import dynamic_weight_average as dynamic_weight_average
from metajax.multitask.gradnorm import gradnorm as gradnorm
from metajax.multitask.losses import binary_cross_entropy as binary_cross_entropy
from metajax.multitask.losses import mean_squared_error as mean_squared_error
from metajax.multitask.metrics import roc_auc as roc_auc
from metajax.multitask.mgda import mgda as mgda
from metajax.multitask.mgda import min_norm_weights as min_norm_weights
from metajax.multitask.pcgrad import pcgrad as pcgrad
from metajax.multitask.pcgrad import project_conflicting as project_conflicting
from metajax.multitask.trainer import MultiTaskState as MultiTaskState
from metajax.multitask.trainer import MultiTaskTrainer as MultiTaskTrainer
from metajax.multitask.trainer import multitask_trainer as multitask_trainer
from metajax.multitask.weighting import GradientWeighting as GradientWeighting
from metajax.multitask.weighting import LossWeighting as LossWeighting
from metajax.multitask.weighting import WeightingContext as WeightingContext
from metajax.multitask.weighting import equal_weighting as equal_weighting
from metajax.multitask.weighting import uncertainty_weighting as uncertainty_weighting
