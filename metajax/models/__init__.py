"""Flax modules. Algorithms never import these: they see ``apply_fn(params, x)``."""

from metajax.models.conv4 import BatchStatNorm as BatchStatNorm
from metajax.models.conv4 import Conv4 as Conv4
from metajax.models.conv4 import StridedConv as StridedConv
from metajax.models.mixture_of_experts import MMoE as MMoE
from metajax.models.mixture_of_experts import OMoE as OMoE
from metajax.models.mlp import MLP as MLP
from metajax.models.progressive_layered_extraction import CGC as CGC
from metajax.models.progressive_layered_extraction import PLE as PLE
from metajax.models.resnet import ResNet18 as ResNet18
from metajax.models.resnet import RunningBatchNorm as RunningBatchNorm
from metajax.models.shared_bottom import SharedBottom as SharedBottom
from metajax.models.task_stacks import MultiTaskOutput as MultiTaskOutput
