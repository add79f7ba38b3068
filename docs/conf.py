"""Sphinx configuration of the metajax documentation.

Build (from the repository root): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The tutorials are executed during the build; a tutorial that raises fails it.
"""

import os
import re
import sys
from pathlib import Path

# The tutorials run on the CPU, so the site builds the same on any machine; set before any kernel starts
# (the notebook kernels inherit this environment).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Import the library from this source tree even where it was not installed, here and in the kernels.
_REPOSITORY = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, _REPOSITORY)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPOSITORY, os.environ.get("PYTHONPATH")]))

import flax.linen  # noqa: E402

import metajax  # noqa: E402

project = "metajax"
author = "The metajax authors"
copyright = "2026, The metajax authors"  # noqa: A001 (the name Sphinx reads)
# One version for the docs and `metajax --version`.
version = release = metajax.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "jupyter_execute", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}

# API reference: one page per public name, generated from the lists in docs/api/*.md.
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
python_maximum_signature_line_length = 88  # Longer signatures: one parameter a line.
# Google-style docstrings; an "Attributes:" section becomes a field list, so it does not describe
# the fields a second time next to autodoc's own entries.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False

# A reference to a metajax name that has no page is an error. References to other libraries' names
# (jax.Array, optax.GradientTransformation, ...) stay plain text: the build fetches no other site's
# inventory, so it needs no network.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!metajax\.).*")]

# MyST and the executable tutorials.
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "cache"  # Run each tutorial when it changed; CI starts with no cache, so it runs them all.
nb_execution_raise_on_error = True  # A tutorial that raises fails the build.
nb_execution_timeout = 600
nb_execution_cache_path = str(Path(__file__).parent / "_build" / ".jupyter_cache")
nb_merge_streams = True  # A cell's printed lines in one output block.

html_theme = "furo"
html_title = f"metajax {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]


def _skip_namedtuple_field_aliases(app, what, name, obj, skip, options):
    """Leaves out the "Alias for field number N" entries of NamedTuple fields: the class's own
    "Attributes" section already says what each field holds."""
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and isinstance(doc, str) and doc.startswith("Alias for field number"):
        return True
    return skip


def _drop_flax_module_fields(app, what, name, obj, options, signature, return_annotation):
    """Leaves ``parent`` and ``name``, the fields flax adds to every module, out of a module's
    signature: they are flax's, the same on every model, and not what a reader looks for."""
    if what == "class" and isinstance(obj, type) and issubclass(obj, flax.linen.Module) and signature:
        signature = re.sub(r", parent: [^=]+= <flax[^>]*>", "", signature)
        signature = re.sub(r", name: str \| None = None\)$", ")", signature)
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_field_aliases)
    app.connect("autodoc-process-signature", _drop_flax_module_fields)
