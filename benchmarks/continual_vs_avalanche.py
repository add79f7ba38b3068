"""Continual learning side by side with Avalanche: wall time of a whole stream and final accuracy.

Both libraries train the same MLP (2 x 400, ReLU), with Adam 1e-3, one epoch
per experience, on the same examples (metajax builds the stream; Avalanche
reads it from a file), and score every experience's test set after each
experience. Strategies: naive fine-tuning, experience replay (1000 examples)
and EWC (lambda 1000, a separate penalty per experience). The wall time (the
median of ``--repeats`` alternating runs of each side) is
what a user waits for: training and the evaluations after every experience,
metajax's compilation included (not its final checkpoint, written after its
clock stops; Avalanche writes none). Avalanche runs in
its own virtual environment (``peer_env.ensure_avalanche_venv``), with as many
torch threads as this machine has cores; the two never run at the same time.

The two EWCs estimate the Fisher differently, each as its library does:
Avalanche squares mini-batch gradients over the whole experience, metajax
sums squared per-example gradients of 1024 examples (in closed form for the
MLP's Dense layers). Replay: Avalanche's
experience-balanced buffer adds a mini-batch from memory to every step;
metajax's reservoir buffer does the same.

With ``--also-warm-cache`` each metajax run is repeated once more with JAX's
persistent compilation cache filled by the first (``jax_compilation_cache_dir``,
a scratch folder, every program cached): what the second and later runs of a
sweep, or a resumed run, wait for. The first run's figure stays the headline.

Beside each naive run the script prints the training FLOP/s it reaches
against a plain jitted matmul with the MLP's largest shape, and, since the
wall time also holds scoring every test set after each experience, the
fraction of a plain matmul's FLOP/s reached on all the run's arithmetic: the
time plain matmuls of the training batch's and of the scoring's size need for
the run's FLOPs, over the run's wall time (compilation stays inside it).

    python benchmarks/continual_vs_avalanche.py --data-dir ../shared/data/mnist
    python benchmarks/continual_vs_avalanche.py --data-dir DIR --device gpu  # torch, avalanche there

On a GPU (``--device gpu``) both sides run on it: Avalanche in the current
interpreter (the machine's CUDA torch, avalanche-lib installed beside it, as
``gpu_peers_session.sh`` does from carried wheels), not in a CPU venv.

Writes ``benchmarks/results/continual_vs_avalanche/continual_vs_avalanche_<device>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
from continual_cost import matmul_flops
from peer_env import avalanche_python, run_peer

from metajax.options import options_read_by
from metajax.registry import CONTINUAL_STRATEGIES
from metajax.train import ContinualConfig, build_stream, provenance
from metajax.train import train_continual as train_and_evaluate

BENCH_DIR = Path(__file__).resolve().parent
PEER = BENCH_DIR / "avalanche_continual.py"
FLOPS_PER_EXAMPLE = 6 * (784 * 400 + 400 * 400 + 400 * 10)  # Training: 3 x 2 x forward multiply-adds.
SCORING_FLOPS_PER_EXAMPLE = FLOPS_PER_EXAMPLE // 3  # A forward pass.


def write_stream(config: ContinualConfig, path: Path) -> tuple[int, int, int]:
    """Saves the stream metajax trains on for the peer.

    Returns its training examples, the test rows metajax scores after each
    experience (every experience's test set, padding included) and the number
    of experiences.
    """
    stream = build_stream(config.resolved())
    arrays = {"experiences": stream.num_experiences, "outputs": stream.num_outputs}
    n = stream.train_x.shape[1]
    for e in range(stream.num_experiences):
        # Flat rows: the peer's MLP reads feature vectors (metajax's flattens the images itself).
        arrays[f"train_x_{e}"], arrays[f"train_y_{e}"] = stream.train_x[e].reshape(n, -1), stream.train_y[e]
        rows = stream.test_mask[e]
        test_x = stream.test_x[e][rows]
        arrays[f"test_x_{e}"], arrays[f"test_y_{e}"] = test_x.reshape(len(test_x), -1), stream.test_y[e][rows]
    np.savez(path, **arrays)
    scored_rows = int(stream.test_x.shape[0] * stream.test_x.shape[1])
    return int(stream.train_x.shape[0] * stream.train_x.shape[1]), scored_rows, stream.num_experiences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with mnist.npz")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["split-mnist:128", "permuted-mnist:128", "split-mnist:10"],
        help="benchmark:batch-size pairs",
    )
    parser.add_argument("--strategies", nargs="+", default=["naive", "replay", "ewc"])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where both sides run")
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--also-warm-cache",
        action="store_true",
        help="time each metajax run again with the persistent compilation cache its first run filled",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side per case, alternating; medians")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if (args.device == "gpu") != (jax.default_backend() == "gpu"):
        parser.error(f"asked for --device {args.device} but JAX's default backend is {jax.default_backend()}")
    python = avalanche_python(gpu=args.device == "gpu")
    output = (
        args.output
        or BENCH_DIR / "results" / "continual_vs_avalanche" / f"continual_vs_avalanche_{jax.default_backend()}.json"
    )
    threads = os.cpu_count() or 1
    rows = []
    print(f"{'case':>20} {'strategy':>8} {'Avalanche s':>11} {'metajax s':>9} {'speed-up':>8}  final accuracy Av / mj")
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = Path(scratch) / "compilation_cache" if args.also_warm_cache else None
        if cache_dir is not None:
            jax.config.update("jax_compilation_cache_dir", str(cache_dir))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # Cache every program.
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        for case in args.cases:
            benchmark, batch_size = case.split(":")
            batch_size = int(batch_size)
            base = ContinualConfig(
                benchmark=benchmark, data_dir=args.data_dir, batch_size=batch_size, epochs=1, seeds=1
            )
            shared_options = {"buffer_size": 1000, "ewc_lambda": 1000.0}
            stream_path = Path(scratch) / f"{benchmark}.npz"
            examples, scored_rows, num_experiences = write_stream(base, stream_path)
            for strategy in args.strategies:
                options = options_read_by(CONTINUAL_STRATEGIES, strategy, shared_options)
                config = dataclasses.replace(base, strategy=strategy, strategy_options=options)
                peer_args = ["--stream", str(stream_path), "--strategy", strategy, "--batch-size", str(batch_size),
                             "--buffer-size", "1000", "--ewc-lambda", "1000", "--threads", str(threads),
                             "--device", "cuda" if args.device == "gpu" else "cpu"]  # fmt: skip
                peer_seconds, our_seconds, warm_seconds = [], [], []
                for repeat in range(args.repeats):  # Alternating, so that a slow spell of the machine hits both.
                    peer = run_peer(python, peer_args, script=PEER)
                    peer_seconds.append(peer["seconds"])
                    if cache_dir is not None:  # Empty: the first run compiles (and fills it).
                        shutil.rmtree(cache_dir, ignore_errors=True)
                        cache_dir.mkdir()
                    workdir = Path(scratch) / f"{case}-{strategy}-{repeat}"
                    ours = train_and_evaluate(config, workdir, show_progress=False, checkpoint_every=10**6)
                    our_seconds.append(ours["train_seconds"])
                    if cache_dir is not None:
                        # A new run, new jitted functions: XLA's compilation is what the cache saves.
                        warm = train_and_evaluate(
                            config, workdir.with_name(workdir.name + "-warm"), show_progress=False,
                            checkpoint_every=10**6,
                        )  # fmt: skip
                        warm_seconds.append(warm["train_seconds"])
                peer_median, our_median = float(np.median(peer_seconds)), float(np.median(our_seconds))
                row = {
                    "benchmark": benchmark,
                    "scenario": ours["config"]["scenario"],
                    "batch_size": batch_size,
                    "strategy": strategy,
                    "train_examples": examples,
                    "repeats": args.repeats,
                    "avalanche_seconds": peer_median,
                    "metajax_seconds": our_median,
                    "speedup": peer_median / our_median,
                    "avalanche_seconds_each": peer_seconds,
                    "metajax_seconds_each": our_seconds,
                    "avalanche_final_accuracy": peer["final_average_accuracy"],
                    "metajax_final_accuracy": ours["final_average_accuracy"]["mean"],
                    "avalanche_accuracy_matrix": peer["accuracy_matrix"],
                    "metajax_accuracy_matrix": ours["accuracy_matrix"],
                    "torch": peer["torch"],
                    "torch_threads": peer["threads"],
                    "avalanche_device": peer.get("device", "cpu"),
                }
                if cache_dir is not None:
                    row["metajax_seconds_warm_cache"] = float(np.median(warm_seconds))
                    row["metajax_seconds_warm_cache_each"] = warm_seconds
                    row["speedup_warm_cache"] = peer_median / row["metajax_seconds_warm_cache"]
                if strategy == "naive":
                    row["metajax_naive_gflops_per_second"] = examples * FLOPS_PER_EXAMPLE / our_median / 1e9
                    row["matmul_gflops_per_second"] = matmul_flops(batch_size, steps=examples // batch_size) / 1e9
                    # The wall time also holds scoring every test set after each
                    # experience: arithmetic too, at another size. The time a plain
                    # matmul of each size needs for the run's arithmetic, over the
                    # run's time: the fraction of the matmul's FLOP/s reached.
                    scoring_flops = num_experiences * scored_rows * SCORING_FLOPS_PER_EXAMPLE
                    # Scoring every test set at once: one matmul of that many rows.
                    row["scoring_matmul_gflops_per_second"] = matmul_flops(scored_rows, repeats=3) / 1e9
                    matmul_seconds = examples * FLOPS_PER_EXAMPLE / (row["matmul_gflops_per_second"] * 1e9)
                    matmul_seconds += scoring_flops / (row["scoring_matmul_gflops_per_second"] * 1e9)
                    row["metajax_naive_gflops_per_second_with_scoring"] = (
                        (examples * FLOPS_PER_EXAMPLE + scoring_flops) / our_median / 1e9
                    )
                    row["metajax_naive_fraction_of_matmul_with_scoring"] = matmul_seconds / our_median
                rows.append(row)
                # After every row: a run cut short (a lease's time limit) keeps what it measured.
                output.write_text(json.dumps({**provenance(), "rows": rows}, indent=1) + "\n")
                line = f"{case:>20} {strategy:>8} {peer_median:>11.2f} {our_median:>9.2f}"
                line += f" {row['speedup']:>7.2f}x  {row['avalanche_final_accuracy']:.4f} / "
                line += f"{row['metajax_final_accuracy']:.4f}"
                if cache_dir is not None:
                    line += f"   warm cache: {row['metajax_seconds_warm_cache']:.2f} s, "
                    line += f"{row['speedup_warm_cache']:.2f}x"
                if strategy == "naive":
                    line += (
                        f"   metajax naive {row['metajax_naive_gflops_per_second']:.1f} GFLOP/s (evaluation and "
                        f"compilation included), matmul {row['matmul_gflops_per_second']:.1f}; counting the "
                        f"scoring too, {100 * row['metajax_naive_fraction_of_matmul_with_scoring']:.0f} % of a "
                        f"plain matmul of each size (scoring-sized matmul "
                        f"{row['scoring_matmul_gflops_per_second']:.1f} GFLOP/s)"
                    )
                print(line, flush=True)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
