"""Layering: the engine, backends, protocols, flood and attach never import textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

HEADLESS_MODULES = [
    "muxtop.backends", "muxtop.engine", "muxtop.engine.protocols", "muxtop.kernel.probes",
    "muxtop.cli.serve", "muxtop.flood.cli", "muxtop.cli.attach",
]


@pytest.mark.parametrize("module", HEADLESS_MODULES)
def test_does_not_import_textual(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
