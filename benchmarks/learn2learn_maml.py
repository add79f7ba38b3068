"""learn2learn reference for MAML / first-order MAML meta-training throughput.

The speed peer of ``maml_throughput.py``: learn2learn 0.2.0's ``MAML`` wrapper
used as its Omniglot example uses it (``clone()`` per task, ``adapt(loss)`` per
inner step, the query loss's ``backward()`` per task, gradients averaged over
the meta-batch, one Adam step), on Reptile's strided Conv4 with batch
statistics in batch norm, the network metajax uses. Tasks are drawn from an
on-device bank of random images of Omniglot's shape: only speed is measured.

Imports only torch, learn2learn and the standard library: it runs in the
virtual environment ``peer_env.ensure_learn2learn_venv`` builds. Prints one
JSON line, the last on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

warnings.filterwarnings("ignore")  # gym's and torchvision's import-time notices.

import learn2learn as l2l  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


def omniglot_net(ways: int) -> nn.Sequential:
    """4 x [3x3 conv 64 stride 2 without bias, batch norm on batch statistics, ReLU] + linear."""
    layers: list[nn.Module] = []
    channels = 1
    for _ in range(4):
        layers += [
            nn.Conv2d(channels, 64, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64, track_running_stats=False),
            nn.ReLU(),
        ]
        channels = 64
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256, ways))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--query-shots", type=int, default=5)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=3856)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    bank = torch.rand(args.num_classes, 20, 1, 28, 28, device=device)
    maml = l2l.algorithms.MAML(omniglot_net(args.ways).to(device), lr=args.inner_lr, first_order=args.first_order)
    optimizer = torch.optim.Adam(maml.parameters(), 1e-3)
    per_class = args.shots + args.query_shots
    labels = torch.arange(args.ways, device=device)

    def sample_task():
        classes = torch.randperm(args.num_classes, device=device)[: args.ways]
        examples = torch.stack([torch.randperm(20, device=device)[:per_class] for _ in range(args.ways)])
        images = bank[classes[:, None], examples]  # [ways, per_class, 1, 28, 28]
        support = images[:, : args.shots].reshape(-1, 1, 28, 28)
        query = images[:, args.shots :].reshape(-1, 1, 28, 28)
        return support, labels.repeat_interleave(args.shots), query, labels.repeat_interleave(args.query_shots)

    def meta_iteration():
        optimizer.zero_grad()
        for _ in range(args.meta_batch):
            support_x, support_y, query_x, query_y = sample_task()
            learner = maml.clone()
            for _ in range(args.inner_steps):
                learner.adapt(F.cross_entropy(learner(support_x), support_y))
            loss = F.cross_entropy(learner(query_x), query_y)
            loss.backward()
        for parameter in maml.parameters():
            parameter.grad.mul_(1.0 / args.meta_batch)
        optimizer.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        meta_iteration()
    sync()
    start = time.perf_counter()
    for _ in range(args.iters):
        loss = meta_iteration()
    sync()
    seconds = time.perf_counter() - start
    assert torch.isfinite(loss).item()
    print(
        json.dumps(
            {
                "tasks_per_second": args.iters * args.meta_batch / seconds,
                "torch_version": torch.__version__,
                "learn2learn_version": l2l.__version__,
                "num_threads": torch.get_num_threads(),
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            }
        )
    )


if __name__ == "__main__":
    main()
