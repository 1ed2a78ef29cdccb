"""The headless layers never import Textual (DESIGN.md "Layers"; the idea comes from
tconbeer/harlequin tests/unit_tests/test_import_hygiene.py).

Each check runs in a fresh interpreter, so modules the test runner already loaded
cannot hide an import. Every module of the packages is imported, not only the
package, so a Textual import tucked into a submodule is caught too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEADLESS = ("xsctl.xapi", "xsctl.sim", "xsctl.profiling")

PROBE = r"""
import importlib, json, pkgutil, sys
roots = sys.argv[1:]
imported = []
for root in roots:
    pkg = importlib.import_module(root)
    imported.append(root)
    for info in pkgutil.walk_packages(pkg.__path__, root + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
gui = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(json.dumps({"imported": imported, "textual": gui}))
"""


def probe(*packages: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *packages], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("package", HEADLESS)
def test_headless_package_does_not_import_textual(package: str) -> None:
    result = probe(package)
    assert package in result["imported"]
    assert result["textual"] == []


def test_all_headless_packages_together() -> None:
    result = probe(*HEADLESS)
    assert "xsctl.sim.server" in result["imported"]
    assert "xsctl.xapi.session" in result["imported"]
    assert result["textual"] == []


def test_the_probe_would_see_textual() -> None:
    """The check is live: the same probe, run on the UI package, does see Textual (a
    probe that saw nothing would pass the tests above whatever they import)."""
    result = probe("xsctl.ui")
    assert "xsctl.ui.app" in result["imported"]
    assert "textual" in result["textual"]
    assert "textual.app" in result["textual"]
