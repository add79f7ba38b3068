"""PyTorch reference for Reptile meta-training throughput (speed peer for metajax).

Reptile (Nichol, Achiam & Schulman 2018, arXiv:1803.02999) on the Omniglot
architecture, written the way a PyTorch user typically writes it: a Python
loop over the tasks of a meta-batch, each adapted with a fresh Adam optimiser
on a task copy of the model, then an interpolation of the meta-weights towards
the mean adapted weights. Only throughput is measured, so the image bank is
random data of Omniglot's shape; the learning dynamics are irrelevant.

Imports only torch and the standard library so it can run in the
separate interpreter prepared by ``peer_env.py``. The result is printed as a
single JSON line, the last line on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

EXAMPLES_PER_CLASS = 20  # Omniglot: 20 drawings per character.
IMAGE_SIZE = 28


def omniglot_net(ways: int) -> nn.Sequential:
    """Reptile's Omniglot model: 4 x [conv3x3 stride 2, BatchNorm, ReLU] + linear.

    BatchNorm uses the statistics of the current batch in both train and eval
    (``track_running_stats=False``), as in the reference Reptile code, which
    always normalises with batch statistics. Stride-2 'same' convolutions take
    28x28 -> 14 -> 7 -> 4 -> 2, hence 64 * 2 * 2 = 256 features.
    """
    layers: list[nn.Module] = []
    in_channels = 1
    for _ in range(4):
        layers += [
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(64, affine=True, track_running_stats=False),
            nn.ReLU(),
        ]
        in_channels = 64
    layers += [nn.Flatten(), nn.Linear(64 * 2 * 2, ways)]
    return nn.Sequential(*layers)


class Reptile:
    """Meta-weights, a reusable task model, and one Reptile meta-iteration.

    The task model is a second module whose parameters are overwritten in
    place from the meta-weights at the start of each task. This is the cheap
    form of ``load_state_dict`` (no key matching, no new allocations), and,
    unlike ``copy.deepcopy`` per task, it keeps the same parameter tensors
    alive so the allocator is not churned. A fresh Adam per task resets the
    moment estimates, as Reptile prescribes.
    """

    def __init__(self, args: argparse.Namespace, images: torch.Tensor) -> None:
        self.args = args
        self.images = images
        self.device = images.device
        self.meta_model = omniglot_net(args.ways).to(self.device)
        self.task_model = omniglot_net(args.ways).to(self.device)
        self.meta_params = list(self.meta_model.parameters())
        self.task_params = list(self.task_model.parameters())
        self.deltas = [torch.zeros_like(p) for p in self.meta_params]
        n = args.ways * args.train_shots
        # Labels are the same for every task (class k of the task -> label k).
        self.labels = torch.arange(args.ways, device=self.device).repeat_interleave(args.train_shots)
        # Inner minibatches come from consecutive random permutations of the
        # task's n examples, concatenated (a batch may straddle two
        # permutations, as in the reference code's sample cycling).
        self.num_perms = math.ceil(args.inner_steps * args.inner_batch / n)

    def sample_task(self) -> torch.Tensor:
        """Images [ways * train_shots, 1, 28, 28] of a random task, class-major.

        Classes and examples are drawn without replacement, on the device, so
        no host round-trip happens in the loop.
        """
        a = self.args
        classes = torch.randperm(a.num_classes, device=self.device)[: a.ways]
        examples = torch.rand(a.ways, EXAMPLES_PER_CLASS, device=self.device)
        examples = examples.argsort(dim=1)[:, : a.train_shots]
        x = self.images[classes[:, None], examples]  # [ways, shots, 28, 28]
        return x.reshape(a.ways * a.train_shots, 1, IMAGE_SIZE, IMAGE_SIZE)

    def minibatch_indices(self) -> torch.Tensor:
        """Indices [inner_steps, inner_batch] into the task's examples."""
        a = self.args
        n = a.ways * a.train_shots
        perms = torch.rand(self.num_perms, n, device=self.device).argsort(dim=1)
        return perms.flatten()[: a.inner_steps * a.inner_batch].view(a.inner_steps, a.inner_batch)

    def adapt(self, x: torch.Tensor, check_loss: bool) -> None:
        """Run the inner Adam loop on one task, starting from the meta-weights."""
        a = self.args
        with torch.no_grad():
            for t, m in zip(self.task_params, self.meta_params, strict=True):
                t.copy_(m)
        opt = torch.optim.Adam(self.task_params, lr=a.inner_lr, betas=(0.0, 0.999))
        for step, idx in enumerate(self.minibatch_indices()):
            loss = F.cross_entropy(self.task_model(x[idx]), self.labels[idx])
            if check_loss and step == 0:
                # Forces a device sync; only done on the first meta-iteration.
                assert torch.isfinite(loss).item(), f"first inner loss {loss.item()}"
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def meta_iteration(self, check_loss: bool = False) -> None:
        """One Reptile outer step: meta += eps * mean_tasks(adapted - meta)."""
        a = self.args
        for d in self.deltas:
            d.zero_()
        for task in range(a.meta_batch):
            self.adapt(self.sample_task(), check_loss=check_loss and task == 0)
            with torch.no_grad():
                for d, t, m in zip(self.deltas, self.task_params, self.meta_params, strict=True):
                    d.add_(t).sub_(m)
        with torch.no_grad():
            for m, d in zip(self.meta_params, self.deltas, strict=True):
                m.add_(d, alpha=a.meta_step_size / a.meta_batch)


