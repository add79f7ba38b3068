"""Class-incremental learning: naive fine-tuning, EWC and experience replay on a split stream.

Ten classes arrive as five experiences of two; one head scores all ten, and
the model never sees an experience again. Fine-tuning forgets everything but
the last two classes; EWC (Kirkpatrick et al. 2017, https://arxiv.org/abs/1612.00796)
anchors the weights that mattered; replay (Chaudhry et al. 2019,
https://arxiv.org/abs/1902.10486) trains on a small buffer of past examples
beside each batch. In this scenario only replay holds on to the old classes
(van de Ven & Tolias 2019, https://arxiv.org/abs/1904.07734).

    python examples/continual/train.py --strategies naive replay --seeds 2
    python examples/continual/train.py --data-dir ../shared/data/mnist   # Split MNIST

The pieces: a ``Stream`` of experiences as stacked arrays, a ``Strategy``
NamedTuple of pure hooks (``naive()``, ``ewc(...)``, ``replay(...)``) and
``continual_learner(...)``, whose ``train_experience`` runs a whole experience
as one ``lax.scan``; we vmap it over seeds and jit it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.continual import (
    Experience,
    Strategy,
    average_accuracy,
    backward_transfer,
    continual_learner,
    ewc,
    forgetting,
    naive,
    replay,
)
from metajax.data.continual_benchmarks import mnist_images
from metajax.data.continual_streams import Stream, gaussian_classes, split_mnist
from metajax.models import MLP
from metajax.options import add_config_flags, checked_fields


def load_stream(config) -> Stream:
    """Split MNIST from ``config.data_dir``, else its generated stand-in, as a class-incremental stream."""
    if config.data_dir:
        images = mnist_images(config.data_dir)
    else:
        images = gaussian_classes(train_per_class=config.train_per_class, seed=config.seed)
    return split_mnist(images, "class-il", seed=config.seed)


def build_strategy(name: str, config, model: MLP, stream: Stream) -> Strategy:
    if name == "naive":
        return naive()
    if name == "ewc":
        # The MLP declares its Dense layers, so the Fisher needs no per-example gradients.
        return ewc(model.apply, ewc_lambda=config.ewc_lambda, dense_layers=model.dense_layers)
    if name == "replay":
        return replay(config.buffer_size, example_shape=stream.example_shape, num_outputs=stream.num_outputs)
    raise ValueError(f"strategy must be naive, ewc or replay, got {name!r}")


def accuracy_matrices(strategy: Strategy, model: MLP, stream: Stream, config) -> np.ndarray:
    """``[seeds, experiences, experiences]``: row i, the accuracy on every experience's test set after
    training on experiences 0..i, for each seed."""
    learner = continual_learner(
        model.apply, strategy, optax.adam(config.learning_rate), epochs=config.epochs, batch_size=config.batch_size
    )
    seed_keys = jax.random.split(jax.random.key(config.seed), config.seeds)
    init_keys, train_keys = jax.vmap(jax.random.split, out_axes=1)(seed_keys)
    example = jnp.asarray(stream.train_x[0, :1])
    # The seeds are an array axis: one program trains them all.
    states = jax.vmap(lambda key: learner.init(model.init(key, example)))(init_keys)
    train_experience = jax.jit(
        jax.vmap(lambda state, experience, key: learner.train_experience(state, experience, key=key), (0, None, 0))
    )
    accuracy = jax.jit(jax.vmap(learner.accuracy, (0, None, None, None, None)))
    test = [jnp.asarray(a) for a in (stream.test_x, stream.test_y, stream.test_mask, stream.logit_mask)]

    rows = []
    for index in range(stream.num_experiences):
        experience = Experience(
            x=jnp.asarray(stream.train_x[index]),
            y=jnp.asarray(stream.train_y[index]),
            logit_mask=jnp.asarray(stream.logit_mask[index]),
            index=jnp.asarray(index),
        )
        keys = jax.vmap(jax.random.fold_in, (0, None))(train_keys, index)
        states, _ = train_experience(states, experience, keys)
        rows.append(np.asarray(accuracy(states, *test)))  # [seeds, experiences]
    return np.stack(rows, axis=1)


def train_and_evaluate(config, workdir: str | Path) -> dict[str, Any]:
    """Runs each of ``config.strategies`` through the stream; returns (and writes to
    ``workdir/summary.json``) each one's accuracy matrix, average accuracy and forgetting."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stream = load_stream(config)
    model = MLP(hidden=tuple(config.hidden), out_features=stream.num_outputs, flatten_input=stream.train_x.ndim > 3)
    print(f"{stream.num_experiences} experiences of {stream.train_x.shape[1]} training examples, "
          f"{stream.num_outputs} classes, {config.seeds} seeds")  # fmt: skip

    results = {}
    for name in config.strategies:
        matrices = accuracy_matrices(build_strategy(name, config, model, stream), model, stream, config)
        # The papers' metrics are defined on one run's matrix: per seed, then mean and spread.
        scores = {
            metric: [fn(matrix) for matrix in matrices]
            for metric, fn in (
                ("average_accuracy", average_accuracy),
                ("forgetting", forgetting),
                ("backward_transfer", backward_transfer),
            )
        }
        results[name] = {"accuracy_matrix": matrices.mean(axis=0).tolist(), **scores}
        print(f"\n{name}: accuracy on each experience (columns) after training on each (rows), mean over seeds")
        for row in matrices.mean(axis=0):
            print("  " + " ".join(f"{value:.3f}" for value in row))
        print("  " + "  ".join(f"{metric} {np.mean(v):.3f} ± {np.std(v):.3f}" for metric, v in scores.items()))

    summary = {"config": dataclasses.asdict(config), "strategies": results}
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def parse_config(defaults, argv=None):
    """``defaults`` with the fields given on the command line replaced (a flag per field: ``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/continual", help="where summary.json goes")
    add_config_flags(parser, type(defaults))  # The flags a run's config gets in the metajax command.
    args = vars(parser.parse_args(argv))
    workdir = args.pop("workdir")
    try:
        return checked_fields(dataclasses.replace(defaults, **args)), workdir
    except ValueError as error:  # A value out of its range, in one line.
        parser.error(str(error))


if __name__ == "__main__":
    from config import get_config  # Beside this file: the script's folder is on the path when it runs.

    train_and_evaluate(*parse_config(get_config()))
