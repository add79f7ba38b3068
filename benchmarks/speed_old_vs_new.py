"""Has a change of the library made a run slower? The metajax side of the peer benchmarks, old and new.

Runs the same commands with an earlier checkout (``OLD``, e.g. a worktree of the
commit before a redesign) and with this one, alternating old and new
``--repeats`` times in this one script, and reports each side's throughput as
the summary gives it (meta-training tasks/s and multi-task examples/s exclude
the first chunk's compilation; continual's is examples over the whole training
time). The peers of the side-by-side benchmarks (PyTorch, learn2learn,
Avalanche) are the same programs on both sides, so a ratio new/old here is the
factor by which those comparisons move.

  git worktree add /tmp/old COMMIT
  python benchmarks/speed_old_vs_new.py /tmp/old --output benchmarks/results/speed_old_vs_new/speed_old_vs_new_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from metajax.train import provenance

NEW = Path(__file__).resolve().parent.parent


def commands(data: Path) -> dict[str, tuple[list[str], str]]:
    """``{name: (command-line arguments, the summary's throughput field)}``: the metajax sides of
    reptile_throughput, maml_throughput, mmoe_census / mmoe_throughput and continual_vs_avalanche."""
    omniglot = ["--dataset", "omniglot", "--data-dir", str(data / "omniglot"), "--split", "random"]
    return {
        "reptile omniglot 5-way": (
            ["reptile", *omniglot, "--meta-iters", "400", "--log-every", "100", "--eval-tasks", "100"],
            "meta_tasks_per_second",
        ),
        "maml omniglot 5-way": (
            ["maml", *omniglot, "--meta-iters", "120", "--log-every", "40", "--eval-tasks", "100"],
            "meta_tasks_per_second",
        ),
        "mmoe census": (
            ["mmoe", "--dataset", "census", "--data-dir", str(data / "census_income"), "--epochs", "3"],
            "examples_per_second",
        ),
        "continual split-mnist ewc": (
            [
                "continual",
                "--benchmark",
                "split-mnist",
                "--data-dir",
                str(data / "mnist"),
                "--strategy",
                "ewc",
                "--batch-size",
                "10",
            ],
            "train_examples_per_second",
        ),  # fmt: skip
    }


def throughput(checkout: Path, arguments: list[str], field: str) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        environment = {**os.environ, "PYTHONPATH": str(checkout)}
        subprocess.run(
            [sys.executable, "-m", "metajax.cli", *arguments, "--no-progress", "--workdir", workdir],
            cwd=checkout, env=environment, check=True, capture_output=True,
        )  # fmt: skip
        summary = json.loads((Path(workdir) / "summary.json").read_text())
    if field == "train_examples_per_second":
        return summary["train_examples"] / summary["train_seconds"]
    return summary[field]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path, help="a checkout of the earlier commit")
    parser.add_argument("--data", type=Path, default=NEW.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", help="names of the commands to run (default: all)")
    parser.add_argument(
        "--output", type=Path, default=NEW / "benchmarks" / "results" / "speed_old_vs_new" / "speed_old_vs_new_cpu.json"
    )
    args = parser.parse_args()
    old_commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.old, capture_output=True, text=True).stdout
    new_commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=NEW, capture_output=True, text=True).stdout
    results = {"provenance": provenance(), "old_commit": old_commit.strip(), "new_commit": new_commit.strip()}
    print(f"{'command':<28} {'old median':>11} {'new median':>11} {'new/old':>8}  old runs / new runs")
    for name, (arguments, field) in commands(args.data).items():
        if args.only and name not in args.only:
            continue
        sides: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.repeats):  # Alternating, so a drift of the machine touches both sides alike.
            sides["old"].append(throughput(args.old, arguments, field))
            sides["new"].append(throughput(NEW, arguments, field))
        old, new = statistics.median(sides["old"]), statistics.median(sides["new"])
        results[name] = {"field": field, "arguments": arguments, **sides, "ratio_new_over_old": new / old}
        shown = " ".join(f"{v:.0f}" for v in sides["old"]) + " / " + " ".join(f"{v:.0f}" for v in sides["new"])
        print(f"{name:<28} {old:>11.1f} {new:>11.1f} {new / old:>7.3f}x  {shown}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
