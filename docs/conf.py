"""Sphinx configuration of refopt's documentation (``pip install -e '.[docs]'`` then
``sphinx-build -W -b html docs docs/_build/html``; CI builds it with warnings as errors).

The reference pages under ``_generated/`` are written from the code and the specs by
``_generate.py`` at the start of every build, so they cannot drift from them.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import refopt  # noqa: E402
import _generate  # noqa: E402

_generate.generate()

project = "refopt"
author = "the refopt authors"
copyright = "the refopt authors"
release = refopt.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
exclude_patterns = ["_build", "README.md"]
html_theme = "alabaster"
html_title = f"refopt {release}"
nitpicky = False
suppress_warnings = ["autodoc.import_object"]


# refopt's docstrings are written as plain text with Unicode mathematics (|g|, λ₂(W), Hᵢⱼ): the
# bars would read as reST substitutions.  Each docstring is escaped, test-parsed, and rendered
# verbatim when it still is not clean reST, so that what help() shows is what the page shows.
import re  # noqa: E402

import docutils.core  # noqa: E402
import docutils.utils  # noqa: E402

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]*)`")


def _parses_cleanly(text: str) -> bool:
    probe = _ROLE.sub(lambda m: f"``{m.group(1)}``", text)
    probe = re.sub(r"^\.\. \w+::.*$", "", probe, flags=re.M)
    try:
        docutils.core.publish_doctree(probe, settings_overrides={"report_level": 2, "halt_level": 2,
                                                                 "warning_stream": False})
    except docutils.utils.SystemMessage:
        return False
    return True


def _docstring(app, what, name, obj, options, lines):
    if not lines:
        return
    escaped = [re.sub(r"(?<![\\`|])\|(?![|`_])", r"\\|", line) for line in lines]
    if _parses_cleanly("\n".join(escaped)):
        lines[:] = escaped
    else:
        lines[:] = ["::", ""] + [f"    {line}" if line.strip() else "" for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _docstring)
