"""Where examples come from: sources and task samplers."""

from metajax.data.errors import DataError as DataError
from metajax.data.few_shot import few_shot_sampler as few_shot_sampler
from metajax.data.omniglot import OmniglotBanks as OmniglotBanks
from metajax.data.omniglot import load_omniglot as load_omniglot
from metajax.data.sinusoid import sinusoid_sampler as sinusoid_sampler
from metajax.data.tasks import TaskBatch as TaskBatch
from metajax.data.tasks import check_task_batch as check_task_batch
