"""MMoE training throughput: metajax against a PyTorch MMoE of the same size, and against the matmul roof.

Both sides train the same model (experts of one ReLU layer, a softmax gate and
a one-hidden-layer tower per task, summed binary cross-entropy, Adam) for
epochs of shuffled mini-batches over the same number of random examples held
on the device. metajax runs two ways: the library's epoch as one ``lax.scan``
(``train_epoch``), and a Python loop calling the jitted ``train_step`` per
batch, to measure what the scan is worth. The peer (``torch_mmoe.py``) runs in
its own interpreter, one after the other with metajax, never at the same time;
each is measured ``--repeats`` times alternately and the median is reported.

Where the model is so small that dispatch and bookkeeping dominate, the ratio
is the figure; at large batches both sides approach the machine's arithmetic
limit, so the script also prints the FLOP/s each reaches against a plain jitted
matmul with the model's largest shapes ([batch, features] x [features,
experts * units + tasks * experts]). Training FLOPs are estimated as 3 x 2 x
the forward pass's multiply-adds (forward, and backward for inputs and weights).

    python benchmarks/mmoe_throughput.py

Prints a table and writes ``benchmarks/results/mmoe_throughput/mmoe_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

BENCH_DIR = Path(__file__).resolve().parent

import peer_env  # noqa: E402 (beside this script: on sys.path as its folder)

from metajax.data.multitask import MultiTaskBatch  # noqa: E402
from metajax.models import MMoE  # noqa: E402
from metajax.multitask import multitask_trainer  # noqa: E402
from metajax.train import provenance  # noqa: E402

# (name, features, experts, expert units, tower units): keras-mmoe's census and synthetic models.
SHAPES = {"census": (500, 8, 4, 8), "synthetic": (100, 8, 16, 8)}
TASKS = 2


def forward_macs(features, experts, units, tower_units):
    return (
        features * experts * units
        + features * TASKS * experts
        + TASKS * (experts * units + units * tower_units + tower_units)
    )


def make_metajax_runner(shape, batch_size, examples):
    features, experts, units, tower_units = shape
    model = MMoE(TASKS, num_experts=experts, expert_widths=(units,), tower_hidden=(tower_units,))
    trainer = multitask_trainer(model.apply, TASKS, optimizer=optax.adam(1e-3), batch_size=batch_size)
    x = jax.random.normal(jax.random.key(0), (examples, features))
    y = (jax.random.uniform(jax.random.key(1), (examples, TASKS)) < 0.3).astype(jnp.float32)
    data = MultiTaskBatch(x, y)
    state = trainer.init(model.init(jax.random.key(2), x[:1]))
    train_epoch = jax.jit(trainer.train_epoch)
    train_step = jax.jit(trainer.train_step)
    steps = examples // batch_size

    @jax.jit
    def batches(key):
        order = jax.random.permutation(key, examples)[: steps * batch_size].reshape(steps, batch_size)
        return x[order], y[order]

    def scanned(state, key):
        return train_epoch(state, data, key=key)[0]

    def looped(state, key):
        xs, ys = batches(key)
        for i in range(steps):
            state, _ = train_step(state, MultiTaskBatch(xs[i], ys[i]), key=jax.random.fold_in(key, i))
        return state

    return state, {"scanned epoch": scanned, "python loop of jitted steps": looped}, steps * batch_size


def time_jax(run, state, epochs):
    state = jax.block_until_ready(run(state, jax.random.key(100)))  # compile + warm-up
    start = time.perf_counter()
    for epoch in range(epochs):
        state = run(state, jax.random.key(epoch))
    jax.block_until_ready(state)
    return time.perf_counter() - start


def matmul_flops_per_second(shape, batch_size, examples, epochs):
    """FLOP/s of the model's largest matmul alone, scanned over an epoch's batches like training is."""
    features, experts, units, _ = shape
    steps = examples // batch_size
    x = jax.random.normal(jax.random.key(0), (steps, batch_size, features))
    w = jax.random.normal(jax.random.key(1), (features, experts * units + TASKS * experts))

    @jax.jit
    def run(x, w):
        def body(carry, xb):
            return carry + jnp.sum(xb @ w), None

        return jax.lax.scan(body, 0.0, x)[0]

    jax.block_until_ready(run(x, w))
    start = time.perf_counter()
    for _ in range(epochs):
        out = run(x, w)
    jax.block_until_ready(out)
    return epochs * steps * batch_size * features * w.shape[1] * 2 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--examples", type=int, default=80_000, help="rows per epoch (census's training split)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cases", nargs="+", default=["census:32", "census:256", "census:1024", "census:4096", "synthetic:32"]
    )
    args = parser.parse_args()

    python = peer_env.torch_python(prefer_current=args.device == "gpu")
    rows = []
    header = (
        f"{'model:batch':>16} {'metajax scan':>13} {'metajax loop':>13} {'PyTorch':>10} {'ratio':>7} "
        f"{'GFLOP/s jax / torch / matmul':>30}"
    )
    print(header)
    for case in args.cases:
        name, batch_size = case.split(":")
        shape, batch_size = SHAPES[name], int(batch_size)
        state, runners, per_epoch = make_metajax_runner(shape, batch_size, args.examples)
        peer_args = [
            "--features", str(shape[0]), "--experts", str(shape[1]), "--expert-units", str(shape[2]),
            "--tower-units", str(shape[3]), "--examples", str(args.examples), "--batch-size", str(batch_size),
            "--epochs", str(args.epochs), "--device", "cuda" if args.device == "gpu" else "cpu",
        ]  # fmt: skip
        measured = {key: [] for key in [*runners, "pytorch"]}
        for _ in range(args.repeats):
            for key, run in runners.items():
                measured[key].append(args.epochs * per_epoch / time_jax(run, state, args.epochs))
            measured["pytorch"].append(
                peer_env.run_peer(python, peer_args, BENCH_DIR / "torch_mmoe.py")["examples_per_second"]
            )
        median = {key: statistics.median(values) for key, values in measured.items()}
        flops_per_example = 6 * forward_macs(*shape)
        matmul = matmul_flops_per_second(shape, batch_size, args.examples, args.epochs)
        best = max(median["scanned epoch"], median["python loop of jitted steps"])
        row = {
            "case": case,
            "batch_size": batch_size,
            "examples_per_second": median,
            "samples": measured,
            "ratio_best_metajax_to_pytorch": best / median["pytorch"],
            "ratio_scan_to_loop": median["scanned epoch"] / median["python loop of jitted steps"],
            "training_gflops_per_second": {
                "metajax": best * flops_per_example / 1e9,
                "pytorch": median["pytorch"] * flops_per_example / 1e9,
            },
            "matmul_gflops_per_second": matmul / 1e9,
        }
        rows.append(row)
        print(
            f"{case:>16} {median['scanned epoch']:>13.0f} {median['python loop of jitted steps']:>13.0f} "
            f"{median['pytorch']:>10.0f} {row['ratio_best_metajax_to_pytorch']:>6.2f}x "
            f"{row['training_gflops_per_second']['metajax']:>10.1f} / "
            f"{row['training_gflops_per_second']['pytorch']:.1f} / {row['matmul_gflops_per_second']:.1f}"
        )

    output = BENCH_DIR / "results" / "mmoe_throughput" / f"mmoe_throughput_{args.device}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **provenance(),
        "unit": "training examples per second (median of repeats)",
        "rows": rows,
    }
    output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
