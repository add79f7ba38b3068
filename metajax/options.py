"""Hyperparameter dataclasses: declared once, checked, and turned into command-line flags.

Each registered method declares its hyperparameters as a frozen dataclass
whose fields are ``option(...)``s (default = the paper's preset, a help line,
and the range a value must lie in). From those fields alone come the
command's flags (``--buffer-size``), their ``--help`` text, the checks of a
config (``buffer-size must be a positive integer, got 0``) and the error for
an option that the chosen method does not read (``--si-c does not apply to
strategy replay``). Cross-field checks go in the dataclass's
``__post_init__``, raising ``ValueError`` with the flags' names.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

_MISSING = dataclasses.MISSING


def option(
    default: Any,
    help: str,  # noqa: A002 (argparse's word for it)
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    choices: Iterable[Any] | None = None,
) -> Any:
    """A hyperparameter field: its default, one line of help, and the values it accepts.

    ``minimum``/``maximum`` are inclusive bounds, ``above`` an exclusive lower one; ``choices`` the
    values allowed. An int field with ``minimum=1`` is reported as "a positive integer".
    """
    metadata: dict[str, Any] = {"help": help, "minimum": minimum, "above": above, "maximum": maximum}
    metadata["choices"] = None if choices is None else tuple(choices)
    if isinstance(default, list | dict | set):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """``buffer_size`` -> ``buffer-size``, the word users see in errors and on the command line."""
    return name.replace("_", "-")


def _field_type(owner: type, field: dataclasses.Field) -> tuple[type, bool]:
    """The field's base type (int, float, str, bool, tuple) and whether ``None`` is allowed."""
    hint = typing.get_type_hints(owner)[field.name]
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(arguments) < len(typing.get_args(hint))
        (hint,) = arguments
        origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return str, optional
    if origin is tuple:
        return tuple, optional
    return hint, optional


def _tuple_items(owner: type, field: dataclasses.Field) -> type:
    """The type of a tuple field's items (``tuple[str, ...]``: ``str``; ints unless declared otherwise)."""
    hint = typing.get_type_hints(owner)[field.name]
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is tuple:
            items = [a for a in typing.get_args(candidate) if a is not Ellipsis]
            return items[0] if items else int
    return int


def check_value(owner: type, field: dataclasses.Field, value: Any) -> Any:
    """``value`` converted to the field's type (an int for a float field is a float), or a ``ValueError``."""
    base, optional = _field_type(owner, field)
    name, meta = flag(field.name), field.metadata
    if value is None and optional:
        return None
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if meta.get("minimum") == 1 and value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
    elif base is tuple:
        if not isinstance(value, tuple | list):
            raise ValueError(f"{name} must be a sequence, got {value!r}")
        value = tuple(value)
        if not value and field.default == ():  # An empty list where that is the default: nothing asked.
            return value
        if _tuple_items(owner, field) is str:  # Names: what they may be, the dataclass checks.
            if any(not isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be names, got {value!r}")
            return value
        if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
            raise ValueError(f"{name} must be positive integers, got {value!r}")
        return value
    elif base is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    for bound, holds, words in (
        ("minimum", lambda v, b: v >= b, ">="),
        ("above", lambda v, b: v > b, ">"),
        ("maximum", lambda v, b: v <= b, "<="),
    ):
        if meta.get(bound) is not None and not holds(value, meta[bound]):
            raise ValueError(f"{name} must be {words} {meta[bound]}, got {value!r}")
    return value


def fields_by_name(classes: Iterable[type | None]) -> dict[str, tuple[type, dataclasses.Field]]:
    """Every field of the given hyperparameter dataclasses, ``{name: (declaring class, field)}``."""
    found: dict[str, tuple[type, dataclasses.Field]] = {}
    for owner in classes:
        if owner is None:
            continue
        for field in dataclasses.fields(owner):
            found.setdefault(field.name, (owner, field))
    return found


def resolve_options(
    hyperparams: type | None,
    given: Mapping[str, Any],
    *,
    owner: str,
    known: Mapping[str, tuple[type, dataclasses.Field]] | None = None,
) -> dict[str, Any]:
    """The full, checked options of one method: its dataclass's defaults updated by ``given``.

    Args:
      hyperparams: the method's dataclass (``None``: it takes no options).
      given: the options set by the user.
      owner: the method in words, for errors (``"strategy replay"``).
      known: the fields of every method of its kind; a given value is checked against its field there
        first, so a bad value gets its own error even when the method does not read it.

    Raises:
      ValueError: a bad value, or an option the method does not read, in one line naming the flag.
    """
    known = known or {}
    own = {} if hyperparams is None else {f.name: f for f in dataclasses.fields(hyperparams)}
    checked = {}
    for name, value in given.items():
        if name in own and hyperparams is not None:  # (own is empty without hyperparams)
            checked[name] = check_value(hyperparams, own[name], value)
        elif name in known:
            declaring, field = known[name]
            declaring(**{name: check_value(declaring, field, value)})  # Its own checks (__post_init__) too.
            reads = ", ".join(f"--{flag(n)}" for n in own) or "none"
            raise ValueError(f"--{flag(name)} does not apply to {owner} (its options: {reads})")
        else:
            raise ValueError(f"{owner} has no option {flag(name)!r}")
    if hyperparams is None:
        return {}
    return dataclasses.asdict(hyperparams(**checked))


def add_flags(parser: argparse.ArgumentParser, registry, *, title: str) -> set[str]:
    """Adds one flag per hyperparameter of ``registry``'s entries; returns their field names.

    Flags default to "not given" (absent from the parsed namespace), so that each method's own default
    applies; the help names each method's default.
    """
    by_name: dict[str, list[tuple[str, type, dataclasses.Field]]] = {}
    for entry in registry:
        if entry.hyperparams is None:
            continue
        for field in dataclasses.fields(entry.hyperparams):
            by_name.setdefault(field.name, []).append((entry.name, entry.hyperparams, field))
    _add_field_flags(parser.add_argument_group(title), by_name)
    return set(by_name)


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, *, skip: Iterable[str] = ()) -> set[str]:
    """Adds one flag per field of a config dataclass that has help (an ``option``); returns their names."""
    skipped = set(skip)
    by_name = {
        field.name: [("", config_class, field)]
        for field in dataclasses.fields(config_class)
        if "help" in field.metadata and field.name not in skipped
    }
    _add_field_flags(parser, by_name)
    return set(by_name)


