"""The house's rules, read from the source with ``ast`` (nothing is imported or run).

Floors, lowest first: the shared ground floor (``vaezoo/*.py``, ``vaezoo/nets``, ``vaezoo/distributions``),
``ising`` (physics, no Pyro), ``models``, ``inference``, ``guides``, ``analysis``, ``cli``. A module may
import from its own floor or below; the package's ``__init__`` (the public API) may import anything.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vaezoo"
FLOORS = ["ising", "models", "inference", "guides", "analysis", "cli"]


def floor(module: str) -> int:
    """0 for the ground floor, then 1.. in the order of FLOORS; -1 for the top-level ``vaezoo`` API."""
    parts = module.split(".")
    if module == "vaezoo" or parts[1] in ("__init__", "__main__"):
        return -1
    return FLOORS.index(parts[1]) + 1 if parts[1] in FLOORS else 0


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE.parent) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    out = []
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            # `from vaezoo import models` imports the subpackage itself.
            if base == "vaezoo":
                out += [(node.lineno, f"vaezoo.{a.name}") for a in node.names]
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_on_a_known_floor():
    unknown = {p.relative_to(PACKAGE).parts[0] for p in MODULES if p.parent != PACKAGE}
    ground = {"nets", "distributions"}
    assert unknown <= set(FLOORS) | ground, f"a new subpackage needs a floor in FLOORS: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_import(path):
    me = module_name(path)
    mine = floor(me)
    if mine < 0:
        return
    upward = [
        f"line {line}: {target} (floor {FLOORS[floor(target) - 1]})"
        for line, target in imports(path)
        if target.startswith("vaezoo.") and floor(target) > mine and not target.startswith(me + ".")
    ]
    where = FLOORS[mine - 1] if mine else "ground"
    assert not upward, f"{me} (floor {where}) imports from above: {upward}"


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "ising").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_ising_physics_needs_no_pyro(path):
    pyro = [f"line {line}: {t}" for line, t in imports(path) if t == "pyro" or t.startswith("pyro.")]
    assert not pyro, f"vaezoo/ising is physics only, but {path.name} imports {pyro}"


def test_the_checker_sees_an_upward_import(tmp_path):
    # The rules above must be able to fail: a model importing a guide (and Pyro) is seen as such.
    fake = tmp_path / "vaezoo" / "models" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..guides.amortized import AmortizedNormal\nimport pyro\n")
    found = [t for _, t in imports(fake, tmp_path)]
    assert "vaezoo.guides.amortized" in found and "pyro" in found
    assert floor("vaezoo.guides.amortized") > floor("vaezoo.models.probe")