def sync(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock timings cover the real work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """Human-readable name of the accelerator or CPU, for the report."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line configuration; defaults are Reptile's Omniglot 5-way setting."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--train-shots", type=int, default=10)
    p.add_argument("--inner-steps", type=int, default=5)
    p.add_argument("--inner-batch", type=int, default=10)
    p.add_argument("--meta-batch", type=int, default=5)
    p.add_argument("--inner-lr", type=float, default=1e-3)
    p.add_argument("--meta-step-size", type=float, default=1.0)
    p.add_argument("--iters", type=int, default=30, help="timed meta-iterations")
    p.add_argument("--warmup", type=int, default=3, help="untimed meta-iterations")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--num-classes", type=int, default=3856)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 1 <= args.ways <= args.num_classes:
        p.error("--ways must be in [1, --num-classes]")
    if not 1 <= args.train_shots <= EXAMPLES_PER_CLASS:
        p.error(f"--train-shots must be in [1, {EXAMPLES_PER_CLASS}]")
    if min(args.inner_steps, args.inner_batch, args.meta_batch, args.iters) < 1:
        p.error("--inner-steps, --inner-batch, --meta-batch and --iters must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but torch.cuda.is_available() is False")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Time ``--iters`` meta-iterations after ``--warmup`` and print the JSON result."""
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)  # Seeds the CUDA generators too.
    if device.type == "cuda":
        # Shapes are fixed, so letting cuDNN pick the fastest kernels is fair.
        torch.backends.cudnn.benchmark = True

    images = torch.rand(
        args.num_classes,
        EXAMPLES_PER_CLASS,
        IMAGE_SIZE,
        IMAGE_SIZE,
        dtype=torch.float32,
        device=device,
    )
    reptile = Reptile(args, images)

    # The finite-loss check syncs, so it runs on the first (normally untimed)
    # meta-iteration only.
    for i in range(args.warmup):
        reptile.meta_iteration(check_loss=i == 0)
    sync(device)
    start = time.perf_counter()
    for i in range(args.iters):
        reptile.meta_iteration(check_loss=args.warmup == 0 and i == 0)
    sync(device)
    elapsed = time.perf_counter() - start

    assert all(torch.isfinite(p).all() for p in reptile.meta_params), "non-finite meta-weights"
    result = {
        "impl": "pytorch-loop",
        "torch_version": torch.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "num_threads": torch.get_num_threads(),
        "tasks_per_second": args.iters * args.meta_batch / elapsed,
        "seconds_per_meta_iter": elapsed / args.iters,
        "config": vars(args),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
