"""Few-shot meta-learners: factories returning ``MetaLearner`` NamedTuples."""

from metajax.meta.anil import anil as anil
from metajax.meta.base import MetaLearner as MetaLearner
from metajax.meta.base import MetaState as MetaState
from metajax.meta.base import mean_squared_error as mean_squared_error
from metajax.meta.base import softmax_cross_entropy as softmax_cross_entropy
from metajax.meta.maml import fomaml as fomaml
from metajax.meta.maml import maml as maml
from metajax.meta.meta_sgd import meta_sgd as meta_sgd
from metajax.meta.protonets import protonets as protonets
from metajax.meta.reptile import reptile as reptile
