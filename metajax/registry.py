"""Registries: one per kind of thing metajax can run, each entry one method in one module.

An entry holds a name, a ``build`` function, the dataclass of its own
hyperparameters (whose defaults are the paper's preset) and a one-line
description. The command's choices, flags and ``--help`` text, the configs'
validation and ``metajax list`` are generated from the entries, so adding a
method is one module that calls ``register`` (as mammoth's models and optax's
transforms are one file each).

A registry fills itself on first use by importing the package that holds its
built-in entries; a user's own module registers with the same call::

    from metajax.registry import CONTINUAL_STRATEGIES

    @CONTINUAL_STRATEGIES.register("mine", hyperparams=MineOptions, description="...")
    def build_mine(options, context):
        return Strategy(...)

and is then usable from Python and from the command: ``metajax --plugin
my_module continual --strategy mine``, or through a ``metajax.plugins``
entry point of an installed package (``load_plugins``).

An entry registered with the trait ``argument="path"`` is also named with a
value for that option after a colon: ``--dataset folder:/data/birds`` picks
the entry ``folder`` with its option ``path`` set to ``/data/birds``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

PLUGIN_ENTRY_POINT_GROUP = "metajax.plugins"


class UnknownName(ValueError):
    """A name that no entry of a registry holds."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered method.

    Attributes:
      name: what the command and the configs call it.
      build: the function that makes it from its options (its signature is the registry's; see each registry).
      hyperparams: the dataclass of its own hyperparameters (``None``: it has none).
      description: one line, for ``metajax list`` and ``--help``.
      aliases: other names accepted for it.
      traits: what a runner needs to know of it beyond ``build`` (e.g. a continual strategy that trains on
        the whole stream at once), read by name; ``argument`` names the option that ``NAME:VALUE`` sets.
      module: the module that registered it.
    """

    name: str
    build: Callable[..., Any]
    hyperparams: type | None
    description: str
    aliases: tuple[str, ...] = ()
    traits: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    module: str = ""

    def trait(self, name: str, default: Any = None) -> Any:
        return self.traits.get(name, default)

    def options(self, resolved: Mapping[str, Any]) -> Any:
        """Its hyperparameter dataclass filled with a resolved config's options (``None`` if it has none)."""
        return None if self.hyperparams is None else self.hyperparams(**resolved)


class Registry:
    """Named entries of one kind, filled by the modules that define them.

    Args:
      kind: what an entry is, in words (``"continual strategy"``); errors and listings use it.
      family: ``"meta-learning"``, ``"multi-task"``, ``"continual"`` or ``"shared"``, for ``metajax list``.
      builtins: the module or package whose import registers the built-in entries.
      option: the name of the config field and command option that picks an entry (``"strategy"``).
    """

    def __init__(self, kind: str, *, family: str, builtins: str, option: str):
        self.kind = kind
        self.family = family
        self.option = option
        self._builtins = builtins
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = False

    def register(
        self,
        name: str,
        build: Callable[..., Any] | None = None,
        *,
        description: str,
        hyperparams: type | None = None,
        aliases: Sequence[str] = (),
        **traits: Any,
    ):
        """Registers ``build`` under ``name``; used as a call or, without ``build``, as a decorator.

        Raises:
          ValueError: the name (or an alias) is taken, the description is not one line, or
            ``hyperparams`` is not a dataclass.
        """

        def add(build: Callable[..., Any]) -> Callable[..., Any]:
            if hyperparams is not None and not dataclasses.is_dataclass(hyperparams):
                raise ValueError(f"{self.kind} {name!r}: hyperparams must be a dataclass, got {hyperparams!r}")
            if not description or "\n" in description:
                raise ValueError(f"{self.kind} {name!r}: the description must be one non-empty line")
            if any(":" in taken for taken in (name, *aliases)):
                raise ValueError(f"{self.kind} {name!r}: names cannot hold ':' (it separates an entry's argument)")
            for taken in (name, *aliases):
                if taken in self._entries or taken in self._aliases:
                    owner = self._entries.get(taken) or self._entries[self._aliases[taken]]
                    raise ValueError(f"{self.kind} {taken!r} is registered already (by {owner.module})")
            self._entries[name] = Entry(
                name=name,
                build=build,
                hyperparams=hyperparams,
                description=description,
                aliases=tuple(aliases),
                traits=MappingProxyType(dict(traits)),
                module=getattr(build, "__module__", "") or "",
            )
            for alias in aliases:
                self._aliases[alias] = name
            return build

        return add if build is None else add(build)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # Before the import: the modules it imports register into this registry.
            importlib.import_module(self._builtins)

    def get(self, name: str) -> Entry:
        """The entry called ``name`` (or one of its aliases), also written ``name:ARGUMENT``.

        Raises:
          UnknownName: a one-line error listing the registered names.
        """
        return self._split(name)[0]

    def _split(self, name: str) -> tuple[Entry, str | None]:
        """The entry of ``name`` and the argument after its colon (``None``: no colon)."""
        self._load()
        base, colon, argument = name.partition(":")
        entry = self._entries.get(self._aliases.get(base, base))
        if entry is None:
            raise UnknownName(f"{self.option} must be one of {', '.join(self._entries)}, got {name!r}")
        if colon and entry.trait("argument") is None:
            raise UnknownName(f"{self.option} {entry.name} takes no argument after ':', got {name!r}")
        return entry, argument if colon else None

    def resolve(self, name: str, given: Mapping[str, Any]) -> tuple[Entry, dict[str, Any]]:
        """The entry ``name`` and its full, checked options: its defaults updated by ``given``.

        ``name`` may carry the value of the entry's ``argument`` option after a colon (``folder:PATH``).

        Raises:
          ValueError: an unknown name, a bad value, or an option this entry does not read (one line); a
            value is checked against the field of any entry that declares it first; an entry's ``argument``
            given twice, or not at all.
        """
        from metajax.options import fields_by_name, flag, resolve_options

        entry, argument = self._split(name)
        field = entry.trait("argument")
        if argument is not None:
            if given.get(field, argument) != argument:
                raise ValueError(
                    f"{self.option} {name} and --{flag(field)} {given[field]} disagree; give the {flag(field)} once"
                )
            given = {**given, field: argument}
        known = fields_by_name(other.hyperparams for other in self)
        options = resolve_options(entry.hyperparams, given, owner=f"{self.option} {entry.name}", known=known)
        if field is not None and not options[field]:
            raise ValueError(
                f"{self.option} {entry.name} needs its {flag(field)}: --{flag(self.option)} "
                f"{entry.name}:{flag(field).upper()}"
            )
        return entry, options

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        self._load()
        return iter(tuple(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries or name in self._aliases

    def unregister(self, name: str) -> None:
        """Removes an entry (for tests that register throwaway ones)."""
        entry = self._entries.pop(name)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)


# One registry per kind of thing.
META_LEARNERS = Registry("meta-learner", family="meta-learning", builtins="metajax.meta", option="algorithm")
FEW_SHOT_DATASETS = Registry(
    "few-shot dataset", family="meta-learning", builtins="metajax.data.few_shot_datasets", option="dataset"
)
CONTINUAL_STRATEGIES = Registry(
    "continual strategy", family="continual", builtins="metajax.continual", option="strategy"
)
CONTINUAL_BENCHMARKS = Registry(
    "continual benchmark", family="continual", builtins="metajax.data.continual_benchmarks", option="benchmark"
)
MULTITASK_WEIGHTINGS = Registry(
    "multi-task weighting", family="multi-task", builtins="metajax.multitask", option="weighting"
)
MULTITASK_MODELS = Registry(
    "multi-task model", family="multi-task", builtins="metajax.models.registered_multitask", option="model"
)
MULTITASK_DATASETS = Registry(
    "multi-task dataset", family="multi-task", builtins="metajax.data.multitask_datasets", option="dataset"
)
MODELS = Registry("model", family="shared", builtins="metajax.models.registered", option="model")

REGISTRIES: tuple[Registry, ...] = (
    META_LEARNERS,
    FEW_SHOT_DATASETS,
    MULTITASK_MODELS,
    MULTITASK_WEIGHTINGS,
    MULTITASK_DATASETS,
    CONTINUAL_STRATEGIES,
    CONTINUAL_BENCHMARKS,
    MODELS,
)


def load_plugins(modules: Sequence[str] = (), *, entry_point_group: str = PLUGIN_ENTRY_POINT_GROUP) -> list[str]:
    """Imports a user's modules (their import registers their entries) and every installed plugin.

    Installed plugins are the ``metajax.plugins`` entry points of installed
    packages (``[project.entry-points."metajax.plugins"] mine = "my_package.module"``).

    Returns:
      The names of the modules imported.

    Raises:
      ValueError: a module cannot be imported, naming it and why.
    """
    loaded = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"plugin {module!r} cannot be imported: {error}") from error
        loaded.append(module)
    for point in entry_points(group=entry_point_group):
        try:
            point.load()
        except ImportError as error:
            raise ValueError(f"plugin {point.name!r} ({point.value}) cannot be imported: {error}") from error
        loaded.append(point.value)
    return loaded


def listing() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every registered entry, by family then kind: ``{family: {kind: [{name, description, ...}]}}``."""
    families: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for registry in REGISTRIES:
        rows = [
            {"name": entry.name, "description": entry.description, "module": entry.module}
            | ({"aliases": list(entry.aliases)} if entry.aliases else {})
            for entry in registry
        ]
        families.setdefault(registry.family, {})[registry.kind] = rows
    return families
