"""Reptile meta-training throughput: metajax against a PyTorch per-task loop.

Both sides run the same algorithm on the same network (Reptile's Omniglot
Conv4), task sizes and optimizer: 5-way tasks of 10 examples per class, 5 inner
Adam steps (beta1 = 0) on mini-batches of 10, meta-batch 5, from an on-device
bank of 3856 classes x 20 random 28x28 images. The peer
(``torch_reptile.py``) runs in its own interpreter (a virtual environment this
script builds, or the current one when it already has torch), one after the
other with metajax, never at the same time. Each side is measured ``--repeats``
times alternately and the median is reported.

    python benchmarks/reptile_throughput.py                 # CPU
    python benchmarks/reptile_throughput.py --device gpu    # a CUDA GPU, torch preinstalled

Prints a table and writes ``benchmarks/results/reptile_throughput/reptile_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

import peer_env  # noqa: E402 (beside this script: on sys.path as its folder)


def time_metajax(args, conv_impl: str, meta_batch: int, chunk: int) -> float:
    """Tasks/s of metajax's jitted meta-step; ``chunk`` > 1 scans that many steps per call (as the runner does)."""
    import jax
    import jax.numpy as jnp
    import optax

    from metajax.data import few_shot_sampler
    from metajax.meta import reptile, softmax_cross_entropy
    from metajax.models import Conv4

    bank = jax.random.uniform(jax.random.key(0), (args.num_classes, 20, 28, 28, 1))
    model = Conv4(num_classes=args.ways, conv_impl=conv_impl)
    learner = reptile(
        model.apply, softmax_cross_entropy, inner_optimizer=optax.adam(args.inner_lr, b1=0.0),
        inner_steps=args.inner_steps, inner_batch=args.inner_batch, meta_iters=100_000,
    )  # fmt: skip
    state = learner.init(model.init(jax.random.key(1), jnp.zeros((1, 28, 28, 1))))

    @jax.jit
    def steps(state, bank, key):
        sample = few_shot_sampler(bank, args.ways, args.train_shots, 0)

        def one(state, key):
            task_key, adapt_key = jax.random.split(key)
            return learner.step(state, sample(task_key, meta_batch), key=adapt_key)

        return jax.lax.scan(one, state, jax.random.split(key, chunk))

    calls = max(1, args.iters // chunk)
    for i in range(max(1, args.warmup // chunk)):
        state, _ = steps(state, bank, jax.random.key(i))
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(calls):
        state, metrics = steps(state, bank, jax.random.key(1000 + i))
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    assert bool(jnp.isfinite(metrics["inner_loss_last"]).all())
    return calls * chunk * meta_batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--train-shots", type=int, default=10)
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--inner-batch", type=int, default=10)
    parser.add_argument("--inner-lr", type=float, default=1e-3)
    parser.add_argument("--meta-batch", type=int, nargs="+", default=[5])
    parser.add_argument("--num-classes", type=int, default=3856)
    parser.add_argument("--iters", type=int, default=40, help="timed meta-iterations per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--impls", nargs="+", default=["slices", "patches", "lax"])
    parser.add_argument("--chunk", type=int, default=10, help="meta-steps per call in the 'scanned' measurement")
    parser.add_argument("--venv", type=Path, default=peer_env.DEFAULT_VENV)
    args = parser.parse_args()

    import jax

    backend = jax.default_backend()
    if (args.device == "gpu") != (backend == "gpu"):
        sys.exit(f"asked for --device {args.device} but JAX's default backend is {backend}")
    torch_python = peer_env.torch_python(args.venv, prefer_current=args.device == "gpu")

    rows = []
    for meta_batch in args.meta_batch:
        peer_args = [
            f"--ways={args.ways}", f"--train-shots={args.train_shots}", f"--inner-steps={args.inner_steps}",
            f"--inner-batch={args.inner_batch}", f"--meta-batch={meta_batch}", f"--inner-lr={args.inner_lr}",
            f"--iters={args.iters}", f"--warmup={args.warmup}", f"--num-classes={args.num_classes}",
            f"--device={'cuda' if args.device == 'gpu' else 'cpu'}",
        ]  # fmt: skip
        measured: dict[str, list[float]] = {"pytorch loop": []}
        peer_info = {}
        for repeat in range(args.repeats):
            peer_info = peer_env.run_peer(torch_python, peer_args)
            measured["pytorch loop"].append(peer_info["tasks_per_second"])
            for impl in args.impls:
                # The XLA:CPU grouped convolution is ~10x slower: fewer iterations keep the run short.
                iters_scale = 0.25 if (impl == "lax" and args.device == "cpu") else 1.0
                scaled = argparse.Namespace(**{**vars(args), "iters": max(2, int(args.iters * iters_scale))})
                measured.setdefault(f"metajax {impl}, jit step per call", []).append(
                    time_metajax(scaled, impl, meta_batch, chunk=1)
                )
            measured.setdefault(f"metajax {args.impls[0]}, {args.chunk} steps per call (lax.scan)", []).append(
                time_metajax(args, args.impls[0], meta_batch, chunk=args.chunk)
            )
            print(f"meta-batch {meta_batch}, repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
        peer_median = statistics.median(measured["pytorch loop"])
        for name, values in measured.items():
            median = statistics.median(values)
            rows.append(
                {
                    "meta_batch": meta_batch,
                    "implementation": name,
                    "tasks_per_second_median": median,
                    "tasks_per_second_all": values,
                    "ratio_to_pytorch": median / peer_median,
                }
            )

    device_name = jax.devices()[0].device_kind
    result = {
        "benchmark": "reptile meta-training throughput",
        "device": args.device,
        "device_name": device_name,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "jax_version": jax.__version__,
        "torch_version": peer_info.get("torch_version"),
        "torch_threads": peer_info.get("num_threads"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": rows,
    }
    out_dir = BENCH_DIR / "results" / "reptile_throughput"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"reptile_throughput_{args.device}.json"
    out_path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nReptile meta-training on {device_name} ({args.ways}-way, {args.train_shots} examples/class, "
          f"{args.inner_steps} inner steps of {args.inner_batch})")  # fmt: skip
    print(f"{'meta-batch':>10}  {'implementation':<48} {'tasks/s':>10} {'x pytorch':>10}")
    for row in rows:
        print(
            f"{row['meta_batch']:>10}  {row['implementation']:<48} {row['tasks_per_second_median']:>10.1f} "
            f"{row['ratio_to_pytorch']:>10.2f}"
        )
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
