"""The splits a model declares for the algorithms that need one.

Some algorithms treat a network's parameters in groups: ANIL adapts only the
head in its inner loop, gradient weightings of multi-task learning balance the
gradients of the shared parameters. A model declares such a split with a
method returning a pytree of bools like its parameters; algorithms call the
method and never look at module names (the names are the model's own). A
model that lacks the method gets a one-line error from ``declared_split``.

* ``head_parameters(params)``: True for the output layer an algorithm may
  adapt or replace (``HeadParameters``: ``MLP``, ``Conv4``).
* ``shared_parameters(params)``: True for the parameters every task uses
  (``SharedParameters``: the multi-task models).

Some algorithms have a closed form for networks of one kind. A model declares
that it is of that kind with a method too:

* ``dense_layers(params, x, perturbations) -> (outputs, layer_inputs)``: every
  parameter sits in a ``Dense`` layer (``params["params"][layer]``) applied
  once to ``[batch, features]`` rows; the forward pass adds
  ``perturbations[layer]`` (``[batch, width]``) to each layer's output and
  returns each layer's input. EWC's Fisher then needs no per-example gradients
  (``DenseLayers``: ``MLP``).

An algorithm that works on a classifier's representation rather than its
outputs calls ``features(params, x) -> [batch, features]``, the input of the
output layer (iCaRL's herding and nearest-mean classifier; ``Features``:
``MLP``).

A model with batch norm's running statistics declares how it trains
(``RunningStatistics``: ``ResNet18``): ``train_apply(variables, x)`` and
``running_statistics(variables)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

SPLITS = {
    "head_parameters": "its output layer (the head)",
    "shared_parameters": "the parameters every task shares",
    "dense_layers": "its Dense layers' inputs and perturbed outputs",
    "features": "the features its output layer reads",
}


def parameters_under(params, prefix: str, *, exact: bool = False):
    """Bools like ``params``: True for the leaves inside a module whose name starts with (or, ``exact``,
    is) ``prefix``; for a model's declaration of its own groups."""

    def inside(path, _):
        names = [str(getattr(entry, "key", "")) for entry in path]
        return any(name == prefix if exact else name.startswith(prefix) for name in names)

    return jax.tree_util.tree_map_with_path(inside, params)


class HeadParameters:
    """Declares the module called ``head`` as the model's head (``MLP`` and ``Conv4`` name theirs so)."""

    def head_parameters(self, params):
        mask = parameters_under(params, "head", exact=True)
        if not any(jax.tree.leaves(mask)):
            raise ValueError(f"{type(self).__name__} was built without a head (num_outputs=None): it has no head")
        return mask


class RunningStatistics:
    """Declares running statistics (batch norm's) in the flax collection ``batch_stats``, beside
    ``params`` in the model's variables: ``apply(variables, x)`` is inference mode (the running
    statistics, read as constants to every gradient); ``__call__(x, train=True)`` normalizes with the
    batch's statistics and updates the running ones.

    * ``train_apply(variables, x) -> (outputs, variables)``: the training forward pass, and the
      variables with the running statistics it updated;
    * ``running_statistics(variables)``: True for the running statistics (no optimizer moves them).

    The continual learner trains such a model through its ``TrainMode`` (``ResNet18``).
    """

    def train_apply(self, variables, x):
        outputs, updated = self.apply(variables, x, train=True, mutable=["batch_stats"])  # type: ignore[attr-defined]
        return outputs, {**variables, **updated}

    def running_statistics(self, variables):
        return parameters_under(variables, "batch_stats", exact=True)


class SharedParameters:
    """The multi-task models' declared split: ``shared_parameters(params)``, True for the parameters every
    task uses (experts, shared bottoms), False for each task's own (gates, towers, task experts)."""

    def shared_parameters(self, params):
        return parameters_under(params, "shared_")


class DenseLayers:
    """Declares a network of ``Dense`` layers: the module's ``__call__(x, perturbations)`` adds
    ``perturbations[layer]`` to each layer's output and returns ``(outputs, {layer: its input})``."""

    def dense_layers(self, params, x, perturbations):
        return self.apply(params, x, perturbations)


class Features:
    """Declares the representation the model's output layer reads: ``features(params, x [batch,
    *example_shape]) -> [batch, features]``, by default the module's ``__call__(x, features_only=True)``
    (a model whose forward pass needs more overrides ``features``)."""

    def features(self, params, x):
        return self.apply(params, x, features_only=True)  # type: ignore[attr-defined]


def declared_split(model: Any, split: str, *, needed_by: str) -> Callable[[Any], Any]:
    """``model``'s declared ``split`` method, or a one-line error naming what is missing and who needs it."""
    method = getattr(model, split, None)
    if not callable(method):
        raise ValueError(
            f"{needed_by} needs the model to declare {SPLITS[split]} with a {split}(params) method, which "
            f"{type(model).__name__} lacks (see metajax.models.interfaces)"
        )
    return method