def _add_field_flags(group, by_name: dict[str, list[tuple[str, type, dataclasses.Field]]]) -> None:
    for name, uses in by_name.items():
        _, owner, field = uses[0]
        base, _ = _field_type(owner, field)
        defaults: dict[str, list[str]] = {}
        for entry_name, _, used in uses:
            defaults.setdefault(_shown(used.default), []).append(entry_name)
        if len(defaults) == 1:
            default_words = "" if field.default in (None, False, ()) else f"default {next(iter(defaults))}"
        else:
            default_words = "default " + "; ".join(f"{', '.join(ns)}: {d}" for d, ns in defaults.items())
        readers = ", ".join(entry_name for entry_name, _, _ in uses if entry_name)
        notes = "; ".join(part for part in (readers, default_words) if part)
        text = field.metadata.get("help", "") + (f" ({notes})" if notes else "")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": text.replace("%", "%%"), "dest": name}
        if base is bool:
            kwargs["action"] = "store_true"
        elif base is tuple:  # --hidden 100,100 or --hidden 100 100; --census-tasks income,college.
            if _tuple_items(owner, field) is str:
                kwargs.update(type=_comma_separated_names, nargs="+", action=_Concatenated, metavar="NAME")
            else:
                kwargs.update(type=_comma_separated_ints, nargs="+", action=_Concatenated, metavar="N")
        else:
            kwargs["type"] = base  # Its range is checked with the config's, in the same one-line errors.
            if field.metadata.get("choices"):
                kwargs["choices"] = field.metadata["choices"]
        group.add_argument(f"--{flag(name)}", **kwargs)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def checked_fields(config: Any) -> Any:
    """``config`` (a dataclass instance) with every ``option`` field checked as a method's are, and
    converted (an int given for a float field becomes a float)."""
    values = {
        field.name: check_value(type(config), field, getattr(config, field.name))
        for field in dataclasses.fields(config)
        if "help" in field.metadata
    }
    return dataclasses.replace(config, **values)


def positive_int(text: str) -> int:
    """argparse's ``type`` for a flag that takes a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class _Concatenated(argparse.Action):
    """Joins the comma-separated groups of a ``nargs="+"`` flag into one tuple."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(v for group in values for v in group))


def _comma_separated_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None


def _comma_separated_names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def options_read_by(registry, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Those of ``options`` that the entry ``name`` of ``registry`` reads: for scripts that set one set of
    options for several methods (a comparison of strategies), where each method refuses the others'."""
    hyperparams = registry.get(name).hyperparams
    fields = set() if hyperparams is None else {field.name for field in dataclasses.fields(hyperparams)}
    return {key: value for key, value in options.items() if key in fields}
