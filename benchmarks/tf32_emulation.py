"""Runs ``metajax`` with every Conv4 matmul input rounded to TF32 (10 mantissa bits).

On NVIDIA GPUs since Ampere, XLA rounds float32 matmul inputs to TF32 unless a
higher precision is asked for. This script emulates that rounding on any
backend, to show what it does to Reptile (benchmarks/NOTES.md, "The inner optimizer's state matters"):

    python benchmarks/tf32_emulation.py reptile --dataset omniglot --data-dir ../shared/data/omniglot \
        --train-shots 10 --meta-iters 3000 --log-every 500 --eval-tasks 500 --transductive \
        --reset-inner-optimizer --workdir runs/tf32_emulated

Arguments are those of the ``metajax`` command.
"""

import sys

from jax import lax

import metajax.models.conv4 as conv4
from metajax.cli import main

_full_precision_contract = conv4._contract_last


def _tf32_contract(patches, kernel):
    def to_tf32(array):
        return lax.reduce_precision(array, exponent_bits=8, mantissa_bits=10)

    return _full_precision_contract(to_tf32(patches), to_tf32(kernel))


if __name__ == "__main__":
    conv4._contract_last = _tf32_contract
    sys.exit(main(sys.argv[1:]))
