"""The PyTorch speed peer of ``mmoe_throughput.py``: MMoE trained for epochs of shuffled mini-batches.

The model is the same as metajax's ``MMoE`` (and keras-mmoe's layer): experts
of one ReLU layer held as one weight tensor and applied with one matmul (the
fast way to write it in PyTorch, not a loop over expert modules), a softmax
gate per task, a tower of one ReLU layer and a linear output per task, summed
binary cross-entropy, Adam. The data is on the device before timing starts and
batches are drawn by indexing a shuffled permutation, as metajax does.

Runs in its own interpreter (see ``peer_env.py``) and prints one JSON line.
"""

import argparse
import json
import time

import torch
from torch import nn


class TorchMMoE(nn.Module):
    def __init__(self, features, experts, expert_units, tasks, tower_units):
        super().__init__()
        self.experts, self.expert_units, self.tasks = experts, expert_units, tasks
        self.expert_layer = nn.Linear(features, experts * expert_units)
        self.gates = nn.Linear(features, tasks * experts)
        self.tower_hidden_w = nn.Parameter(torch.randn(tasks, expert_units, tower_units) / expert_units**0.5)
        self.tower_hidden_b = nn.Parameter(torch.zeros(tasks, 1, tower_units))
        self.tower_out_w = nn.Parameter(torch.randn(tasks, tower_units, 1) / tower_units**0.5)
        self.tower_out_b = nn.Parameter(torch.zeros(tasks, 1, 1))

    def forward(self, x):
        batch = x.shape[0]
        expert_out = torch.relu(self.expert_layer(x)).view(batch, self.experts, self.expert_units)
        gates = torch.softmax(self.gates(x).view(batch, self.tasks, self.experts), dim=-1)
        mixed = torch.einsum("bte,beh->tbh", gates, expert_out)
        hidden = torch.relu(torch.baddbmm(self.tower_hidden_b, mixed, self.tower_hidden_w))
        return torch.baddbmm(self.tower_out_b, hidden, self.tower_out_w)[..., 0]  # [tasks, batch]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, required=True)
    parser.add_argument("--experts", type=int, required=True)
    parser.add_argument("--expert-units", type=int, required=True)
    parser.add_argument("--tower-units", type=int, required=True)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    x = torch.randn(args.examples, args.features, device=device)
    y = (torch.rand(args.examples, args.tasks, device=device) < 0.3).float()
    model = TorchMMoE(args.features, args.experts, args.expert_units, args.tasks, args.tower_units).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    steps = args.examples // args.batch_size

    def epoch():
        order = torch.randperm(args.examples, device=device)
        for step in range(steps):
            rows = order[step * args.batch_size : (step + 1) * args.batch_size]
            logits = model(x[rows])
            labels = y[rows].T
            loss = sum(loss_fn(logits[t], labels[t]) for t in range(args.tasks))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return loss

    epoch()  # Warm-up: allocator, kernels.
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.epochs):
        loss = epoch()
    loss = float(loss.detach())
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "examples_per_second": args.epochs * steps * args.batch_size / seconds,
                "final_loss": loss,
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
