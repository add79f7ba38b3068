"""Flax modules. Algorithms never import these: they see ``apply_fn(params, x)``."""

from metajax.models.conv4 import BatchStatNorm as BatchStatNorm
from metajax.models.conv4 import Conv4 as Conv4
from metajax.models.conv4 import StridedConv as StridedConv
from metajax.models.mlp import MLP as MLP
