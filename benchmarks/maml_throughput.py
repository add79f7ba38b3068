"""MAML and first-order MAML meta-training throughput: metajax against learn2learn.

Both sides run the same algorithm on the same network (Reptile's strided
Conv4 with batch statistics), task sizes and optimizers: Omniglot 5-way 1-shot
tasks with 5 query examples per class, one inner gradient step of 0.4,
meta-batch 32, Adam 1e-3 outside, tasks drawn from an on-device bank of 3856
classes x 20 random 28x28 images. learn2learn 0.2.0 runs in its own virtual
environment, which this script builds (see ``peer_env.ensure_learn2learn_venv``),
one after the other with metajax, never at the same time; each side is measured
``--repeats`` times alternately and the median is reported.

    python benchmarks/maml_throughput.py                 # CPU
    python benchmarks/maml_throughput.py --device gpu    # GPU; torch + learn2learn importable there

Beside tasks/s, each row gives the FLOP/s both sides reach (XLA's count of a meta-step's
operations, the same arithmetic for both) and its fraction of a plain jitted 2048x2048
matmul's, measured in the same run: the roof the 3x goal is judged against.

Prints a table and writes ``benchmarks/results/maml_throughput/maml_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

import peer_env  # noqa: E402 (beside this script: on sys.path as its folder)

from metajax.train import provenance  # noqa: E402

_BUILT: dict[tuple, tuple] = {}  # (first_order, chunk, conv_impl) -> (jitted steps, initial state, bank)


def _build_metajax(args, first_order: bool, chunk: int, conv_impl: str) -> tuple:
    """The jitted meta-steps, built and compiled once per configuration: the repeats time the same program
    (on a GPU each compilation of a second-order step takes many seconds of a short lease)."""
    key = (first_order, chunk, conv_impl)
    if key in _BUILT:
        return _BUILT[key]
    import jax
    import jax.numpy as jnp
    import optax

    from metajax.data import few_shot_sampler
    from metajax.meta import maml, softmax_cross_entropy
    from metajax.models import Conv4

    bank = jax.random.uniform(jax.random.key(0), (args.num_classes, 20, 28, 28, 1))
    model = Conv4(num_classes=args.ways, conv_impl=conv_impl)
    learner = maml(
        model.apply, softmax_cross_entropy, inner_lr=args.inner_lr, inner_steps=args.inner_steps,
        outer_optimizer=optax.adam(1e-3), first_order=first_order,
    )  # fmt: skip
    state = learner.init(model.init(jax.random.key(1), jnp.zeros((1, 28, 28, 1))))

    @jax.jit
    def steps(state, bank, key):
        sample = few_shot_sampler(bank, args.ways, args.shots, args.query_shots)

        def one(state, key):
            task_key, adapt_key = jax.random.split(key)
            return learner.step(state, sample(task_key, args.meta_batch), key=adapt_key)

        return jax.lax.scan(one, state, jax.random.split(key, chunk))

    _BUILT[key] = steps, state, bank
    return _BUILT[key]


def time_metajax(args, *, first_order: bool, chunk: int, conv_impl: str) -> float:
    """Tasks/s of metajax's jitted meta-step; ``chunk`` > 1 scans that many steps per call (as the runner does).

    Each measurement starts from the same initial state and warms up before its clock starts.
    """
    import jax
    import jax.numpy as jnp

    steps, state, bank = _build_metajax(args, first_order, chunk, conv_impl)
    calls = max(1, args.iters // chunk)
    for i in range(max(1, args.warmup // chunk)):
        state, _ = steps(state, bank, jax.random.key(i))
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(calls):
        state, metrics = steps(state, bank, jax.random.key(1000 + i))
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    assert bool(jnp.isfinite(metrics["query_loss"]).all())
    return calls * chunk * args.meta_batch / seconds


def flops_per_task(args, *, first_order: bool, conv_impl: str) -> float:
    """XLA's count of the floating-point operations of one meta-step, per task (``cost_analysis``)."""
    import jax

    steps, state, bank = _build_metajax(args, first_order, 1, conv_impl)
    cost = steps.lower(state, bank, jax.random.key(0)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # A list of one dict in older JAX.
    return float(cost["flops"]) / args.meta_batch


def matmul_flops_per_second(size: int = 2048, repeats: int = 10) -> float:
    """The best FLOP/s of a plain jitted ``[size, size] @ [size, size]`` float32 matmul here: the roof."""
    import jax

    a, b = (jax.random.normal(jax.random.key(i), (size, size)) for i in range(2))
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, b).block_until_ready()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--query-shots", type=int, default=5)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=3856)
    parser.add_argument("--iters", type=int, default=20, help="timed meta-iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10, help="meta-steps per call in the 'scanned' measurement")
    parser.add_argument("--conv-impl", default="slices", choices=("slices", "patches", "lax"))
    parser.add_argument(
        "--output", type=Path, help="results JSON (default results/maml_throughput/maml_throughput_<device>.json)"
    )
    args = parser.parse_args()

    import jax

    backend = jax.default_backend()
    if (args.device == "gpu") != (backend == "gpu"):
        sys.exit(f"asked for --device {args.device} but JAX's default backend is {backend}")
    # On a GPU machine the interpreter with its CUDA torch (and learn2learn carried in), never a CPU venv.
    peer_python = peer_env.learn2learn_python(gpu=args.device == "gpu")
    peer_script = BENCH_DIR / "learn2learn_maml.py"

    out_path = args.output or BENCH_DIR / "results" / "maml_throughput" / f"maml_throughput_{args.device}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows, peer_info = [], {}
    for first_order in (False, True):
        name = "first-order MAML" if first_order else "MAML"
        peer_args = [
            f"--ways={args.ways}", f"--shots={args.shots}", f"--query-shots={args.query_shots}",
            f"--inner-steps={args.inner_steps}", f"--inner-lr={args.inner_lr}", f"--meta-batch={args.meta_batch}",
            f"--num-classes={args.num_classes}", f"--iters={max(2, args.iters // 2)}", f"--warmup={args.warmup}",
            f"--device={'cuda' if args.device == 'gpu' else 'cpu'}", *(["--first-order"] if first_order else []),
        ]  # fmt: skip
        measured: dict[str, list[float]] = {"learn2learn": []}
        for repeat in range(args.repeats):
            peer_info = peer_env.run_peer(peer_python, peer_args, script=peer_script)
            measured["learn2learn"].append(peer_info["tasks_per_second"])
            measured.setdefault("metajax, jit step per call", []).append(
                time_metajax(args, first_order=first_order, chunk=1, conv_impl=args.conv_impl)
            )
            measured.setdefault(f"metajax, {args.chunk} steps per call (lax.scan)", []).append(
                time_metajax(args, first_order=first_order, chunk=args.chunk, conv_impl=args.conv_impl)
            )
            print(f"{name}: repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
        peer_median = statistics.median(measured["learn2learn"])
        # Both sides do the same arithmetic (same network, tasks and algorithm): XLA's count serves both.
        task_flops = flops_per_task(args, first_order=first_order, conv_impl=args.conv_impl)
        roof = matmul_flops_per_second()
        for implementation, values in measured.items():
            median = statistics.median(values)
            rows.append(
                {
                    "algorithm": name,
                    "implementation": implementation,
                    "tasks_per_second_median": median,
                    "tasks_per_second_all": values,
                    "ratio_to_learn2learn": median / peer_median,
                    "gflops_per_task": task_flops / 1e9,
                    "gflops_per_second": median * task_flops / 1e9,
                    "fraction_of_matmul_roof": median * task_flops / roof,
                    "matmul_2048_gflops_per_second": roof / 1e9,
                }
            )
        # After each algorithm: a run cut short (a lease's time limit) keeps what it measured.
        result = {
            "benchmark": "MAML / first-order MAML meta-training throughput vs learn2learn",
            **provenance(),
            "device": args.device,
            "torch_version": peer_info.get("torch_version"),
            "learn2learn_version": peer_info.get("learn2learn_version"),
            "torch_threads": peer_info.get("num_threads"),
            "config": {**vars(args), "output": str(out_path)},
            "rows": rows,
        }
        out_path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nOmniglot {args.ways}-way {args.shots}-shot, {args.query_shots} query/class, {args.inner_steps} inner "
          f"step(s), meta-batch {args.meta_batch}, on {result['machine']}")  # fmt: skip
    columns = f"{'algorithm':<18} {'implementation':<40} {'tasks/s':>9} {'x learn2learn':>14}"
    print(f"{columns} {'GFLOP/s':>8} {'of roof':>8}")
    for row in rows:
        print(
            f"{row['algorithm']:<18} {row['implementation']:<40} {row['tasks_per_second_median']:>9.1f} "
            f"{row['ratio_to_learn2learn']:>14.2f} {row['gflops_per_second']:>8.1f} "
            f"{row['fraction_of_matmul_roof']:>8.0%}"
        )
    print(f"roof: a plain jitted 2048x2048 matmul, {rows[-1]['matmul_2048_gflops_per_second']:.1f} GFLOP/s")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
