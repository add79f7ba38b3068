"""The API reference covers the public API: every public name has a docstring and a page.

What is public, one rule for the whole library:

* the public namespaces are ``metajax``, each of its subpackages (``metajax.meta``, ...), each of its
  top-level modules (``metajax.registry``, ``metajax.cli``, ...), the modules of ``metajax.data``
  (the data sources a user calls directly; the package itself re-exports only the task samplers)
  and ``metajax.models.interfaces`` (the splits a model declares to the algorithms, which a user's
  own model implements); a module or package whose name has a part starting with ``_`` is private;
* a namespace's public names are its ``__all__`` where it has one; otherwise its functions and
  classes whose names do not start with ``_`` and that metajax defines: in a package, those it
  re-exports; in a module, those it defines itself (a name it imports from elsewhere is documented
  where it is defined). A ``metajax.data`` module leaves out the names the package re-exports
  (they are documented once, under ``metajax.data``).

The reference lists names in ``autosummary`` directives of ``docs/api/*.md`` under a
``currentmodule`` (or ``automodule``) line; Sphinx generates a page for each of them.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import metajax

API_DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"
# Modules public beyond the packages and top-level modules (see this file's docstring).
PUBLIC_SUBMODULES = ("metajax.models.interfaces",)


def _is_private(module_name: str) -> bool:
    return any(part.startswith("_") for part in module_name.split("."))


def public_namespaces() -> list[str]:
    """The public namespaces, by the rule in this file's docstring."""
    namespaces = ["metajax"]
    for info in pkgutil.iter_modules(metajax.__path__, "metajax."):
        if not _is_private(info.name):
            namespaces.append(info.name)
    data = importlib.import_module("metajax.data")
    for info in pkgutil.iter_modules(data.__path__, "metajax.data."):
        if not _is_private(info.name):
            namespaces.append(info.name)
    return namespaces + list(PUBLIC_SUBMODULES)


def public_names(namespace: str) -> list[str]:
    """The public names of one namespace, by the rule in this file's docstring."""
    module = importlib.import_module(namespace)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    is_package = hasattr(module, "__path__")
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        defined_in = getattr(value, "__module__", "") or ""
        if is_package and defined_in.startswith("metajax.") or defined_in == namespace:
            names.append(name)
    if namespace.startswith("metajax.data."):
        data = importlib.import_module("metajax.data")
        names = [name for name in names if getattr(data, name, None) is not getattr(module, name)]
    return names


def public_api() -> dict[str, list[str]]:
    """``{namespace: [public names]}`` for every public namespace."""
    return {namespace: public_names(namespace) for namespace in public_namespaces()}


def documented_names() -> tuple[set[str], set[str]]:
    """(full names listed in an autosummary, modules given an ``automodule``) in ``docs/api``."""
    listed, modules = set(), set()
    for page in sorted(API_DOCS.glob("*.md")):
        current = None
        in_autosummary = False
        for line in page.read_text().splitlines():
            stripped = line.strip()
            directive = re.match(r"\.\. (currentmodule|automodule|autosummary)::\s*(\S*)", stripped)
            if directive:
                kind, argument = directive.groups()
                if kind == "automodule":
                    modules.add(argument)
                if kind in ("currentmodule", "automodule"):
                    current = argument
                in_autosummary = kind == "autosummary"
                continue
            if not in_autosummary:
                continue
            if not stripped or stripped.startswith(":"):
                continue  # A blank line or one of the directive's options.
            if not line.startswith((" ", "\t")) or stripped.startswith(("```", ".. ")):
                in_autosummary = False
                continue
            name = stripped.lstrip("~")
            listed.add(name if name.startswith("metajax.") else f"{current}.{name}")
    return listed, modules


def test_public_api_is_found():
    api = public_api()
    # The rule finds the families' factories, so it is not silently finding nothing.
    assert "reptile" in api["metajax.meta"]
    assert "multitask_trainer" in api["metajax.multitask"]
    assert "ewc" in api["metajax.continual"]
    assert "correlated_regression_dataset" in api["metajax.data.correlated_regression"]
    assert "TaskBatch" not in api["metajax.data.tasks"]  # Documented under metajax.data.


def test_every_public_name_has_a_docstring():
    missing = []
    for namespace, names in public_api().items():
        if not (importlib.import_module(namespace).__doc__ or "").strip():
            missing.append(namespace)
        for name in names:
            value = getattr(importlib.import_module(namespace), name)
            if not (inspect.getdoc(value) or "").strip():
                missing.append(f"{namespace}.{name}")
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_every_public_name_has_a_page_in_the_api_reference():
    listed, modules = documented_names()
    missing = [namespace for namespace in public_namespaces() if namespace not in modules]
    for namespace, names in public_api().items():
        missing += [f"{namespace}.{name}" for name in names if f"{namespace}.{name}" not in listed]
    assert not missing, "public names missing from the autosummary lists of docs/api/*.md:\n" + "\n".join(missing)


def test_the_api_reference_lists_only_names_that_exist():
    listed, _ = documented_names()
    unknown = []
    for full_name in sorted(listed):
        namespace, _, name = full_name.rpartition(".")
        try:
            getattr(importlib.import_module(namespace), name)
        except (ImportError, AttributeError):
            unknown.append(full_name)
    assert not unknown, "docs/api/*.md lists names that do not exist:\n" + "\n".join(unknown)
