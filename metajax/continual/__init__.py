"""Continual learning: strategies as pure functions, the learner that runs them, and the metrics.

Importing this package registers every built-in strategy in ``metajax.registry.CONTINUAL_STRATEGIES``.
"""

from metajax.continual.agem import agem as agem
from metajax.continual.base import ContinualBatch as ContinualBatch
from metajax.continual.base import Experience as Experience
from metajax.continual.base import Strategy as Strategy
from metajax.continual.base import StrategyContext as StrategyContext
from metajax.continual.base import compose as compose
from metajax.continual.base import masked_cross_entropy as masked_cross_entropy
from metajax.continual.base import naive as naive
from metajax.continual.dark_experience_replay import dark_experience_replay as dark_experience_replay
from metajax.continual.er_ace import er_ace as er_ace
from metajax.continual.ewc import diagonal_fisher as diagonal_fisher
from metajax.continual.ewc import ewc as ewc
from metajax.continual.gdumb import gdumb as gdumb
from metajax.continual.gem import gem as gem
from metajax.continual.icarl import icarl as icarl
from metajax.continual.learner import ContinualLearner as ContinualLearner
from metajax.continual.learner import ContinualState as ContinualState
from metajax.continual.learner import TrainMode as TrainMode
from metajax.continual.learner import continual_learner as continual_learner
from metajax.continual.learning_without_forgetting import learning_without_forgetting as learning_without_forgetting
from metajax.continual.mas import memory_aware_synapses as memory_aware_synapses
from metajax.continual.metrics import average_accuracy as average_accuracy
from metajax.continual.metrics import backward_transfer as backward_transfer
from metajax.continual.metrics import forgetting as forgetting
from metajax.continual.metrics import forward_transfer as forward_transfer
from metajax.continual.replay import replay as replay
from metajax.continual.replay_ewc import build_replay_ewc as _build_replay_ewc  # noqa: F401 (registers it)
from metajax.continual.synaptic_intelligence import synaptic_intelligence as synaptic_intelligence
from metajax.continual.xder import xder as xder
