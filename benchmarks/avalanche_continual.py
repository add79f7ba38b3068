"""The Avalanche side of ``continual_vs_avalanche.py``: one strategy through one stream, timed.

Runs in the virtual environment that ``peer_env.ensure_avalanche_venv`` makes
(avalanche-lib 0.6.0, torch CPU), never in metajax's; on a GPU machine
(``--device cuda``), in that machine's interpreter with its CUDA torch. Reads the stream that
metajax built (``--stream``, an npz with ``train_x_<e>``, ``train_y_<e>``,
``test_x_<e>``, ``test_y_<e>`` per experience e), so both libraries train on
the same examples. Does what an Avalanche user does: ``strategy.train(exp)``
then ``strategy.eval(test_stream)`` after each experience, which fills the
accuracy matrix; the wall time covers both, as metajax's does. Prints one JSON
line: ``seconds``, ``accuracy_matrix``, ``final_average_accuracy``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from torch import nn

warnings.simplefilter("ignore")  # torchvision 0.15.2 without its C ops warns on import (see peer_env).

from avalanche.benchmarks.scenarios.deprecated.generic_benchmark_creation import (  # noqa: E402
    create_generic_benchmark_from_tensor_lists,
)
from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from avalanche.training.supervised import EWC, Naive, Replay  # noqa: E402


def mlp(outputs: int, hidden: tuple[int, ...] = (400, 400)) -> nn.Module:
    layers, width = [], 784
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, outputs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", required=True)
    parser.add_argument("--strategy", choices=("naive", "replay", "ewc"), required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--buffer-size", type=int, default=1000)
    parser.add_argument("--ewc-lambda", type=float, default=1000.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with np.load(args.stream) as data:
        experiences = int(data["experiences"])
        outputs = int(data["outputs"])
        train = [[torch.from_numpy(data[f"train_{k}_{e}"]) for k in "xy"] for e in range(experiences)]
        test = [[torch.from_numpy(data[f"test_{k}_{e}"]) for k in "xy"] for e in range(experiences)]
    for part in train + test:
        part[1] = part[1].long()
    benchmark = create_generic_benchmark_from_tensor_lists(train, test, task_labels=[0] * experiences)

    model = mlp(outputs)
    common = dict(
        optimizer=torch.optim.Adam(model.parameters(), lr=args.learning_rate),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=args.batch_size,
        train_epochs=args.epochs,
        eval_mb_size=1000,
        device=args.device,
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]),
    )
    strategy = {
        "naive": lambda: Naive(model=model, **common),
        "replay": lambda: Replay(model=model, mem_size=args.buffer_size, **common),
        "ewc": lambda: EWC(model=model, ewc_lambda=args.ewc_lambda, mode="separate", **common),
    }[args.strategy]()

    if args.device.startswith("cuda"):  # CUDA's context and cuBLAS start before the clock, as JAX's backend does.
        torch.ones(8, 8, device=args.device).matmul(torch.ones(8, 8, device=args.device)).sum().item()
    rows = []
    start = time.perf_counter()
    for experience in benchmark.train_stream:
        strategy.train(experience)
        results = strategy.eval(benchmark.test_stream)
        rows.append(
            [float(results[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{e:03d}"]) for e in range(experiences)]
        )
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "accuracy_matrix": rows,
                "final_average_accuracy": float(np.mean(rows[-1])),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            }
        )
    )


if __name__ == "__main__":
    main()
