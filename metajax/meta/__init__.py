"""Few-shot meta-learners: factories returning ``MetaLearner`` NamedTuples.

Importing this package registers every built-in learner in ``metajax.registry.META_LEARNERS``. An
entry's ``build(options, context: MetaContext) -> MetaLearner``; its traits, read by the run:

* ``presets``: ``{dataset: {field: value}}``, the paper's settings per dataset (the learner's own
  options and the run's sizes: ``meta_batch``, ``meta_iters``, ...), over the dataset's defaults;
* ``embeds``: the network is built without a head and maps examples to embeddings (ProtoNets, R2D2);
* ``needs_classes``: a classifier, refused on regression datasets;
* ``trains_on_queries`` (default true): meta-training tasks carry query sets (Reptile's do not);
* ``training_loss`` (default ``"query_loss"``): the step metric shown as the training loss;
* ``schedules``: step metrics reported at a chunk's end rather than averaged over it.
"""

from metajax.meta.anil import anil as anil
from metajax.meta.base import MetaContext as MetaContext
from metajax.meta.base import MetaLearner as MetaLearner
from metajax.meta.base import MetaState as MetaState
from metajax.meta.base import mean_squared_error as mean_squared_error
from metajax.meta.base import softmax_cross_entropy as softmax_cross_entropy
from metajax.meta.maml import MetaSGDState as MetaSGDState
from metajax.meta.maml import fomaml as fomaml
from metajax.meta.maml import maml as maml
from metajax.meta.meta_sgd import meta_sgd as meta_sgd
from metajax.meta.protonets import protonets as protonets
from metajax.meta.r2d2 import R2D2State as R2D2State
from metajax.meta.r2d2 import r2d2 as r2d2
from metajax.meta.reptile import ReptileState as ReptileState
from metajax.meta.reptile import reptile as reptile
