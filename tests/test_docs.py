"""The reference manual (docs/api) builds with warnings as errors and documents the whole public API."""

import importlib
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("sphinx", "myst_nb", "furo")
missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"the manual needs {', '.join(missing)}: pip install -e '.[dev]'"
)
# Each page documents one subpackage through its __all__ (docs/api/<page>.rst).
PAGES = {
    "models": "vaezoo.models",
    "guides": "vaezoo.guides",
    "inference": "vaezoo.inference",
    "analysis": "vaezoo.analysis",
    "ising": "vaezoo.ising",
    "nets": "vaezoo.nets",
}


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("manual")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += ["-d", str(out / "doctrees"), str(ROOT / "docs" / "api"), str(out / "html")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, f"the manual does not build cleanly:\n{done.stdout}\n{done.stderr}"
    return out / "html"


def test_the_manual_builds_with_warnings_as_errors(html):
    assert (html / "index.html").exists() and (html / "architecture.html").exists()
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        assert (html / "tutorials" / f"{notebook.stem}.html").exists(), f"{notebook.name} is not rendered"


@pytest.mark.parametrize(("page", "package"), PAGES.items())
def test_every_public_class_and_function_is_documented(html, page, package):
    module = importlib.import_module(package)
    text = (html / f"{page}.html").read_text()
    absent = [
        name
        for name in module.__all__
        if (inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name)))
        and f'id="{package}.{name}"' not in text
    ]
    assert not absent, f"{package}: give these a docstring so the manual shows them: {absent}"
