"""Sphinx configuration of the vaezoo reference manual.

Build (warnings are errors, as in tests/test_docs.py)::

    python -m sphinx -W -b html docs/api docs/api/_build/html

The API pages document each subpackage through its ``__all__``, so a name moving between modules
inside a subpackage changes nothing here. The tutorials are rendered from ``tutorials/*.ipynb`` as
committed (with their outputs), never executed during the build.
"""

import filecmp
import inspect
import re
import shutil
import sys
from pathlib import Path

from sphinx.util.nodes import make_refnode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Document the checkout the manual sits in, not whichever vaezoo happens to be installed.
sys.path.insert(0, str(ROOT))

import vaezoo  # noqa: E402

project = "vaezoo"
author = "the vaezoo authors"
copyright = "the vaezoo authors"
release = version = vaezoo.__version__

extensions = ["sphinx.ext.autodoc", "myst_nb"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
html_theme = "furo"
html_title = f"vaezoo {release}"

# Docstrings are Sphinx style (:param:, :func:); only a class's own docstrings are shown, never the
# ones inherited from torch or Pyro, whose markup is theirs.
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_inherit_docstrings = False
autodoc_typehints = "signature"

# Notebooks are shown as committed; executing them is the test suite's job (tests/test_notebooks.py).
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# Progress-bar widgets have no static rendering; their text fallback is shown instead.
suppress_warnings = ["mystnb.unknown_mime_type"]


# Docstrings write formulas in plain text, where |x| is an absolute value or a norm; reStructuredText
# would read it as a substitution. vaezoo defines no substitutions, so a bar in prose is a bar.
LITERAL = re.compile(r"(``.+?``|:[\w:+-]+:`[^`]*`|`[^`]*`_{0,2})")


def literal_bars(app, what, name, obj, options, lines: list[str]) -> None:
    """Escape ``|`` in docstring prose, leaving inline literals, roles and literal blocks as written."""
    block_indent = None  # indentation of the paragraph that opened a literal block with "::"
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and line.strip() and indent <= block_indent:
            block_indent = None
        if block_indent is None and not line.lstrip().startswith(">>>"):
            parts = LITERAL.split(line)
            lines[i] = "".join(p if k % 2 else p.replace("|", "\\|") for k, p in enumerate(parts))
        if block_indent is None and line.rstrip().endswith("::"):
            block_indent = indent


def public_home(app, env, node, contnode):
    """Link a reference to an inner module path to where the manual documents the object.

    Docstrings may name ``vaezoo.inference.traces.run_pair``; the manual documents it once, as
    ``vaezoo.inference.run_pair``. A target is resolved when exactly one documented object of the same
    subpackage ends with the same name (or ``Class.attribute``), preferring ``vaezoo.<subpackage>.<name>``.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("vaezoo."):
        return None
    parts = target.split(".")
    objects = env.get_domain("py").objects
    home = parts[:2]  # vaezoo.<subpackage>
    for tail in (parts[-2:], parts[-1:]):
        exact = ".".join(home + tail)
        found = [exact] if exact in objects else [n for n in objects if n.startswith(".".join(home) + ".")]
        found = [n for n in found if n.endswith("." + ".".join(tail))]
        if len(found) == 1:
            entry = objects[found[0]]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, found[0])
    return None


def public_names(app, what, name, obj, skip, options):
    """Show every name of a subpackage's ``__all__``, with its signature even when it has no docstring."""
    if what == "module" and skip and (inspect.isclass(obj) or inspect.isfunction(obj)):
        vaezoo_modules = [m for n, m in list(sys.modules.items()) if n.split(".")[0] == "vaezoo"]
        exporters = [m for m in vaezoo_modules if hasattr(m, "__all__")]
        if any(name in m.__all__ and getattr(m, name, None) is obj for m in exporters):
            return False
    return None


def setup(app) -> None:
    app.connect("autodoc-process-docstring", literal_bars)
    app.connect("autodoc-skip-member", public_names)
    app.connect("missing-reference", public_home)


def copy_tutorials() -> None:
    """Mirror ``tutorials/*.ipynb`` into ``docs/api/tutorials/`` (Sphinx reads only its source folder)."""
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted((ROOT / "tutorials").glob("*.ipynb"))}
    for stale in target.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, source in wanted.items():
        copy = target / name
        # Copy only what changed, so an incremental build re-reads only those notebooks.
        if not copy.exists() or not filecmp.cmp(source, copy, shallow=False):
            shutil.copyfile(source, copy)


copy_tutorials()
