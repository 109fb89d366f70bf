"""Imports flow one way: analyses and the engine never pull in plotting or the command line."""

from __future__ import annotations

import subprocess
import sys


def test_core_does_not_import_matplotlib_or_cli() -> None:
    code = (
        "import sys, ptqdebug, ptqdebug.analyses.sensitivity, ptqdebug.engine.engine;"
        "bad = [m for m in sys.modules if m.startswith(('matplotlib', 'ptqdebug.cli', 'ptqdebug.plots', 'tqdm'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
